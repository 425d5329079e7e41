//! The audit trail: one record per decision, hash-chained and keyed so that a deleted,
//! reordered or edited record is detected. Records carry pointers and key ids, never values.
//!
//! A record is one JSON line. Its `mac` is HMAC-SHA256, under the keyring's primary audit
//! key, of the exact bytes of the record without the `mac` member, and every record names
//! the `mac` of the one before it in `prev` (empty for the first record of an instance).
//! `seq` counts records per `instance` (one filter instance, for example one Envoy worker).

use crate::document::FieldOutcome;
use crate::engine::Report;
use crate::keyring::{KeyUse, Keyring};
use crate::policy::{Operation, Rule};
use crate::problem::{Direction, ProblemKind};
use core::fmt;
use hmac::Mac;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The facts of one decision, as a host reports them.
#[derive(Debug, Clone, Default)]
pub struct AuditFacts<'a> {
    /// Host time, nanoseconds since the Unix epoch.
    pub time_unix_nanos: u128,
    /// `x-request-id`, if any.
    pub request_id: Option<&'a str>,
    /// The principal id, if any.
    pub principal: Option<&'a str>,
    /// The rule (route) that applied.
    pub rule: Option<&'a str>,
    /// Which body.
    pub direction: Option<Direction>,
    /// The event's id (CloudEvents `id`), if present.
    pub event_id: Option<&'a str>,
    /// The event's type (CloudEvents `type`), if present.
    pub event_type: Option<&'a str>,
    /// What was attempted: `admit`, `verify`, `seal`, `open`, `sign`.
    pub operations: Vec<&'static str>,
    /// Per-field outcomes (pointers and key ids only).
    pub fields: &'a [FieldOutcome],
    /// Key ids used besides the fields' (e.g. the verifying key).
    pub other_kids: Vec<String>,
    /// Key ids used that are being rotated out: a `retired` key that opened a field, a
    /// signing key other than the primary that verified. Empty in most records.
    pub stale_kids: Vec<String>,
    /// `allowed`, `refused` or `forwarded_unchanged`.
    pub outcome: &'static str,
    /// The problem slug for a refusal.
    pub reason: Option<&'static str>,
}

impl<'a> AuditFacts<'a> {
    /// What core knows of one decision on `rule`: `stage` is `None` for the admission on the
    /// request headers, else the body's direction; `refused` is the refusal, if it was one.
    /// The host adds only what it alone knows: the time, the request id and the principal.
    pub fn decision(rule: &'a Rule, stage: Option<Direction>, report: &'a Report, refused: Option<ProblemKind>) -> Self {
        let operations = match stage {
            None => vec![Operation::Admit.as_str()],
            Some(_) => rule.body_operations().map(Operation::as_str).collect(),
        };
        let (outcome, reason) = match (refused, report.forwarded_despite) {
            (Some(kind), _) => ("refused", Some(kind)),
            (None, Some(kind)) => ("forwarded_unchanged", Some(kind)),
            (None, None) => ("allowed", None),
        };
        Self {
            rule: Some(&rule.name),
            direction: stage,
            event_id: report.event_id.as_deref(),
            event_type: report.event_type.as_deref(),
            operations,
            fields: &report.fields,
            other_kids: report.verified_by.iter().map(|k| k.as_str().to_owned()).collect(),
            stale_kids: stale_kids(report),
            outcome,
            reason: reason.map(ProblemKind::slug),
            ..Self::default()
        }
    }
}

/// The distinct key ids of a report that are being rotated out, sorted.
fn stale_kids(report: &Report) -> Vec<String> {
    let verified = report.verified_by.iter().filter(|_| report.verified_by_non_primary);
    let mut kids: Vec<String> = report.retired_opens.iter().chain(verified).map(|k| k.as_str().to_owned()).collect();
    kids.sort_unstable();
    kids.dedup();
    kids
}

/// Appends records to one instance's chain.
#[derive(Debug)]
pub struct AuditChain {
    instance: String,
    seq: u64,
    prev: String,
}

