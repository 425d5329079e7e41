//! Sealing and opening the selected fields of a whole event, all or nothing.

use crate::envelope::{Context, Rejection, SealFailure, open_value, seal_value};
use crate::json::DocumentError;
use crate::keyring::{KeyId, Keyring};
use crate::pointer::FieldPath;
use core::fmt;
use serde_json::Value;

/// What happened to one selected field; the audit trail records these, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOutcome {
    /// The concrete JSON Pointer of the field (or the selector, for an absent field).
    pub pointer: String,
    /// The key that sealed or opened it.
    pub kid: Option<KeyId>,
    /// What was done.
    pub result: FieldResult,
}

/// What was done to one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldResult {
    /// Replaced by an envelope.
    Sealed,
    /// Replaced by its plaintext.
    Opened,
    /// Selected but not present in the event.
    Absent,
    /// Left sealed: the reader may not open it.
    Withheld,
    /// Replaced by a mask: the reader may not open it.
    Masked,
}

impl FieldResult {
    /// Stable lowercase name for audit records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sealed => "sealed",
            Self::Opened => "opened",
            Self::Absent => "absent",
            Self::Withheld => "withheld",
            Self::Masked => "masked",
        }
    }
}

/// Why an event could not be sealed. The event is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The body is not an event we can work on.
    Document(DocumentError),
    /// A field marked required is not in the event.
    FieldMissing {
        /// The selector that matched nothing.
        pointer: String,
    },
    /// A bound context value could not be found in the request.
    ContextMissing {
        /// The context entry's name.
        name: String,
    },
    /// One field could not be sealed.
    Field {
        /// The field's JSON Pointer.
        pointer: String,
        /// Why.
        failure: SealFailure,
    },
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Document(e) => e.fmt(f),
            Self::FieldMissing { pointer } => write!(f, "required field {pointer} is missing"),
            Self::ContextMissing { name } => write!(f, "context value {name:?} is missing from the request"),
            Self::Field { pointer, failure } => write!(f, "cannot seal {pointer}: {failure}"),
        }
    }
}

impl std::error::Error for SealError {}

