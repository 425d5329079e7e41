//! Reading event bodies under limits before any field is touched.

use core::fmt;

/// Bounds applied to every body before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Deepest nesting of arrays and objects accepted.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_json_depth: 32,
        }
    }
}

/// Why a body is not an event we can work on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocumentError {
    /// Larger than `max_body_bytes`.
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Nested deeper than `max_json_depth`.
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// Not a JSON text (RFC 8259); `line` and `column` locate the first error.
    NotJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A `\u` escape of a UTF-16 surrogate that is not part of a pair, in a member name or
    /// a string value at any depth: not valid Unicode, and parsers disagree on what it means
    /// (FORMAT.md §2.1). Refused like any other malformed JSON.
    LoneSurrogate {
        /// 1-based line of the escape.
        line: usize,
        /// 1-based column of the escape.
        column: usize,
    },
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "body is larger than {limit} bytes"),
            Self::TooDeep { limit } => write!(f, "JSON is nested deeper than {limit} levels"),
            Self::NotJson { line, column } => write!(f, "body is not valid JSON (line {line}, column {column})"),
            Self::LoneSurrogate { line, column } => write!(
                f,
                "body is not valid JSON: unpaired UTF-16 surrogate escape (line {line}, column {column})"
            ),
        }
    }
}

impl std::error::Error for DocumentError {}

/// What one linear pass over a body finds before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Deepest bracket nesting outside strings.
    pub depth: usize,
    /// Offset of the first `\u` escape of a UTF-16 surrogate that is not one half of a
    /// pair (FORMAT.md §2.1): text no valid Unicode string has.
    pub lone_surrogate: Option<usize>,
}