const MAC_MEMBER: &str = ",\"mac\":\"";

impl AuditChain {
    /// A new chain for one filter instance; `instance` should be unique (random) per start.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            seq: 0,
            prev: String::new(),
        }
    }

    /// The next record as one JSON line (no newline), chained to the previous one.
    ///
    /// The record is written member by member into one buffer, in the fixed order that
    /// makes its bytes reproducible (`audit`, `instance`, `seq`, `time`, `request_id`,
    /// `principal`, `rule`, `direction`, `event_id`, `event_type`, `operations`, `fields`,
    /// `kids`, `stale_kids` only when not empty, `outcome`, `reason`, `mac_kid`, `prev`),
    /// strings escaped by serde_json as any serializer of the same members would; the
    /// MAC is taken over that buffer and its member appended in place.
    pub fn append(&mut self, keyring: &Keyring, facts: &AuditFacts<'_>) -> String {
        let mut kids: Vec<&str> = facts.fields.iter().filter_map(|f| f.kid.as_ref().map(|k| k.as_str())).collect();
        kids.extend(facts.other_kids.iter().map(String::as_str));
        kids.sort_unstable();
        kids.dedup();
        let mac_kid = keyring.primary(KeyUse::Audit).map(|k| k.kid().as_str());

        let mut out = RecordWriter::with_capacity(self.capacity(facts, &kids, mac_kid));
        out.raw("{\"audit\":1,\"instance\":");
        out.string(&self.instance);
        out.raw(",\"seq\":");
        out.decimal(self.seq, 1);
        out.raw(",\"time\":\"");
        out.rfc3339(facts.time_unix_nanos);
        out.raw("\",\"request_id\":");
        out.optional(facts.request_id);
        out.raw(",\"principal\":");
        out.optional(facts.principal);
        out.raw(",\"rule\":");
        out.optional(facts.rule);
        out.raw(",\"direction\":");
        out.optional(facts.direction.map(Direction::as_str));
        out.raw(",\"event_id\":");
        out.optional(facts.event_id);
        out.raw(",\"event_type\":");
        out.optional(facts.event_type);
        out.raw(",\"operations\":");
        out.strings(facts.operations.iter().copied());
        out.raw(",\"fields\":[");
        for (i, field) in facts.fields.iter().enumerate() {
            out.raw(if i == 0 { "{\"pointer\":" } else { ",{\"pointer\":" });
            out.string(&field.pointer);
            out.raw(",\"result\":");
            out.string(field.result.as_str());
            if let Some(kid) = &field.kid {
                out.raw(",\"kid\":");
                out.string(kid.as_str());
            }
            out.raw("}");
        }
        out.raw("],\"kids\":");
        out.strings(kids.iter().copied());
        // Only when a key being rotated out was used, so other records keep their bytes.
        if !facts.stale_kids.is_empty() {
            out.raw(",\"stale_kids\":");
            out.strings(facts.stale_kids.iter().map(String::as_str));
        }
        out.raw(",\"outcome\":");
        out.string(facts.outcome);
        out.raw(",\"reason\":");
        out.optional(facts.reason);
        out.raw(",\"mac_kid\":");
        out.optional(mac_kid);
        out.raw(",\"prev\":");
        out.string(&self.prev);
        out.raw("}");

        // The MAC covers the record as written so far, closing brace included; its member
        // then takes that brace's place.
        let digest = chain_digest(keyring, mac_kid, &out.0);
        out.0.pop();
        out.raw(MAC_MEMBER);
        let mac_at = out.0.len();
        if let Some(digest) = digest {
            out.hex(&digest);
        }
        let mac_end = out.0.len();
        out.raw("\"}");
        self.seq += 1;
        // Every byte written came from a `&str` or is ASCII, so this never fails.
        let record = String::from_utf8(out.0).unwrap_or_default();
        self.prev.clear();
        self.prev.push_str(record.get(mac_at..mac_end).unwrap_or_default());
        record
    }

    /// Room for the whole record, so it is written without growing its buffer.
    fn capacity(&self, facts: &AuditFacts<'_>, kids: &[&str], mac_kid: Option<&str>) -> usize {
        // Member names, punctuation, seq, time and the mac member.
        const FIXED: usize = 320;
        let text = |s: Option<&str>| s.map_or(0, str::len);
        let fields: usize = facts
            .fields
            .iter()
            .map(|f| 40 + f.pointer.len() + f.kid.as_ref().map_or(0, |k| k.as_str().len() + 8))
            .sum();
        let lists: usize = facts.operations.iter().chain(kids).map(|s| s.len() + 3).sum::<usize>()
            + facts.stale_kids.iter().map(|s| s.len() + 3).sum::<usize>();
        FIXED
            + self.instance.len()
            + self.prev.len()
            + text(facts.request_id)
            + text(facts.principal)
            + text(facts.rule)
            + text(facts.event_id)
            + text(facts.event_type)
            + text(mac_kid)
            + fields
            + lists
    }
}

