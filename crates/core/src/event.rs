//! An event body validated once, whose selected fields are found as byte spans and replaced
//! in place: the rest of the event keeps its exact bytes (member order, number spelling,
//! whitespace), and no JSON tree of the whole event is ever built.

use crate::json::{DocumentError, Limits, location, scan};
use crate::pointer::{FieldPath, Segment, array_index, escape_token};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// A body known to be one JSON text within the limits.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    text: &'a str,
    /// The top-level members or items, read by the same pass that validated the body, so
    /// selecting fields never scans the whole event again.
    root: Children<'a>,
}

/// The children of one JSON value, each a borrowed slice of the body.
#[derive(Debug, Clone)]
enum Children<'a> {
    Members(Vec<(Cow<'a, str>, &'a RawValue)>),
    Items(Vec<&'a RawValue>),
    None,
}

impl<'a> Children<'a> {
    /// Parses (and so validates) `text` one level deep; `Err` if it is not JSON.
    fn of(text: &'a str) -> Result<Self, serde_json::Error> {
        match text.trim_start().as_bytes().first() {
            Some(b'{') => serde_json::from_str::<Members<'a>>(text).map(|Members(m)| Self::Members(m)),
            Some(b'[') => serde_json::from_str::<Vec<&'a RawValue>>(text).map(Self::Items),
            _ => serde_json::from_str::<&'a RawValue>(text).map(|_| Self::None),
        }
    }
}

/// One selected field: its concrete JSON Pointer and where its value lies in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub pointer: String,
    pub range: Range<usize>,
}

impl<'a> Event<'a> {
    /// Checks size, nesting depth (without recursion), UTF-8, Unicode escapes and JSON
    /// syntax: everything any later step reads is known readable here (FORMAT.md §2.1).
    ///
    /// # Errors
    /// [`DocumentError`] for a body that is too large, too deep, not JSON, or that holds a
    /// lone surrogate escape anywhere.
    pub fn parse(body: &'a [u8], limits: &Limits) -> Result<Self, DocumentError> {
        if body.len() > limits.max_body_bytes {
            return Err(DocumentError::TooLarge {
                limit: limits.max_body_bytes,
            });
        }
        let scanned = scan(body);
        if scanned.depth > limits.max_json_depth {
            return Err(DocumentError::TooDeep {
                limit: limits.max_json_depth,
            });
        }
        let text = std::str::from_utf8(body).map_err(|e| {
            let (line, column) = location(body, e.valid_up_to());
            DocumentError::NotJson { line, column }
        })?;
        if let Some(offset) = scanned.lone_surrogate {
            let (line, column) = location(body, offset);
            return Err(DocumentError::LoneSurrogate { line, column });
        }
        // Validates the whole text (children are borrowed RawValues: no tree is built).
        let root = Children::of(text).map_err(|e| DocumentError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        Ok(Self { text, root })
    }

    /// The body.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Every field the selectors match, in document order, without fields that lie inside
    /// another selected field (they travel inside it). Selectors that match nothing are
    /// listed separately.
    ///
    /// # Errors
    /// [`DocumentError::NotJson`] if a value on the way cannot be read: never "absent".
    pub(crate) fn select<'f>(&self, fields: &'f [FieldPath]) -> Result<(Vec<Span>, Vec<&'f FieldPath>), DocumentError> {
        let (spans, matched) = self.find(fields.iter())?;
        let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
        for span in spans {
            if kept.last().is_none_or(|outer| span.range.start >= outer.range.end) {
                kept.push(span);
            }
        }
        let absent = fields.iter().zip(matched).filter(|(_, m)| !m).map(|(f, _)| f).collect();
        Ok((kept, absent))
    }