/// Scans `body` once: its nesting depth, and the first lone surrogate escape. Linear, so
/// hostile input cannot recurse. Strings are skipped with `memchr` to their next quote or
/// backslash: most of an event's bytes are inside strings, and looking at them one by one
/// cost more than parsing.
///
/// The surrogate check is here, not left to the parser, because serde_json validates a
/// value it only skips (a `RawValue`) without decoding its escapes: it would let a lone
/// surrogate through, and then refuse the same text when a later step decodes it.
pub(crate) fn scan(body: &[u8]) -> Scan {
    let mut found = Scan {
        depth: 0,
        lone_surrogate: None,
    };
    let (mut depth, mut at) = (0usize, 0usize);
    while let Some(&b) = body.get(at) {
        at += 1;
        match b {
            b'"' => loop {
                let Some(rest) = body.get(at..) else { return found };
                match memchr::memchr2(b'"', b'\\', rest) {
                    Some(n) if rest[n] == b'\\' => {
                        at += n;
                        let escape = &body[at..];
                        // The byte after the backslash is never the closing quote.
                        at += match surrogate_escape(escape) {
                            Some(Surrogate::High) if surrogate_escape(&escape[6..]) == Some(Surrogate::Low) => 12,
                            Some(_) => {
                                found.lone_surrogate.get_or_insert(at);
                                6
                            }
                            None => 2,
                        };
                    }
                    Some(n) => {
                        at += n + 1;
                        break;
                    }
                    // An unterminated string: the parser refuses it.
                    None => return found,
                }
            },
            b'[' | b'{' => {
                depth += 1;
                found.depth = found.depth.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surrogate {
    High,
    Low,
}

/// Which half of a surrogate pair the `\uXXXX` escape at the start of `text` encodes, if any.
fn surrogate_escape(text: &[u8]) -> Option<Surrogate> {
    let [b'\\', b'u', hex @ ..] = text.get(..6)? else { return None };
    let code = u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
    match code {
        0xD800..=0xDBFF => Some(Surrogate::High),
        0xDC00..=0xDFFF => Some(Surrogate::Low),
        _ => None,
    }
}

/// The 1-based line and column of byte `offset` in `body`.
pub(crate) fn location(body: &[u8], offset: usize) -> (usize, usize) {
    let before = &body[..offset.min(body.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, column)
}

/// Whether `text` is one JSON value in valid Unicode (no lone surrogate escapes): what an
/// opened plaintext must be before it is put back into an event.
pub(crate) fn is_strict_json(text: &[u8]) -> bool {
    scan(text).lone_surrogate.is_none()
        && std::str::from_utf8(text).is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn parse_document(body: &[u8], limits: &Limits) -> Result<(), DocumentError> {
        Event::parse(body, limits).map(|_| ())
    }

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert_eq!(scan(br#"{"a":"[[[[\"{{"}"#).depth, 1);
        assert_eq!(scan(br#"[[{"a":[1]}]]"#).depth, 4);
    }

    /// The byte-at-a-time scan the `memchr` one must agree with.
    fn nesting_depth_by_bytes(body: &[u8]) -> usize {
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
        for &b in body {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        deepest
    }

    proptest::proptest! {
        #[test]
        fn skipping_strings_gives_the_depth_of_the_byte_scan(body in proptest::collection::vec(
            proptest::sample::select(b"[]{}\"\\a ".to_vec()), 0..64)) {
            proptest::prop_assert_eq!(scan(&body).depth, nesting_depth_by_bytes(&body));
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_found_at_any_depth_and_pairs_are_not() {
        let at = |body: &str| scan(body.as_bytes()).lone_surrogate;
        assert_eq!(at(r#"{"a":{"b\ud800c":1}}"#), Some(8));
        assert_eq!(at(r#"["\uDC00"]"#), Some(2));
        assert_eq!(at(r#"["\ud800\ud800"]"#), Some(2));
        assert_eq!(at(r#"["x\ud800\u0041"]"#), Some(3));
        assert_eq!(at(r#"["\ud800"]"#), Some(2));
        assert_eq!(at(r#"{"\ud83d\ude00":"\uD83D\uDE00"}"#), None);
        // An escaped backslash before `u` is a backslash, not an escape.
        assert_eq!(at(r#"["\\ud800"]"#), None);
        assert_eq!(at(r#"["\u00e9\"\\"]"#), None);
    }

    proptest::proptest! {
        /// The scan finds a lone surrogate exactly when serde_json's decoding of the string
        /// refuses it.
        #[test]
        fn the_surrogate_scan_agrees_with_decoding_the_string(pieces in proptest::collection::vec(
            proptest::sample::select(vec!["\\ud800", "\\udbff", "\\udc00", "\\uDFFF", "\\u0041", "\\\\", "\\\"", "a", "u", "d800", "é"]), 0..8)) {
            let body = format!("[\"{}\"]", pieces.concat());
            let decodes = serde_json::from_str::<Vec<String>>(&body).is_ok();
            proptest::prop_assert_eq!(scan(body.as_bytes()).lone_surrogate.is_none(), decodes, "{}", body);
        }
    }

    #[test]
    fn limits_are_enforced_before_parsing() {
        let limits = Limits {
            max_body_bytes: 16,
            max_json_depth: 2,
        };
        assert_eq!(parse_document(&[b' '; 17], &limits), Err(DocumentError::TooLarge { limit: 16 }));
        assert_eq!(parse_document(b"[[[1]]]", &limits), Err(DocumentError::TooDeep { limit: 2 }));
        assert!(matches!(parse_document(b"{\"a\":", &limits), Err(DocumentError::NotJson { .. })));
        assert!(parse_document(b"[[1]]", &limits).is_ok());
    }

    #[test]
    fn hostile_depth_is_refused_without_stack_overflow() {
        let body = vec![b'['; 1_000_000];
        let limits = Limits {
            max_body_bytes: 2_000_000,
            max_json_depth: 32,
        };
        assert_eq!(parse_document(&body, &limits), Err(DocumentError::TooDeep { limit: 32 }));
    }
}
