//! Decoding property values the way Envoy encodes them for wasm.
//!
//! Envoy answers `proxy_get_property` with `serializeValue` (source/extensions/common/wasm/
//! context.cc) applied to the CEL value found at the path. `google.protobuf.Struct` values,
//! such as the JWT payload that `jwt_authn` writes into
//! `metadata.filter_metadata["envoy.filters.http.jwt_authn"][payload]`, are *not* sent as
//! protobuf bytes: CEL unwraps a `Struct` into a map and a `Value` into its kind, so the
//! bytes are
//!
//! - a map: proxy-wasm pairs (`u32` count, then a `u32` key length and a `u32` value length
//!   per entry, then each key and value followed by a NUL), values encoded recursively;
//! - a list: the same pairs, each element as a key with an empty value;
//! - a string: its bytes; a number (always a double in a `Struct`): 8 little-endian bytes;
//!   a bool: one byte. A `null` anywhere makes Envoy refuse the whole property.
//!
//! The encoding carries no type tags, so [`decode_value`] reads it back by shape, in this
//! order: valid pairs are a map (a list when every value is empty), printable UTF-8 is a
//! string, 8 other bytes are a double, one byte 0 or 1 is a bool. JWT claims the policy
//! looks at (ids, role lists, tenant names) are strings and lists of strings, which this
//! reads back exactly.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is returned as a string rather than decoded further.
const MAX_DEPTH: usize = 16;

/// Decodes one property value in Envoy's encoding into JSON.
pub fn decode_value(bytes: &[u8]) -> Value {
    decode(bytes, 0)
}

fn decode(bytes: &[u8], depth: usize) -> Value {
    if depth < MAX_DEPTH
        && let Some(pairs) = pairs(bytes)
    {
        if pairs.iter().all(|(_, value)| value.is_empty()) {
            return Value::Array(pairs.iter().map(|(element, _)| decode(element, depth + 1)).collect());
        }
        let map: Map<String, Value> = pairs
            .iter()
            .map(|(key, value)| (String::from_utf8_lossy(key).into_owned(), decode(value, depth + 1)))
            .collect();
        return Value::Object(map);
    }
    if let Ok(text) = core::str::from_utf8(bytes)
        && text.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
    {
        return Value::String(text.to_owned());
    }
    if let Ok(raw) = <[u8; 8]>::try_from(bytes) {
        return number(f64::from_le_bytes(raw));
    }
    match bytes {
        [0] => Value::Bool(false),
        [1] => Value::Bool(true),
        _ => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// A `Struct` number as JSON: integral values as integers, so that a policy's `3` equals it.
fn number(x: f64) -> Value {
    // 2^53: beyond it a double no longer holds every integer, so keep it a float.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.fract() == 0.0 && x.abs() <= EXACT {
        // In range and integral: the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        return Value::Number(Number::from(x as i64));
    }
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Strictly parses proxy-wasm pairs: every length in bounds, every NUL in place, nothing left.
fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let word = |at: usize| -> Option<usize> {
        let raw = bytes.get(at..at.checked_add(4)?)?;
        usize::try_from(u32::from_le_bytes(raw.try_into().ok()?)).ok()
    };
    let count = word(0)?;
    // Each entry needs 8 bytes of lengths and 2 NULs: reject impossible counts before allocating.
    if count.checked_mul(10)? > bytes.len().saturating_sub(4) {
        return None;
    }
    let mut data = 4 + count * 8;
    let mut out = Vec::with_capacity(count);
    for entry in 0..count {
        let key_len = word(4 + entry * 8)?;
        let value_len = word(8 + entry * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data += key_len;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data += value_len;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        out.push((key, value));
    }
    (data == bytes.len()).then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Envoy's encoding of a JSON value (`serializeValue` over a CEL-unwrapped `Struct`).
    pub(crate) fn encode(value: &Value) -> Vec<u8> {
        match value {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Bool(b) => vec![u8::from(*b)],
            Value::Number(n) => n.as_f64().unwrap().to_le_bytes().to_vec(),
            Value::Object(map) => marshal(map.iter().map(|(k, v)| (k.as_bytes().to_vec(), encode(v))).collect()),
            Value::Array(items) => marshal(items.iter().map(|v| (encode(v), Vec::new())).collect()),
            Value::Null => panic!("Envoy refuses null"),
        }
    }

    fn marshal(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
        let mut out = u32::try_from(pairs.len()).unwrap().to_le_bytes().to_vec();
        for (k, v) in &pairs {
            out.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
            out.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
        }
        for (k, v) in &pairs {
            out.extend(k);
            out.push(0);
            out.extend(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn a_jwt_payload_round_trips() {
        let claims = json!({
            "iss": "https://issuer.example",
            "sub": "spiffe://example.org/ns/billing/sa/api",
            "aud": ["orders", "billing"],
            "roles": ["auditor"],
            "exp": 1_900_000_000,
            "iat": 1_700_000_000,
            "ratio": 0.25,
            "admin": true,
            "verified": false,
            "org": {"tenant": "acme", "tier": 3, "teams": ["a", "b"]}
        });
        assert_eq!(decode_value(&encode(&claims)), claims);
    }

    #[test]
    fn scalars_decode_by_shape() {
        assert_eq!(decode_value(b"spiffe://example.org/sa/x"), json!("spiffe://example.org/sa/x"));
        assert_eq!(decode_value(b""), json!(""));
        assert_eq!(decode_value("caf\u{e9}".as_bytes()), json!("caf\u{e9}"));
        assert_eq!(decode_value(&42.0f64.to_le_bytes()), json!(42));
        assert_eq!(decode_value(&(-1.5f64).to_le_bytes()), json!(-1.5));
        assert_eq!(decode_value(&[1]), json!(true));
        assert_eq!(decode_value(&[0]), json!(false));
        // An empty map or list (Envoy cannot tell them apart either).
        assert_eq!(decode_value(&[0, 0, 0, 0]), json!([]));
        // An eight-letter string stays a string.
        assert_eq!(decode_value(b"abcdefgh"), json!("abcdefgh"));
    }

    #[test]
    fn malformed_pairs_are_not_trusted() {
        let good = encode(&json!({"sub": "alice", "tier": "gold"}));
        // Truncated, extended, or with a missing NUL: never read as a map, never a panic.
        for bad in [
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            {
                let mut b = good.clone();
                let last = b.len() - 1;
                b[last] = b'x';
                b
            },
            {
                let mut b = good.clone();
                b[0] = 0xff;
                b
            },
            vec![0xff, 0xff, 0xff, 0xff],
            vec![2, 0, 0, 0],
        ] {
            assert!(!decode_value(&bad).is_object(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let mut value = json!("leaf");
        for _ in 0..64 {
            value = json!({ "x": value });
        }
        // Deep input decodes without recursion trouble; past the bound it stays opaque.
        let decoded = decode_value(&encode(&value));
        assert!(decoded.pointer("/x/x/x").is_some());
        assert_ne!(decoded, value);
    }

    #[test]
    fn integral_doubles_become_integers_that_equal_policy_values() {
        assert_eq!(number(3.0), json!(3));
        assert_eq!(number(1e300), Value::Number(Number::from_f64(1e300).unwrap()));
        assert_eq!(number(f64::NAN), Value::Null);
    }
}
