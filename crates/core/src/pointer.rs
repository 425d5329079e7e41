//! Field selection: JSON Pointers (RFC 6901) with `*` wildcard segments.

use core::fmt;
use serde_json::Value;
use std::borrow::Cow;

/// One segment of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A member name or array index, already unescaped.
    Token(String),
    /// `*`: every array element or every object member.
    Any,
}

/// A field selector: a JSON Pointer whose segments may be `*`.
///
/// `/data/items/*/price` selects `price` in every element of `items`. A segment
/// that is exactly `*` is always the wildcard, so a member literally named `*`
/// cannot be selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

/// Why a selector string is not a valid [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PointerError {
    /// A non-empty pointer must start with `/` (RFC 6901 §3).
    MissingLeadingSlash,
    /// `~` must be followed by `0` or `1` (RFC 6901 §3).
    BadEscape,
    /// The empty pointer selects the whole document, which cannot be a field.
    WholeDocument,
}

impl fmt::Display for PointerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingLeadingSlash => "a JSON Pointer must start with '/'",
            Self::BadEscape => "'~' must be followed by '0' or '1'",
            Self::WholeDocument => "the empty pointer selects the whole document, not a field",
        })
    }
}

impl FieldPath {
    /// Parses a selector.
    ///
    /// # Errors
    /// [`PointerError`] when the text is not an RFC 6901 pointer to a field.
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        if text.is_empty() {
            return Err(PointerError::WholeDocument);
        }
        let rest = text.strip_prefix('/').ok_or(PointerError::MissingLeadingSlash)?;
        let segments = rest
            .split('/')
            .map(|raw| {
                if raw == "*" {
                    Ok(Segment::Any)
                } else {
                    unescape(raw).map(Segment::Token)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The concrete pointers this selector matches in `doc`, in document order.
    pub fn expand(&self, doc: &Value) -> Vec<String> {
        let mut found = Vec::new();
        expand_into(doc, &self.segments, &mut String::new(), &mut found);
        found
    }

    /// Whether the selector contains a wildcard (so it may match nothing without being "absent").
    pub fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::Any)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn unescape(raw: &str) -> Result<String, PointerError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(PointerError::BadEscape),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Escapes one member name for use in a pointer (RFC 6901 §3: `~` first, then `/`).
pub fn escape_token(token: &str) -> Cow<'_, str> {
    // Most names need no escape: borrow them, since this runs for every member walked.
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

fn expand_into(value: &Value, segments: &[Segment], prefix: &mut String, found: &mut Vec<String>) {
    let Some((first, rest)) = segments.split_first() else {
        found.push(prefix.clone());
        return;
    };
    let len = prefix.len();
    let mut descend = |token: &str, child: &Value, prefix: &mut String| {
        prefix.push('/');
        prefix.push_str(&escape_token(token));
        expand_into(child, rest, prefix, found);
        prefix.truncate(len);
    };
    match (first, value) {
        (Segment::Any, Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                descend(&i.to_string(), child, prefix);
            }
        }
        (Segment::Any, Value::Object(members)) => {
            for (name, child) in members {
                descend(name, child, prefix);
            }
        }
        (Segment::Token(name), Value::Object(members)) => {
            if let Some(child) = members.get(name) {
                descend(name, child, prefix);
            }
        }
        (Segment::Token(index), Value::Array(items)) => {
            if let Some(child) = array_index(index).and_then(|i| items.get(i)) {
                descend(index, child, prefix);
            }
        }
        _ => {}
    }
}

/// RFC 6901 §4: an index is `0` or digits without a leading zero.
pub(crate) fn array_index(token: &str) -> Option<usize> {
    let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
    if canonical && token.bytes().all(|b| b.is_ascii_digit()) {
        token.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expand(selector: &str, doc: &Value) -> Vec<String> {
        FieldPath::parse(selector).unwrap().expand(doc)
    }

    #[test]
    fn rfc6901_examples_resolve() {
        // The document and pointers of RFC 6901 §5.
        let doc = json!({"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
                         "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8});
        for pointer in [
            "/foo", "/foo/0", "/", "/a~1b", "/c%d", "/e^f", "/g|h", "/i\\j", "/k\"l", "/ ", "/m~0n",
        ] {
            assert_eq!(expand(pointer, &doc), vec![pointer.to_owned()], "{pointer}");
            assert!(doc.pointer(pointer).is_some());
        }
    }

    #[test]
    fn wildcards_cover_arrays_and_objects_in_order() {
        let doc = json!({"items": [{"price": 1}, {"name": "x"}, {"price": 3}], "m": {"b": 1, "a": 2}});
        assert_eq!(expand("/items/*/price", &doc), ["/items/0/price", "/items/2/price"]);
        assert_eq!(expand("/m/*", &doc), ["/m/b", "/m/a"]);
        assert!(expand("/missing/*", &doc).is_empty());
    }

    #[test]
    fn non_canonical_array_indexes_match_nothing() {
        let doc = json!({"a": [1, 2]});
        assert!(expand("/a/01", &doc).is_empty());
        assert!(expand("/a/-", &doc).is_empty());
        assert!(expand("/a/+1", &doc).is_empty());
    }

    #[test]
    fn invalid_selectors_are_refused() {
        assert_eq!(FieldPath::parse("a/b"), Err(PointerError::MissingLeadingSlash));
        assert_eq!(FieldPath::parse("/a~2"), Err(PointerError::BadEscape));
        assert_eq!(FieldPath::parse("/a~"), Err(PointerError::BadEscape));
        assert_eq!(FieldPath::parse(""), Err(PointerError::WholeDocument));
    }
}