/// Why an event could not be opened. The event is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The body is not an event we can work on.
    Document(DocumentError),
    /// A field marked required is not in the event.
    FieldMissing {
        /// The selector that matched nothing.
        pointer: String,
    },
    /// A bound context value could not be found in the request.
    ContextMissing {
        /// The context entry's name.
        name: String,
    },
    /// One sealed field was rejected.
    Field {
        /// The field's JSON Pointer.
        pointer: String,
        /// The rule it broke.
        rejection: Rejection,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Document(e) => e.fmt(f),
            Self::FieldMissing { pointer } => write!(f, "required field {pointer} is missing"),
            Self::ContextMissing { name } => write!(f, "context value {name:?} is missing from the request"),
            Self::Field { pointer, rejection } => write!(f, "cannot open {pointer}: {rejection}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Concrete pointers selected in `doc`, without any that lie inside another selected field.
///
/// Returns the selector text of the first required selector that matched nothing as `Err`.
fn select(doc: &Value, fields: &[FieldPath], required: bool, absent: &mut Vec<FieldOutcome>) -> Result<Vec<String>, String> {
    let mut pointers: Vec<String> = Vec::new();
    for field in fields {
        let found = field.expand(doc);
        if found.is_empty() {
            if required {
                return Err(field.as_str().to_owned());
            }
            absent.push(FieldOutcome {
                pointer: field.as_str().to_owned(),
                kid: None,
                result: FieldResult::Absent,
            });
        }
        pointers.extend(found);
    }
    pointers.sort();
    pointers.dedup();
    // A field inside a field that is itself selected travels inside the outer envelope.
    let mut kept: Vec<String> = Vec::with_capacity(pointers.len());
    for p in pointers {
        let inside = kept
            .last()
            .is_some_and(|outer| p.len() > outer.len() && p.starts_with(outer.as_str()) && p.as_bytes()[outer.len()] == b'/');
        if !inside {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// Seals every selected field of `doc` with the keyring's primary key.
///
/// All or nothing: on error `doc` is unchanged and the error names the failing pointer.
///
/// # Errors
/// [`SealError`] for a missing required field or a field that cannot be sealed.
pub fn seal_fields(
    doc: &mut Value,
    fields: &[FieldPath],
    required: bool,
    keyring: &Keyring,
    context: &Context,
) -> Result<Vec<FieldOutcome>, SealError> {
    let mut outcomes = Vec::new();
    let pointers = select(doc, fields, required, &mut outcomes).map_err(|pointer| SealError::FieldMissing { pointer })?;
    let mut replacements = Vec::with_capacity(pointers.len());
    for pointer in pointers {
        let value = doc.pointer(&pointer).unwrap_or(&Value::Null);
        let (jwe, kid) = seal_value(keyring, &pointer, context, value).map_err(|failure| SealError::Field {
            pointer: pointer.clone(),
            failure,
        })?;
        outcomes.push(FieldOutcome {
            pointer: pointer.clone(),
            kid: Some(kid),
            result: FieldResult::Sealed,
        });
        replacements.push((pointer, Value::String(jwe)));
    }
    replace(doc, replacements);
    Ok(outcomes)
}

/// Opens every selected field of `doc`. All or nothing, like [`seal_fields`].
///
/// # Errors
/// [`OpenError`] naming the first field that is missing (when required) or rejected.
pub fn open_fields(
    doc: &mut Value,
    fields: &[FieldPath],
    required: bool,
    keyring: &Keyring,
    context: &Context,
) -> Result<Vec<FieldOutcome>, OpenError> {
    let mut outcomes = Vec::new();
    let pointers = select(doc, fields, required, &mut outcomes).map_err(|pointer| OpenError::FieldMissing { pointer })?;
    let mut replacements = Vec::with_capacity(pointers.len());
    for pointer in pointers {
        let rejected = |rejection| OpenError::Field {
            pointer: pointer.clone(),
            rejection,
        };
        let envelope = doc
            .pointer(&pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| rejected(Rejection::NotSealed))?;
        let (value, kid) = open_value(keyring, &pointer, context, envelope).map_err(rejected)?;
        outcomes.push(FieldOutcome {
            pointer: pointer.clone(),
            kid: Some(kid),
            result: FieldResult::Opened,
        });
        replacements.push((pointer, value));
    }
    replace(doc, replacements);
    Ok(outcomes)
}

/// Outcomes for selected fields that stay as they are (withheld) or get `mask` instead.
pub fn withhold_fields(doc: &mut Value, fields: &[FieldPath], mask: Option<&Value>) -> Vec<FieldOutcome> {
    let mut outcomes = Vec::new();
    let pointers = select(doc, fields, false, &mut outcomes).unwrap_or_default();
    let result = if mask.is_some() {
        FieldResult::Masked
    } else {
        FieldResult::Withheld
    };
    for pointer in &pointers {
        outcomes.push(FieldOutcome {
            pointer: pointer.clone(),
            kid: None,
            result,
        });
    }
    if let Some(mask) = mask {
        replace(doc, pointers.into_iter().map(|p| (p, mask.clone())).collect());
    }
    outcomes
}

fn replace(doc: &mut Value, replacements: Vec<(String, Value)>) {
    for (pointer, value) in replacements {
        if let Some(slot) = doc.pointer_mut(&pointer) {
            *slot = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ring() -> Keyring {
        Keyring::from_jwks(
            r#"{"keys":[{"kty":"oct","kid":"k","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#,
        )
        .unwrap()
    }

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    #[test]
    fn seal_then_open_restores_the_event() {
        let original = json!({"type": "t", "data": {"ssn": "123", "items": [{"price": 1}, {"price": 2}], "keep": true}});
        let mut doc = original.clone();
        let fields = paths(&["/data/ssn", "/data/items/*/price", "/data/absent"]);
        let outcomes = seal_fields(&mut doc, &fields, false, &ring(), &Context::new()).unwrap();
        assert_eq!(outcomes.iter().filter(|o| o.result == FieldResult::Sealed).count(), 3);
        assert_eq!(outcomes.iter().filter(|o| o.result == FieldResult::Absent).count(), 1);
        assert!(doc["data"]["ssn"].as_str().unwrap().starts_with("ey"));
        assert_eq!(doc["data"]["keep"], json!(true));
        open_fields(&mut doc, &fields, false, &ring(), &Context::new()).unwrap();
        assert_eq!(doc, original);
    }

    #[test]
    fn nested_selection_is_sealed_once_inside_the_outer_field() {
        let original = json!({"data": {"card": {"no": "4111"}}});
        let mut doc = original.clone();
        let fields = paths(&["/data/card/no", "/data/card"]);
        let outcomes = seal_fields(&mut doc, &fields, false, &ring(), &Context::new()).unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].pointer, "/data/card");
        open_fields(&mut doc, &fields, false, &ring(), &Context::new()).unwrap();
        assert_eq!(doc, original);
    }

    #[test]
    fn a_failure_leaves_the_event_untouched_and_names_the_field() {
        let mut doc = json!({"a": "x", "b": 42});
        let sealed_a = {
            let mut d = doc.clone();
            seal_fields(&mut d, &paths(&["/a"]), false, &ring(), &Context::new()).unwrap();
            d["a"].clone()
        };
        doc["a"] = sealed_a.clone();
        let before = doc.clone();
        let err = open_fields(&mut doc, &paths(&["/a", "/b"]), false, &ring(), &Context::new()).unwrap_err();
        assert_eq!(
            err,
            OpenError::Field {
                pointer: "/b".into(),
                rejection: Rejection::NotSealed
            }
        );
        assert_eq!(doc, before);
    }

    #[test]
    fn required_fields_must_be_present() {
        let mut doc = json!({"a": 1});
        let err = seal_fields(&mut doc, &paths(&["/b"]), true, &ring(), &Context::new()).unwrap_err();
        assert_eq!(err, SealError::FieldMissing { pointer: "/b".into() });
        assert_eq!(doc, json!({"a": 1}));
    }
}
