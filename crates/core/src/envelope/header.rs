//! The strict parser of an envelope's protected header (FORMAT.md §3.2): what an opener
//! reads of a header it has not authenticated yet, and every shape it must refuse.

use super::Rejection;
use core::fmt;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The protected header members this version reads (FORMAT.md §3.2).
pub(super) struct Header {
    pub alg: String,
    pub enc: String,
    pub kid: String,
    pub ptr: String,
    pub ctx: BTreeMap<String, String>,
}

impl Header {
    /// Parses the header strictly: a repeated member name at any depth is refused (RFC 7516
    /// §4 lets a parser reject them, and accepting them lets two parsers disagree), and so is
    /// any `crit` member, whatever its value, and a lone surrogate escape anywhere, even in a
    /// member this version ignores (FORMAT.md §2.1).
    ///
    /// Two passes over the (short) header, neither building a JSON tree: one checks the
    /// whole text for repeated names, one reads the members this version knows.
    pub fn parse(json: &[u8]) -> Result<Self, Rejection> {
        let shape = || Rejection::Malformed("header is not the expected JSON object");
        if !crate::json::is_strict_json(json) {
            return Err(shape());
        }
        serde_json::from_slice::<StrictObject>(json).map_err(|_| shape())?;
        let wire: WireHeader<'_> = serde_json::from_slice(json).map_err(|_| shape())?;
        if wire.crit {
            return Err(Rejection::Malformed("unsupported critical header parameters"));
        }
        Ok(Self {
            alg: wire.alg.into_owned(),
            enc: wire.enc.into_owned(),
            kid: wire.kid.into_owned(),
            ptr: wire.ptr.into_owned(),
            ctx: wire.ctx,
        })
    }
}

/// The members of a header as sent; other members are allowed and ignored (FORMAT.md §3.2).
#[derive(Deserialize)]
struct WireHeader<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    enc: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kid: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    ptr: std::borrow::Cow<'a, str>,
    ctx: BTreeMap<String, String>,
    /// Present at all, whatever its value (`null` included).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// A JSON object with no repeated member names at any depth. (The typed pass alone would
/// also take a JSON array for the header, as serde reads structs from sequences.)
struct StrictObject;

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(NoRepeatedNamesVisitor)
            .map(|NoRepeatedNames| StrictObject)
    }
}

/// Any JSON value whose objects, at every depth, have no repeated member names; nothing
/// of it is kept.
struct NoRepeatedNames;

impl<'de> Deserialize<'de> for NoRepeatedNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoRepeatedNamesVisitor)
    }
}

struct NoRepeatedNamesVisitor;

impl<'de> serde::de::Visitor<'de> for NoRepeatedNamesVisitor {
    type Value = NoRepeatedNames;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without repeated member names")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NoRepeatedNames, A::Error> {
        // A set, not a list: a hostile header may have very many members.
        let mut names = std::collections::BTreeSet::new();
        while let Some((crate::event::Name(name), NoRepeatedNames)) = map.next_entry::<crate::event::Name<'de>, NoRepeatedNames>()? {
            if !names.insert(name) {
                return Err(serde::de::Error::custom("repeated member name"));
            }
        }
        Ok(NoRepeatedNames)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NoRepeatedNames, A::Error> {
        while let Some(NoRepeatedNames) = seq.next_element()? {}
        Ok(NoRepeatedNames)
    }

    fn visit_str<E>(self, _: &str) -> Result<NoRepeatedNames, E> {
        Ok(NoRepeatedNames)
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoRepeatedNames, E> {
        Ok(NoRepeatedNames)
    }

    fn visit_unit<E>(self) -> Result<NoRepeatedNames, E> {
        Ok(NoRepeatedNames)
    }

    fn visit_i64<E>(self, _: i64) -> Result<NoRepeatedNames, E> {
        Ok(NoRepeatedNames)
    }

    fn visit_u64<E>(self, _: u64) -> Result<NoRepeatedNames, E> {
        Ok(NoRepeatedNames)
    }

    fn visit_f64<E>(self, _: f64) -> Result<NoRepeatedNames, E> {
        Ok(NoRepeatedNames)
    }
}
