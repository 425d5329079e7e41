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
use serde::Serialize;
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

#[derive(Serialize)]
struct FieldRecord<'a> {
    pointer: &'a str,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

/// The serialized form; member order is fixed so the bytes are reproducible.
#[derive(Serialize)]
struct Record<'a> {
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
    fields: Vec<FieldRecord<'a>>,
    kids: Vec<&'a str>,
    /// Only when a key being rotated out was used, so other records keep their bytes.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stale_kids: &'a [String],
    outcome: &'static str,
    reason: Option<&'static str>,
    mac_kid: Option<&'a str>,
    prev: &'a str,
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
    pub fn append(&mut self, keyring: &Keyring, facts: &AuditFacts<'_>) -> String {
        let mut kids: Vec<&str> = facts.fields.iter().filter_map(|f| f.kid.as_ref().map(|k| k.as_str())).collect();
        kids.extend(facts.other_kids.iter().map(String::as_str));
        kids.sort_unstable();
        kids.dedup();
        let key = keyring.primary(KeyUse::Audit);
        let record = Record {
            audit: 1,
            instance: &self.instance,
            seq: self.seq,
            time: rfc3339(facts.time_unix_nanos),
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
                .map(|f| FieldRecord {
                    pointer: &f.pointer,
                    result: f.result.as_str(),
                    kid: f.kid.as_ref().map(|k| k.as_str()),
                })
                .collect(),
            kids,
            stale_kids: &facts.stale_kids,
            outcome: facts.outcome,
            reason: facts.reason,
            mac_kid: key.map(|k| k.kid().as_str()),
            prev: &self.prev,
        };
        // Serializing this struct of strings and numbers cannot fail.
        let body = serde_json::to_string(&record).unwrap_or_default();
        let mac = chain_mac(keyring, record.mac_kid, &body).unwrap_or_default();
        self.seq += 1;
        self.prev.clone_from(&mac);
        format!("{}{MAC_MEMBER}{mac}\"}}", &body[..body.len() - 1])
    }
}

/// HMAC-SHA256 under the named audit key, or SHA-256 for an unkeyed chain; lowercase hex.
fn chain_mac(keyring: &Keyring, kid: Option<&str>, body: &str) -> Option<String> {
    let digest: Vec<u8> = match kid {
        Some(kid) => {
            let key = keyring.get(kid).filter(|k| k.key_use() == KeyUse::Audit)?;
            let mut mac = key.mac_key()?.start();
            mac.update(body.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        None => Sha256::digest(body.as_bytes()).to_vec(),
    };
    Some(hex(&digest))
}

/// Lowercase hex, without a formatter call and a string per byte: one runs per record.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
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

/// RFC 3339 UTC time with milliseconds, from Unix nanoseconds.
fn rfc3339(nanos: u128) -> String {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    let millis = (nanos / 1_000_000) % 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
