//! Ordered header lists and the ABI's pair serialization.

use std::fmt;

/// An ordered list of header (or trailer, or metadata) entries, as a proxy sees them.
///
/// Names are kept as given; lookups are ASCII case-insensitive. Values are bytes, because
/// the ABI allows any bytes; [`Headers::get`] returns them as text when they are UTF-8.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The number of entries (the count the ABI passes to header callbacks).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of `name`, if present and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order (values that are not UTF-8 are skipped).
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .collect()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// Appends an entry (duplicates allowed).
    pub fn add(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Replaces every entry of `name` by one entry, at the place of the first (or at the end).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        let name = name.into();
        let value = value.into();
        match self.entries.iter().position(|(k, _)| k.eq_ignore_ascii_case(&name)) {
            Some(first) => {
                self.entries[first].1 = value;
                let mut index = 0;
                self.entries.retain(|(k, _)| {
                    let keep = index <= first || !k.eq_ignore_ascii_case(&name);
                    index += 1;
                    keep
                });
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Removes every entry of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// Iterates over `(name, value)` entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Builder form of [`Headers::add`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Headers {
        self.add(name, value);
        self
    }

    /// Serializes in the ABI's pair format: count, then (name length, value length) pairs,
    /// then each name and value followed by a NUL byte; all integers u32 little-endian.
    pub(crate) fn serialize(&self) -> Vec<u8> {
        serialize_pairs(self.entries.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())))
    }

    /// Parses the ABI's pair format. Malformed input yields `None`.
    pub(crate) fn deserialize(bytes: &[u8]) -> Option<Headers> {
        let pairs = deserialize_pairs(bytes)?;
        let entries = pairs
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
            .collect();
        Some(Headers { entries })
    }

    /// A copy with every name lower-cased, as Envoy stores them.
    pub(crate) fn lowercased(&self) -> Headers {
        Headers {
            entries: self.entries.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        }
    }
}

/// Serializes byte pairs in the ABI's pair format.
pub(crate) fn serialize_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let (count, bytes) = pairs.clone().fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len()));
    // One allocation of the exact size, as cpp-host sizes the buffer before it writes.
    let mut out = Vec::with_capacity(4 + count * 10 + bytes);
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the ABI's pair format into byte pairs.
pub(crate) fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = read_u32(4 + i * 8)?;
        let value_len = read_u32(8 + i * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?.to_vec();
        data = data.checked_add(key_len)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?.to_vec();
        data = data.checked_add(value_len)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(k, v)| (k, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Headers {
        Headers {
            entries: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>, const N: usize> From<[(K, V); N]> for Headers {
    fn from(entries: [(K, V); N]) -> Headers {
        entries.into_iter().collect()
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> From<Vec<(K, V)>> for Headers {
    fn from(entries: Vec<(K, V)>) -> Headers {
        entries.into_iter().collect()
    }
}

impl From<&Headers> for Headers {
    fn from(headers: &Headers) -> Headers {
        headers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_format_round_trips_and_matches_the_sdk_layout() {
        let headers = Headers::from([(":method", "GET"), ("x", "")]);
        let bytes = headers.serialize();
        assert_eq!(&bytes[..4], &2u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &7u32.to_le_bytes());
        assert!(bytes.ends_with(b"GET\0x\0\0"));
        assert_eq!(Headers::deserialize(&bytes), Some(headers));
        assert_eq!(Headers::deserialize(&[]), Some(Headers::new()));
    }

    #[test]
    fn malformed_pairs_are_rejected() {
        assert_eq!(Headers::deserialize(&[1, 0, 0, 0]), None);
        assert_eq!(Headers::deserialize(&[1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, b'a']), None);
    }

    #[test]
    fn set_replaces_all_entries_in_place_of_the_first() {
        let mut headers = Headers::from([("a", "1"), ("b", "2"), ("A", "3")]);
        headers.set("a", "9");
        assert_eq!(headers, Headers::from([("a", "9"), ("b", "2")]));
        headers.set("c", "4");
        assert_eq!(headers.get("C"), Some("4"));
        headers.remove("B");
        assert_eq!(headers.len(), 2);
    }
}