    /// Every match of every selector, sorted by position, nested ones included.
    fn find<'f>(&self, fields: impl ExactSizeIterator<Item = &'f FieldPath>) -> Result<(Vec<Span>, Vec<bool>), DocumentError> {
        let mut spans = Vec::new();
        let mut matched = vec![false; fields.len()];
        // A selector has at least one segment, so the root itself is never selected.
        let active: Vec<(usize, &[Segment])> = fields.map(FieldPath::segments).enumerate().collect();
        descend(self.text, &self.root, &active, &mut String::new(), &mut spans, &mut matched)?;
        spans.sort_by_key(|s| s.range.start);
        Ok((spans, matched))
    }

    /// The values at exact pointers (no wildcards), parsed, in one pass: small members such
    /// as the event type bound into the context. A pointer that matches nothing is `None`.
    ///
    /// # Errors
    /// [`DocumentError::NotJson`] if a value on the way, or the value itself, cannot be read.
    pub fn values_at(&self, paths: &[&FieldPath]) -> Result<Vec<Option<Value>>, DocumentError> {
        let (spans, _) = self.find(paths.iter().copied())?;
        paths
            .iter()
            .map(|path| {
                spans
                    .iter()
                    .find(|s| s.pointer == path.as_str())
                    .map(|s| read_value(self.text, s.range.clone()))
                    .transpose()
            })
            .collect()
    }

    /// The first top-level member called `name`, parsed: read from the top level kept by
    /// [`Event::parse`], without a pointer or a walk.
    ///
    /// # Errors
    /// [`DocumentError::NotJson`] if the member's value cannot be read.
    pub fn member(&self, name: &str) -> Result<Option<Value>, DocumentError> {
        let Children::Members(members) = &self.root else { return Ok(None) };
        let Some((_, raw)) = members.iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        read_value(self.text, offset(self.text, raw)).map(Some)
    }
}

/// Parses the value at `range` of `text`: unreadable is an error, never "absent".
fn read_value(text: &str, range: Range<usize>) -> Result<Value, DocumentError> {
    serde_json::from_str(&text[range.clone()]).map_err(|_| not_json_at(text, range.start))
}

/// The refusal of a body whose value at `offset` could not be read.
fn not_json_at(text: &str, offset: usize) -> DocumentError {
    let (line, column) = location(text.as_bytes(), offset);
    DocumentError::NotJson { line, column }
}

/// Where `raw` lies in `text` (it borrows from it).
fn offset(text: &str, raw: &RawValue) -> Range<usize> {
    let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
    start..start + raw.get().len()
}

