//! Properties (`proxy_get_property` / `proxy_set_property`) in Envoy's encoding.
//!
//! Envoy resolves a property path (segments joined by NUL bytes) to a CEL value and
//! serializes it: strings and bytes raw, integers and doubles as 8 little-endian bytes,
//! booleans as one byte, timestamps and durations as i64 nanoseconds, maps and lists in
//! the ABI's pair format (a list's elements are the keys, with empty values), messages as
//! protobuf bytes. The harness stores test-provided values under their full path and
//! builds a map for a path that only prefixes stored values, as Envoy does for a map.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::serialize_pairs;

/// A property path, e.g. `connection.uri_san_peer_certificate`.
///
/// From a `&str` the path is split at dots; when a segment itself contains dots (as
/// metadata filter names do), pass the segments as an array or `Vec` instead.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PropertyPath(pub(crate) Vec<String>);

impl PropertyPath {
    /// The path's segments.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Parses the ABI's wire form (segments separated by NUL).
    pub(crate) fn from_wire(bytes: &[u8]) -> PropertyPath {
        if bytes.is_empty() {
            return PropertyPath(Vec::new());
        }
        PropertyPath(bytes.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
    }
}

impl From<&str> for PropertyPath {
    fn from(path: &str) -> PropertyPath {
        PropertyPath(path.split('.').map(str::to_owned).collect())
    }
}

impl From<String> for PropertyPath {
    fn from(path: String) -> PropertyPath {
        PropertyPath::from(path.as_str())
    }
}

impl<const N: usize> From<[&str; N]> for PropertyPath {
    fn from(segments: [&str; N]) -> PropertyPath {
        PropertyPath(segments.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl From<&[&str]> for PropertyPath {
    fn from(segments: &[&str]) -> PropertyPath {
        PropertyPath(segments.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl From<Vec<String>> for PropertyPath {
    fn from(segments: Vec<String>) -> PropertyPath {
        PropertyPath(segments)
    }
}

/// A property value, typed the way Envoy's CEL values are.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PropertyValue {
    /// A string: its UTF-8 bytes.
    String(String),
    /// Bytes, as they are.
    Bytes(Vec<u8>),
    /// A signed integer: 8 bytes little-endian.
    Int(i64),
    /// An unsigned integer: 8 bytes little-endian.
    UInt(u64),
    /// A double: 8 bytes little-endian IEEE 754.
    Double(f64),
    /// A boolean: one byte, 0 or 1.
    Bool(bool),
    /// A timestamp: i64 nanoseconds since the Unix epoch.
    Timestamp(SystemTime),
    /// A duration: i64 nanoseconds.
    Duration(Duration),
    /// A map: pairs of key and serialized value.
    Map(Vec<(String, PropertyValue)>),
    /// A list: pairs whose keys are the serialized elements and whose values are empty.
    List(Vec<PropertyValue>),
    /// A protobuf message, already serialized.
    Message(Vec<u8>),
}

impl PropertyValue {
    /// The bytes the guest receives for this value.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PropertyValue::String(s) => s.as_bytes().to_vec(),
            PropertyValue::Bytes(b) | PropertyValue::Message(b) => b.clone(),
            PropertyValue::Int(i) => i.to_le_bytes().to_vec(),
            PropertyValue::UInt(u) => u.to_le_bytes().to_vec(),
            PropertyValue::Double(d) => d.to_le_bytes().to_vec(),
            PropertyValue::Bool(b) => vec![u8::from(*b)],
            PropertyValue::Timestamp(t) => {
                let nanos = match t.duration_since(UNIX_EPOCH) {
                    Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
                    Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
                };
                nanos.to_le_bytes().to_vec()
            }
            PropertyValue::Duration(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX).to_le_bytes().to_vec(),
            PropertyValue::Map(entries) => {
                let encoded: Vec<(Vec<u8>, Vec<u8>)> = entries.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.encode())).collect();
                serialize_pairs(encoded.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
            }
            PropertyValue::List(items) => {
                let encoded: Vec<Vec<u8>> = items.iter().map(PropertyValue::encode).collect();
                serialize_pairs(encoded.iter().map(|k| (k.as_slice(), &[][..])))
            }
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> PropertyValue {
        PropertyValue::String(s.to_owned())
    }
}

impl From<String> for PropertyValue {
    fn from(s: String) -> PropertyValue {
        PropertyValue::String(s)
    }
}

impl From<Vec<u8>> for PropertyValue {
    fn from(b: Vec<u8>) -> PropertyValue {
        PropertyValue::Bytes(b)
    }
}

impl From<&[u8]> for PropertyValue {
    fn from(b: &[u8]) -> PropertyValue {
        PropertyValue::Bytes(b.to_vec())
    }
}

impl From<i64> for PropertyValue {
    fn from(i: i64) -> PropertyValue {
        PropertyValue::Int(i)
    }
}

impl From<u64> for PropertyValue {
    fn from(u: u64) -> PropertyValue {
        PropertyValue::UInt(u)
    }
}

impl From<f64> for PropertyValue {
    fn from(d: f64) -> PropertyValue {
        PropertyValue::Double(d)
    }
}

impl From<bool> for PropertyValue {
    fn from(b: bool) -> PropertyValue {
        PropertyValue::Bool(b)
    }
}

impl From<SystemTime> for PropertyValue {
    fn from(t: SystemTime) -> PropertyValue {
        PropertyValue::Timestamp(t)
    }
}

impl From<Duration> for PropertyValue {
    fn from(d: Duration) -> PropertyValue {
        PropertyValue::Duration(d)
    }
}

/// Values stored under full paths.
#[derive(Debug, Clone, Default)]
pub(crate) struct PropertyStore {
    values: BTreeMap<Vec<String>, Vec<u8>>,
}

impl PropertyStore {
    pub(crate) fn set(&mut self, path: PropertyPath, value: &PropertyValue) {
        self.values.insert(path.0, value.encode());
    }

    pub(crate) fn set_raw(&mut self, path: PropertyPath, value: Vec<u8>) {
        self.values.insert(path.0, value);
    }

    pub(crate) fn get_exact(&self, path: &[String]) -> Option<&[u8]> {
        self.values.get(path).map(Vec::as_slice)
    }
}

/// Resolves `path` across layers (earlier layers win): an exact value, or else a map built
/// from every stored value the path prefixes.
pub(crate) fn resolve(layers: &[&PropertyStore], path: &[String]) -> Option<Vec<u8>> {
    if path.is_empty() {
        return None;
    }
    if let Some(value) = layers.iter().find_map(|layer| layer.get_exact(path)) {
        return Some(value.to_vec());
    }
    let mut children: Vec<String> = Vec::new();
    for layer in layers {
        for key in layer.values.keys() {
            if key.len() > path.len() && key.starts_with(path) && !children.contains(&key[path.len()]) {
                children.push(key[path.len()].clone());
            }
        }
    }
    if children.is_empty() {
        return None;
    }
    let entries: Vec<(Vec<u8>, Vec<u8>)> = children
        .into_iter()
        .filter_map(|child| {
            let mut child_path = path.to_vec();
            child_path.push(child.clone());
            resolve(layers, &child_path).map(|v| (child.into_bytes(), v))
        })
        .collect();
    Some(serialize_pairs(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::deserialize_pairs;

    #[test]
    fn scalars_use_envoys_encoding() {
        assert_eq!(PropertyValue::from("a").encode(), b"a");
        assert_eq!(PropertyValue::from(7i64).encode(), 7i64.to_le_bytes());
        assert_eq!(PropertyValue::from(true).encode(), [1]);
        assert_eq!(
            PropertyValue::Duration(Duration::from_millis(1)).encode(),
            1_000_000i64.to_le_bytes()
        );
        assert_eq!(
            PropertyValue::Timestamp(UNIX_EPOCH + Duration::from_secs(2)).encode(),
            2_000_000_000i64.to_le_bytes()
        );
    }

    #[test]
    fn a_prefix_of_stored_values_resolves_to_a_map() {
        let mut store = PropertyStore::default();
        store.set(PropertyPath::from("metadata.jwt.sub"), &"alice".into());
        store.set(PropertyPath::from("metadata.jwt.iat"), &5i64.into());
        let map = resolve(&[&store], &PropertyPath::from("metadata.jwt").0).unwrap();
        let pairs = deserialize_pairs(&map).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(pairs.contains(&(b"sub".to_vec(), b"alice".to_vec())));
        assert_eq!(resolve(&[&store], &PropertyPath::from("metadata.other").0), None);
    }

    #[test]
    fn dotted_and_segmented_paths() {
        assert_eq!(PropertyPath::from("a.b").segments(), ["a", "b"]);
        assert_eq!(PropertyPath::from(["a.b", "c"]).segments(), ["a.b", "c"]);
        assert_eq!(PropertyPath::from_wire(b"a\0b.c").segments(), ["a", "b.c"]);
    }
}
