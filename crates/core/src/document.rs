//! Sealing and opening the selected fields of a whole event, all or nothing.

use crate::datakey::{DataKey, DataKeyLookup, NoDataKeys};
use crate::envelope::{Context, Rejection, SealFailure, append_sealed, append_sealed_with, open_bytes_with};
use crate::event::{Event, Span, splice};
use crate::json::{DocumentError, Limits};
use crate::keyring::{KeyId, Keyring};
use crate::pointer::FieldPath;
use core::fmt;
use serde_json::Value;
use std::ops::Range;

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

/// A replacement of one value's bytes in the event.
pub(crate) type Edit = (Range<usize>, Vec<u8>);

/// What seals fields: the keyring's primary key, or a data key issued by the KMS.
#[derive(Clone, Copy)]
pub(crate) enum SealingKey<'a> {
    /// The keyring's primary `A256GCM` key (`alg` `dir`).
    Keyring(&'a Keyring),
    /// A KMS data key (FORMAT.md §10).
    DataKey(&'a DataKey),
}

/// Why selecting fields failed: a required one is missing, or the body cannot be read on
/// the way to one (never taken for "absent").
enum Unselected {
    Missing(String),
    Unreadable(DocumentError),
}

impl From<Unselected> for SealError {
    fn from(e: Unselected) -> Self {
        match e {
            Unselected::Missing(pointer) => Self::FieldMissing { pointer },
            Unselected::Unreadable(e) => Self::Document(e),
        }
    }
}

impl From<Unselected> for OpenError {
    fn from(e: Unselected) -> Self {
        match e {
            Unselected::Missing(pointer) => Self::FieldMissing { pointer },
            Unselected::Unreadable(e) => Self::Document(e),
        }
    }
}

/// The selected spans, with `absent` outcomes for selectors that matched nothing.
fn select(event: &Event<'_>, fields: &[FieldPath], required: bool, outcomes: &mut Vec<FieldOutcome>) -> Result<Vec<Span>, Unselected> {
    let (spans, absent) = event.select(fields).map_err(Unselected::Unreadable)?;
    if let Some(missing) = absent.first().filter(|_| required) {
        return Err(Unselected::Missing(missing.as_str().to_owned()));
    }
    outcomes.extend(absent.into_iter().map(|f| FieldOutcome {
        pointer: f.as_str().to_owned(),
        kid: None,
        result: FieldResult::Absent,
    }));
    Ok(spans)
}

/// Seals every selected field with the keyring's primary key. The plaintext of a field is
/// its JSON text exactly as it appears in the event.
///
/// All or nothing: on error no edit is returned and the error names the failing pointer.
///
/// # Errors
/// [`SealError`] for a missing required field or a field that cannot be sealed.
pub(crate) fn seal_spans(
    event: &Event<'_>,
    fields: &[FieldPath],
    required: bool,
    key: SealingKey<'_>,
    context: &Context,
) -> Result<(Vec<Edit>, Vec<FieldOutcome>), SealError> {
    let mut outcomes = Vec::new();
    let spans = select(event, fields, required, &mut outcomes)?;
    let mut edits = Vec::with_capacity(spans.len());
    for Span { pointer, range } in spans {
        let plaintext = &event.text().as_bytes()[range.clone()];
        // The envelope is written between its quotes in place: no copy per field.
        let mut quoted = String::from('"');
        let sealed = match key {
            SealingKey::Keyring(keyring) => append_sealed(keyring, &pointer, context, plaintext, &mut quoted),
            SealingKey::DataKey(data_key) => {
                append_sealed_with(data_key, &pointer, context, plaintext, &mut quoted).map(|()| data_key.source().clone())
            }
        };
        let kid = sealed.map_err(|failure| SealError::Field {
            pointer: pointer.clone(),
            failure,
        })?;
        quoted.push('"');
        let quoted = quoted.into_bytes();
        edits.push((range, quoted));
        outcomes.push(FieldOutcome {
            pointer,
            kid: Some(kid),
            result: FieldResult::Sealed,
        });
    }
    Ok((edits, outcomes))
}

/// Opens every selected field. All or nothing, like [`seal_spans`].
///
/// # Errors
/// [`OpenError`] naming the first field that is missing (when required) or rejected.
pub(crate) fn open_spans(
    event: &Event<'_>,
    fields: &[FieldPath],
    required: bool,
    keyring: &Keyring,
    data_keys: &dyn DataKeyLookup,
    context: &Context,
) -> Result<(Vec<Edit>, Vec<FieldOutcome>), OpenError> {
    let mut outcomes = Vec::new();
    let spans = select(event, fields, required, &mut outcomes)?;
    let mut edits = Vec::with_capacity(spans.len());
    for Span { pointer, range } in spans {
        let rejected = |rejection| OpenError::Field {
            pointer: pointer.clone(),
            rejection,
        };
        let envelope: std::borrow::Cow<'_, str> =
            serde_json::from_str(&event.text()[range.clone()]).map_err(|_| rejected(Rejection::NotSealed))?;
        let (mut plaintext, kid) = open_bytes_with(keyring, data_keys, &pointer, context, &envelope).map_err(rejected)?;
        // Moved into the new body, not copied: the body holds the plaintext from here on.
        edits.push((range, std::mem::take(&mut *plaintext)));
        outcomes.push(FieldOutcome {
            pointer,
            kid: Some(kid),
            result: FieldResult::Opened,
        });
    }
    Ok((edits, outcomes))
}

/// Outcomes for selected fields that stay sealed (withheld), or edits that replace them by `mask`.
///
/// # Errors
/// [`OpenError::Document`] if the body cannot be read on the way to a field.
pub(crate) fn withhold_spans(
    event: &Event<'_>,
    fields: &[FieldPath],
    mask: Option<&Value>,
) -> Result<(Vec<Edit>, Vec<FieldOutcome>), OpenError> {
    let mut outcomes = Vec::new();
    let spans = select(event, fields, false, &mut outcomes)?;
    let result = if mask.is_some() {
        FieldResult::Masked
    } else {
        FieldResult::Withheld
    };
    let mut edits = Vec::new();
    for Span { pointer, range } in spans {
        if let Some(mask) = mask {
            edits.push((range, mask.to_string().into_bytes()));
        }
        outcomes.push(FieldOutcome {
            pointer,
            kid: None,
            result,
        });
    }
    Ok((edits, outcomes))
}

/// Seals the selected fields of a whole event and returns the new body.
///
/// # Errors
/// [`SealError`] for a body that is not an event within `limits`, a missing required field,
/// or a field that cannot be sealed. Nothing is returned half-sealed.
pub fn seal_fields(
    body: &[u8],
    fields: &[FieldPath],
    required: bool,
    keyring: &Keyring,
    context: &Context,
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<FieldOutcome>), SealError> {
    let event = Event::parse(body, limits).map_err(SealError::Document)?;
    let (edits, outcomes) = seal_spans(&event, fields, required, SealingKey::Keyring(keyring), context)?;
    Ok((splice(event.text(), &edits), outcomes))
}

/// Opens the selected fields of a whole event and returns the new body.
///
/// # Errors
/// [`OpenError`] for a body that is not an event within `limits`, a missing required field,
/// or a rejected envelope. Nothing is returned half-opened.
pub fn open_fields(
    body: &[u8],
    fields: &[FieldPath],
    required: bool,
    keyring: &Keyring,
    context: &Context,
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<FieldOutcome>), OpenError> {
    let event = Event::parse(body, limits).map_err(OpenError::Document)?;
    let (edits, outcomes) = open_spans(&event, fields, required, keyring, &NoDataKeys, context)?;
    Ok((splice(event.text(), &edits), outcomes))
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

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn seal_then_open_restores_the_exact_bytes() {
        let original = br#"{"type": "t", "data": {"ssn": "123", "items": [{"price": 1.50}, {"price": 2e3}], "keep": true}}"#;
        let fields = paths(&["/data/ssn", "/data/items/*/price", "/data/absent"]);
        let (sealed, outcomes) = seal_fields(original, &fields, false, &ring(), &Context::new(), &limits()).unwrap();
        assert_eq!(outcomes.iter().filter(|o| o.result == FieldResult::Sealed).count(), 3);
        assert_eq!(outcomes.iter().filter(|o| o.result == FieldResult::Absent).count(), 1);
        let doc: Value = serde_json::from_slice(&sealed).unwrap();
        assert!(doc["data"]["ssn"].as_str().unwrap().starts_with("ey"));
        assert_eq!(doc["data"]["keep"], json!(true));
        let (opened, _) = open_fields(&sealed, &fields, false, &ring(), &Context::new(), &limits()).unwrap();
        assert_eq!(opened, original);
    }

    #[test]
    fn nested_selection_is_sealed_once_inside_the_outer_field() {
        let original = br#"{"data": {"card": {"no": "4111"}}}"#;
        let fields = paths(&["/data/card/no", "/data/card"]);
        let (sealed, outcomes) = seal_fields(original, &fields, false, &ring(), &Context::new(), &limits()).unwrap();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].pointer, "/data/card");
        let (opened, _) = open_fields(&sealed, &fields, false, &ring(), &Context::new(), &limits()).unwrap();
        assert_eq!(opened, original);
    }

    #[test]
    fn a_failure_names_the_field_and_returns_nothing() {
        let (sealed_a, _) = seal_fields(
            br#"{"a": "x", "b": 42}"#,
            &paths(&["/a"]),
            false,
            &ring(),
            &Context::new(),
            &limits(),
        )
        .unwrap();
        let err = open_fields(&sealed_a, &paths(&["/a", "/b"]), false, &ring(), &Context::new(), &limits()).unwrap_err();
        assert_eq!(
            err,
            OpenError::Field {
                pointer: "/b".into(),
                rejection: Rejection::NotSealed
            }
        );
    }

    #[test]
    fn required_fields_must_be_present() {
        let err = seal_fields(br#"{"a": 1}"#, &paths(&["/b"]), true, &ring(), &Context::new(), &limits()).unwrap_err();
        assert_eq!(err, SealError::FieldMissing { pointer: "/b".into() });
    }
}