/// Descends only where a selector still has segments; a finished selector captures the span.
///
/// A node whose children cannot be read is an error: reading it as childless would report
/// every field below it absent and forward them as they came (a fail-open).
fn walk(
    text: &str,
    node: &RawValue,
    active: &[(usize, &[Segment])],
    pointer: &mut String,
    spans: &mut Vec<Span>,
    matched: &mut [bool],
) -> Result<(), DocumentError> {
    let mut pending: Vec<(usize, &[Segment])> = Vec::new();
    for &(i, segments) in active {
        if segments.is_empty() {
            matched[i] = true;
            spans.push(Span {
                pointer: pointer.clone(),
                range: offset(text, node),
            });
        } else {
            pending.push((i, segments));
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let children = Children::of(node.get()).map_err(|_| not_json_at(text, offset(text, node).start))?;
    descend(text, &children, &pending, pointer, spans, matched)
}

/// Walks into the children that a pending selector's next segment names.
fn descend(
    text: &str,
    children: &Children<'_>,
    pending: &[(usize, &[Segment])],
    pointer: &mut String,
    spans: &mut Vec<Span>,
    matched: &mut [bool],
) -> Result<(), DocumentError> {
    let mut visit = |token: &str, index: Option<usize>, child: &RawValue, pointer: &mut String| {
        let next: Vec<(usize, &[Segment])> = pending
            .iter()
            .filter(|(_, segments)| match &segments[0] {
                Segment::Any => true,
                Segment::Token(t) => match index {
                    Some(i) => array_index(t) == Some(i),
                    None => t == token,
                },
            })
            .map(|&(i, segments)| (i, &segments[1..]))
            .collect();
        if next.is_empty() {
            return Ok(());
        }
        let len = pointer.len();
        pointer.push('/');
        pointer.push_str(&escape_token(token));
        let walked = walk(text, child, &next, pointer, spans, matched);
        pointer.truncate(len);
        walked
    };
    match children {
        Children::Members(members) => {
            for (name, child) in members {
                visit(name, None, child, pointer)?;
            }
        }
        Children::Items(items) => {
            for (i, child) in items.iter().enumerate() {
                visit(&i.to_string(), Some(i), child, pointer)?;
            }
        }
        Children::None => {}
    }
    Ok(())
}

/// An object's members in order, repeated names included: a selector matches every member
/// of that name, so a duplicate can never smuggle a field past sealing.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some((Name(name), value)) = map.next_entry::<Name<'de>, &'de RawValue>()? {
                    members.push((name, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A member name borrowed from the body unless it has escapes. (serde's own `Cow` always
/// copies, which was one allocation per member of every object walked.)
pub(crate) struct Name<'a>(pub Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
            fn visit_string<E>(self, name: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(name)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Splices `replacements` (sorted, non-overlapping ranges) into `text`.
pub(crate) fn splice(text: &str, replacements: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let grown: usize = replacements.iter().map(|(r, v)| v.len().saturating_sub(r.len())).sum();
    let mut out = Vec::with_capacity(text.len() + grown);
    let mut at = 0;
    for (range, bytes) in replacements {
        out.extend_from_slice(&text.as_bytes()[at..range.start]);
        out.extend_from_slice(bytes);
        at = range.end;
    }
    out.extend_from_slice(&text.as_bytes()[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(body: &str, selectors: &[&str]) -> Vec<(String, String)> {
        let event = Event::parse(body.as_bytes(), &Limits::default()).unwrap();
        let fields: Vec<FieldPath> = selectors.iter().map(|s| FieldPath::parse(s).unwrap()).collect();
        let (spans, _) = event.select(&fields).unwrap();
        spans.into_iter().map(|s| (s.pointer, body[s.range].to_owned())).collect()
    }

    #[test]
    fn spans_are_the_exact_value_bytes_in_document_order() {
        let body = r#" { "a" : { "x~y" : 1.50 , "b/c": [ "s" , {"p": true} ] }, "z": null } "#;
        assert_eq!(
            select(body, &["/z", "/a/x~0y", "/a/b~1c/*/p", "/a/b~1c/0"]),
            [
                ("/a/x~0y".into(), "1.50".into()),
                ("/a/b~1c/0".into(), "\"s\"".into()),
                ("/a/b~1c/1/p".into(), "true".into()),
                ("/z".into(), "null".into())
            ]
        );
    }

    #[test]
    fn a_field_inside_a_selected_field_is_not_selected_again() {
        let body = r#"{"card": {"no": "4111"}}"#;
        assert_eq!(select(body, &["/card/no", "/card"]), [("/card".into(), r#"{"no": "4111"}"#.into())]);
    }

    #[test]
    fn member_names_are_matched_after_unescaping() {
        let body = r#"{"s\u0073n": "1", "data": {"n\"o": 2}}"#;
        assert_eq!(
            select(body, &["/ssn", "/data/n\"o"]),
            [("/ssn".into(), "\"1\"".into()), ("/data/n\"o".into(), "2".into())]
        );
    }

    #[test]
    fn repeated_member_names_are_all_selected() {
        let body = r#"{"ssn": "1", "ssn": "2"}"#;
        assert_eq!(
            select(body, &["/ssn"]),
            [("/ssn".into(), "\"1\"".into()), ("/ssn".into(), "\"2\"".into())]
        );
    }

    #[test]
    fn a_lone_surrogate_anywhere_refuses_the_body() {
        for body in [
            r#"{"data": {"car\ud800d": {"pan": "4"}, "email": "e"}}"#,
            r#"{"data": {"items": [{"p\ud800": 1, "price": 5}]}}"#,
            r#"{"type": "\udc00", "data": {}}"#,
            r#"["a", ["\ud800\u0041"]]"#,
        ] {
            assert!(
                matches!(
                    Event::parse(body.as_bytes(), &Limits::default()),
                    Err(DocumentError::LoneSurrogate { line: 1, .. })
                ),
                "{body}"
            );
        }
        assert!(Event::parse(r#"{"\ud83d\ude00": "\ud83d\ude00"}"#.as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn a_value_that_cannot_be_read_on_the_way_is_an_error_not_an_absence() {
        // Built without `Event::parse`, whose scan would refuse this text first: the walk
        // itself must refuse a child list it cannot read, not call the fields below absent.
        let text = r#"{"data": {"car\ud800d": {}, "email": "e"}, "items": [{"p\udc00": 1, "price": 5}]}"#;
        let event = Event {
            text,
            root: Children::of(text).expect("the top level reads"),
        };
        for selector in ["/data/email", "/items/*/price"] {
            let fields = [FieldPath::parse(selector).unwrap()];
            assert!(
                matches!(event.select(&fields), Err(DocumentError::NotJson { line: 1, .. })),
                "{selector}"
            );
        }
        assert_eq!(event.values_at(&[&FieldPath::parse("/data/email").unwrap()]).ok(), None);
    }

    #[test]
    fn invalid_utf8_and_trailing_garbage_are_not_json() {
        assert!(matches!(
            Event::parse(b"{\"a\": \"\xff\"}", &Limits::default()),
            Err(DocumentError::NotJson { .. })
        ));
        assert!(matches!(
            Event::parse(b"{} {}", &Limits::default()),
            Err(DocumentError::NotJson { .. })
        ));
    }
}