/// One record's bytes, written in place: literal JSON, strings escaped by serde_json,
/// numbers and the time without a formatter.
struct RecordWriter(Vec<u8>);

impl RecordWriter {
    fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// JSON written as it is (member names, punctuation).
    fn raw(&mut self, json: &str) {
        self.0.extend_from_slice(json.as_bytes());
    }

    /// A JSON string, escaped exactly as serde_json escapes it.
    fn string(&mut self, s: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    /// A string, or `null`.
    fn optional(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.raw("null"),
        }
    }

    /// An array of strings.
    fn strings<'s>(&mut self, items: impl Iterator<Item = &'s str>) {
        self.0.push(b'[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.string(item);
        }
        self.0.push(b']');
    }

    /// `n` in decimal, zero-padded to at least `width` digits.
    fn decimal(&mut self, mut n: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut at = digits.len();
        while n > 0 || digits.len() - at < width.max(1) {
            at -= 1;
            digits[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
        }
        self.0.extend_from_slice(&digits[at..]);
    }

    /// RFC 3339 UTC time with milliseconds, from Unix nanoseconds.
    fn rfc3339(&mut self, nanos: u128) {
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let millis = u64::try_from((nanos / 1_000_000) % 1000).unwrap_or(0);
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
        // Days since 1970 never give a year before it.
        self.decimal(u64::try_from(y).unwrap_or(0), 4);
        self.0.push(b'-');
        self.decimal(u64::from(m), 2);
        self.0.push(b'-');
        self.decimal(u64::from(d), 2);
        self.0.push(b'T');
        self.decimal(rem / 3600, 2);
        self.0.push(b':');
        self.decimal(rem % 3600 / 60, 2);
        self.0.push(b':');
        self.decimal(rem % 60, 2);
        self.0.push(b'.');
        self.decimal(millis, 3);
        self.0.push(b'Z');
    }

    /// Lowercase hex, two digits per byte.
    fn hex(&mut self, bytes: &[u8]) {
        self.0.extend(bytes.iter().flat_map(|&b| hex_digits(b)));
    }
}

/// One byte's two lowercase hex digits.
fn hex_digits(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 0xf)]]
}

/// Lowercase hex, without a formatter call and a string per byte.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|&b| hex_digits(b)).map(char::from).collect()
}

/// HMAC-SHA256 under the named audit key, or SHA-256 for an unkeyed chain; `None` when
/// the key is not an audit key of the keyring.
fn chain_digest(keyring: &Keyring, kid: Option<&str>, body: &[u8]) -> Option<[u8; 32]> {
    match kid {
        Some(kid) => {
            let key = keyring.get(kid).filter(|k| k.key_use() == KeyUse::Audit)?;
            let mut mac = key.mac_key()?.start();
            mac.update(body);
            Some(mac.finalize().into_bytes().into())
        }
        None => Some(Sha256::digest(body).into()),
    }
}

