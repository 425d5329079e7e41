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
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "body is larger than {limit} bytes"),
            Self::TooDeep { limit } => write!(f, "JSON is nested deeper than {limit} levels"),
            Self::NotJson { line, column } => write!(f, "body is not valid JSON (line {line}, column {column})"),
        }
    }
}

impl std::error::Error for DocumentError {}

/// Deepest bracket nesting outside strings; a linear scan so hostile input cannot recurse.
/// Strings are skipped with `memchr` to their next quote or backslash: most of an event's
/// bytes are inside strings, and looking at them one by one cost more than parsing.
pub(crate) fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, 0usize);
    while let Some(&b) = body.get(at) {
        at += 1;
        match b {
            b'"' => loop {
                let Some(rest) = body.get(at..) else { return deepest };
                match memchr::memchr2(b'"', b'\\', rest) {
                    // An escape: the byte after the backslash is never the closing quote.
                    Some(n) if rest[n] == b'\\' => at += n + 2,
                    Some(n) => {
                        at += n + 1;
                        break;
                    }
                    // An unterminated string: the parser refuses it.
                    None => return deepest,
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn parse_document(body: &[u8], limits: &Limits) -> Result<(), DocumentError> {
        Event::parse(body, limits).map(|_| ())
    }

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert_eq!(nesting_depth(br#"{"a":"[[[[\"{{"}"#), 1);
        assert_eq!(nesting_depth(br#"[[{"a":[1]}]]"#), 4);
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
            proptest::prop_assert_eq!(nesting_depth(&body), nesting_depth_by_bytes(&body));
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
