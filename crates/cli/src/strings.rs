//! The string values of an event, found and replaced in its text without touching
//! anything else: what `rewrap` and `reseal` do to envelopes.

use crate::Failure;
use serde_json::Value;

/// An event file: its text, and its JSON.
///
/// # Errors
/// When the event is not UTF-8 or not JSON.
pub(crate) fn parse(event: &[u8]) -> Result<(&str, Value), Failure> {
    let text = std::str::from_utf8(event).map_err(|_| Failure::new("the event is not UTF-8"))?;
    let value = serde_json::from_str(text).map_err(|e| Failure::new(format!("the event is not JSON: {e}")))?;
    Ok((text, value))
}

/// Every string value of `value` that `keep` accepts, with its JSON Pointer, in document order.
pub(crate) fn find(value: &Value, keep: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
    fn walk(value: &Value, at: &mut String, keep: &dyn Fn(&str) -> bool, out: &mut Vec<(String, String)>) {
        let mut descend = |token: &str, child: &Value, at: &mut String| {
            let len = at.len();
            at.push('/');
            at.push_str(&token.replace('~', "~0").replace('/', "~1"));
            walk(child, at, keep, out);
            at.truncate(len);
        };
        match value {
            Value::String(s) if keep(s) => out.push((at.clone(), s.clone())),
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| descend(&i.to_string(), v, at)),
            Value::Object(members) => members.iter().for_each(|(name, v)| descend(name, v, at)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut String::new(), keep, &mut out);
    out
}

/// Replaces the JSON string `old` by `new` everywhere in `text`; how many times. Both are
/// envelopes (base64url and dots), so each is written as its own text between quotes.
///
/// # Errors
/// When `old` is in the event only with JSON escapes.
pub(crate) fn replace(text: &mut String, old: &str, new: &str) -> Result<usize, Failure> {
    let (old, new) = (format!("\"{old}\""), format!("\"{new}\""));
    let count = text.matches(&old).count();
    if count == 0 {
        return Err(Failure::new(
            "an envelope is written with JSON escapes; rewrite the event without them first",
        ));
    }
    *text = text.replace(&old, &new);
    Ok(count)
}