/// [`chain_digest`] in lowercase hex, as records carry it.
fn chain_mac(keyring: &Keyring, kid: Option<&str>, body: &str) -> Option<String> {
    chain_digest(keyring, kid, body.as_bytes()).map(|digest| hex(&digest))
}

/// The first broken link of an audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong there.
    pub reason: BreakReason,
}

/// Why a link is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakReason {
    /// The line is not an audit record.
    NotARecord,
    /// The record's mac does not match its content: it was edited.
    Edited,
    /// The record's audit key is not in the keyring.
    UnknownKey(String),
    /// `seq` is not the previous record's plus one: records were deleted or reordered.
    Sequence {
        /// The sequence number expected.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// `prev` does not name the previous record's mac: records were deleted or reordered.
    Link,
    /// The chain is unkeyed, but the caller requires a keyed chain.
    Unkeyed,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.reason {
            BreakReason::NotARecord => f.write_str("not an audit record"),
            BreakReason::Edited => f.write_str("record was modified (mac does not match)"),
            BreakReason::UnknownKey(kid) => write!(f, "audit key {kid:?} is not in the keyring"),
            BreakReason::Sequence { expected, found } => {
                write!(f, "sequence {found} where {expected} was expected (records deleted or reordered)")
            }
            BreakReason::Link => f.write_str("does not follow the previous record (records deleted or reordered)"),
            BreakReason::Unkeyed => f.write_str("record is not keyed with an audit key"),
        }
    }
}

impl std::error::Error for ChainBreak {}

/// What a verified log contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSummary {
    /// Records verified.
    pub records: usize,
    /// Instances (chains) seen, with the sequence number each started at.
    pub instances: Vec<(String, u64)>,
}

/// Verifies every audit record in `log` (other lines, such as proxy log lines around
/// records, are skipped when they do not contain `"audit":1`). Each instance's chain must
/// be unbroken from its first record in the log; deleting a log's last records cannot be
/// detected from the log alone, which is why records are also shipped to a collector.
///
/// # Errors
/// The first [`ChainBreak`].
pub fn verify_audit_log(log: &str, keyring: &Keyring, require_keyed: bool) -> Result<ChainSummary, ChainBreak> {
    let mut last: HashMap<String, (u64, String)> = HashMap::new();
    let mut summary = ChainSummary::default();
    for (i, line) in log.lines().enumerate() {
        let fail = |reason| ChainBreak { line: i + 1, reason };
        let Some(start) = line.find("{\"audit\":1,") else { continue };
        let record = &line[start..];
        let at = record.rfind(MAC_MEMBER).ok_or(fail(BreakReason::NotARecord))?;
        let mac = record[at + MAC_MEMBER.len()..]
            .strip_suffix("\"}")
            .ok_or(fail(BreakReason::NotARecord))?;
        let body = format!("{}}}", &record[..at]);
        let fields: Value = serde_json::from_str(&body).map_err(|_| fail(BreakReason::NotARecord))?;
        let instance = fields["instance"].as_str().ok_or(fail(BreakReason::NotARecord))?.to_owned();
        let seq = fields["seq"].as_u64().ok_or(fail(BreakReason::NotARecord))?;
        let prev = fields["prev"].as_str().ok_or(fail(BreakReason::NotARecord))?;
        let kid = fields["mac_kid"].as_str();
        if kid.is_none() && require_keyed {
            return Err(fail(BreakReason::Unkeyed));
        }
        if let Some(kid) = kid.filter(|k| keyring.get(k).is_none_or(|key| key.key_use() != KeyUse::Audit)) {
            return Err(fail(BreakReason::UnknownKey(kid.to_owned())));
        }
        let expected = chain_mac(keyring, kid, &body).ok_or(fail(BreakReason::Edited))?;
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), mac.as_bytes()).into();
        if !same {
            return Err(fail(BreakReason::Edited));
        }
        match last.get(&instance) {
            Some((last_seq, last_mac)) => {
                if seq != last_seq + 1 {
                    return Err(fail(BreakReason::Sequence {
                        expected: last_seq + 1,
                        found: seq,
                    }));
                }
                if prev != last_mac {
                    return Err(fail(BreakReason::Link));
                }
            }
            None => {
                if seq == 0 && !prev.is_empty() {
                    return Err(fail(BreakReason::Link));
                }
                summary.instances.push((instance.clone(), seq));
            }
        }
        last.insert(instance, (seq, mac.to_owned()));
        summary.records += 1;
    }
    Ok(summary)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::FieldResult;
    use crate::keyring::KeyId;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::from_jwks(
            r#"{"keys":[{"kty":"oct","kid":"audit-1","alg":"HS256","use":"audit","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn macs_are_lowercase_hex_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    fn log(n: usize) -> Vec<String> {
        let ring = ring();
        let mut chain = AuditChain::new("i-1");
        let fields = [FieldOutcome {
            pointer: "/data/ssn".into(),
            kid: Some(KeyId::from_untrusted("k1")),
            result: FieldResult::Sealed,
        }];
        (0..n)
            .map(|i| {
                let facts = AuditFacts {
                    time_unix_nanos: 1_614_265_330_123_000_000 + i as u128,
                    request_id: Some("r"),
                    operations: vec!["seal"],
                    fields: &fields,
                    outcome: "allowed",
                    ..AuditFacts::default()
                };
                chain.append(&ring, &facts)
            })
            .collect()
    }

    #[test]
    fn an_intact_log_verifies() {
        let lines = log(4).join("\n");
        let summary = verify_audit_log(&lines, &ring(), true).unwrap();
        assert_eq!(summary.records, 4);
        assert!(lines.contains("\"time\":\"2021-02-25T15:02:10.123Z\""), "{lines}");
    }

    /// The record as serde serialized it before it was written member by member: the
    /// oracle for the writer's bytes.
    #[derive(serde::Serialize)]
    struct SerdeField<'a> {
        pointer: &'a str,
        result: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        kid: Option<&'a str>,
    }

    #[derive(serde::Serialize)]
    struct SerdeRecord<'a> {
        audit: u8,
        instance: &'a str,
        seq: u64,
        time: String,
        request_id: Option<&'a str>,
        principal: Option<&'a str>,
        rule: Option<&'a str>,
        direction: Option<&'static str>,
        event_id: Option<&'a str>,
        event_type: Option<&'a str>,
        operations: &'a [&'static str],
        fields: Vec<SerdeField<'a>>,
        kids: Vec<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        stale_kids: &'a [String],
        outcome: &'static str,
        reason: Option<&'static str>,
        mac_kid: Option<&'a str>,
        prev: &'a str,
    }

    /// What the serde version of `append` wrote for these facts.
    fn serde_append(ring: &Keyring, instance: &str, seq: u64, prev: &str, facts: &AuditFacts<'_>) -> String {
        let mut kids: Vec<&str> = facts.fields.iter().filter_map(|f| f.kid.as_ref().map(|k| k.as_str())).collect();
        kids.extend(facts.other_kids.iter().map(String::as_str));
        kids.sort_unstable();
        kids.dedup();
        let secs = u64::try_from(facts.time_unix_nanos / 1_000_000_000).unwrap();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(i64::try_from(days).unwrap());
        let millis = (facts.time_unix_nanos / 1_000_000) % 1000;
        let record = SerdeRecord {
            audit: 1,
            instance,
            seq,
            time: format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            ),
            request_id: facts.request_id,
            principal: facts.principal,
            rule: facts.rule,
            direction: facts.direction.map(Direction::as_str),
            event_id: facts.event_id,
            event_type: facts.event_type,
            operations: &facts.operations,
            fields: facts
                .fields
                .iter()
                .map(|f| SerdeField {
                    pointer: &f.pointer,
                    result: f.result.as_str(),
                    kid: f.kid.as_ref().map(|k| k.as_str()),
                })
                .collect(),
            kids,
            stale_kids: &facts.stale_kids,
            outcome: facts.outcome,
            reason: facts.reason,
            mac_kid: ring.primary(KeyUse::Audit).map(|k| k.kid().as_str()),
            prev,
        };
        let body = serde_json::to_string(&record).unwrap();
        let mac = chain_mac(ring, record.mac_kid, &body).unwrap_or_default();
        format!("{}{MAC_MEMBER}{mac}\"}}", &body[..body.len() - 1])
    }

    /// Any text a header, a pointer or a key id can carry: quotes, backslashes, control
    /// characters, non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-z\"\\\\/\\x00-\\x1f\\x7f é€😀~]{0,12}").unwrap()
    }

    proptest! {
        #[test]
        fn records_are_the_bytes_serde_wrote(
            instance in text(),
            time in 0u128..4_102_444_800_000_000_000,
            request_id in proptest::option::of(text()),
            principal in proptest::option::of(text()),
            rule in proptest::option::of(text()),
            direction in proptest::option::of(proptest::bool::ANY),
            event_id in proptest::option::of(text()),
            event_type in proptest::option::of(text()),
            fields in proptest::collection::vec((text(), 0usize..4, proptest::option::of(text())), 0..4),
            other_kids in proptest::collection::vec(text(), 0..3),
            stale_kids in proptest::collection::vec(text(), 0..3),
            refused in proptest::bool::ANY,
            keyed in proptest::bool::ANY,
        ) {
            let results = [FieldResult::Sealed, FieldResult::Opened, FieldResult::Absent, FieldResult::Withheld];
            let fields: Vec<FieldOutcome> = fields
                .into_iter()
                .map(|(pointer, result, kid)| FieldOutcome {
                    pointer,
                    kid: kid.map(|k| KeyId::from_untrusted(&k)),
                    result: results[result],
                })
                .collect();
            let facts = AuditFacts {
                time_unix_nanos: time,
                request_id: request_id.as_deref(),
                principal: principal.as_deref(),
                rule: rule.as_deref(),
                direction: direction.map(|d| if d { Direction::Request } else { Direction::Response }),
                event_id: event_id.as_deref(),
                event_type: event_type.as_deref(),
                operations: vec!["verify", "seal"],
                fields: &fields,
                other_kids,
                stale_kids,
                outcome: if refused { "refused" } else { "allowed" },
                reason: refused.then_some("signature-invalid"),
            };
            let ring = if keyed { ring() } else { Keyring::from_jwks(
                r#"{"keys":[{"kty":"oct","kid":"k1","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#,
            )
            .unwrap() };
            let mut chain = AuditChain::new(instance.clone());
            let first = chain.append(&ring, &facts);
            prop_assert_eq!(&first, &serde_append(&ring, &instance, 0, "", &facts));
            let prev = chain.prev.clone();
            prop_assert_eq!(chain.append(&ring, &facts), serde_append(&ring, &instance, 1, &prev, &facts));
            let mac_member = format!("{MAC_MEMBER}{prev}\"}}");
            prop_assert!(first.ends_with(&mac_member));
        }
    }

    #[test]
    fn deletion_reordering_and_edits_are_detected() {
        let lines = log(4);
        let deleted = [lines[0].clone(), lines[2].clone(), lines[3].clone()].join("\n");
        assert_eq!(verify_audit_log(&deleted, &ring(), true).unwrap_err().line, 2);
        let swapped = [lines[0].clone(), lines[2].clone(), lines[1].clone(), lines[3].clone()].join("\n");
        assert_eq!(verify_audit_log(&swapped, &ring(), true).unwrap_err().line, 2);
        let edited = [lines[0].clone(), lines[1].replace("/data/ssn", "/data/xyz"), lines[2].clone()].join("\n");
        let err = verify_audit_log(&edited, &ring(), true).unwrap_err();
        assert_eq!((err.line, err.reason), (2, BreakReason::Edited));
    }
}
