//! The audit-chain vectors of `tests/vectors/audit/`, written by the independent
//! Python generator (`tests/vectors/generate.py`, HMAC-SHA256 from its standard library):
//! every log verifies or breaks where the vector says, and a chain given the facts of the
//! keyed vector writes its lines byte for byte (a known answer for the writing side too).

use crate::vectors;
use eventseal_core::{AuditChain, AuditFacts, BreakReason, Direction, FieldOutcome, FieldResult, Keyring, verify_audit_log};
use serde_json::Value;

fn keyring(vector: &Value) -> Keyring {
    Keyring::from_value(&vector["keys"], "/keys").expect("the vector's keyring")
}

fn log(vector: &Value) -> String {
    let lines: Vec<&str> = vector["log"]
        .as_array()
        .expect("log lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    lines.join("\n") + "\n"
}

fn text(value: &Value) -> Option<&str> {
    value.as_str()
}

fn reason(reason: &BreakReason) -> &'static str {
    match reason {
        BreakReason::NotARecord => "not_a_record",
        BreakReason::Edited => "edited",
        BreakReason::UnknownKey(_) => "unknown_key",
        BreakReason::Sequence { .. } => "sequence",
        BreakReason::Link => "link",
        BreakReason::Unkeyed => "unkeyed",
        _ => "other",
    }
}

#[test]
fn every_audit_vector_verifies_or_breaks_where_it_says() {
    let vectors = vectors("audit");
    assert!(vectors.len() >= 8, "the audit vectors are missing");
    let mut outcomes = std::collections::BTreeSet::new();
    for (name, vector) in &vectors {
        let require_keyed = vector["require_keyed"].as_bool().expect("require_keyed");
        let got = verify_audit_log(&log(vector), &keyring(vector), require_keyed);
        match (&vector["expected"], got) {
            (Value::String(valid), Ok(summary)) if valid == "valid" => {
                let records = vector["facts"].as_array().map_or(3, Vec::len);
                assert_eq!(summary.records, records, "{name}");
                outcomes.insert("valid");
            }
            (expected @ Value::Object(_), Err(broken)) => {
                assert_eq!(Some(broken.line as u64), expected["line"].as_u64(), "{name}: {broken}");
                assert_eq!(Some(reason(&broken.reason)), expected["reason"].as_str(), "{name}: {broken}");
                outcomes.insert(reason(&broken.reason));
            }
            (expected, got) => panic!("{name}: expected {expected}, got {got:?}"),
        }
    }
    for outcome in ["valid", "edited", "sequence", "unknown_key", "unkeyed"] {
        assert!(outcomes.contains(outcome), "no vector breaks with {outcome}");
    }
}

#[test]
fn a_chain_writes_the_keyed_vector_byte_for_byte() {
    let (name, vector) = vectors("audit")
        .into_iter()
        .find(|(_, v)| v.get("facts").is_some())
        .expect("a vector with the facts behind its log");
    let keyring = keyring(&vector);
    let mut chain = AuditChain::new(vector["instance"].as_str().expect("instance"));
    for (i, facts) in vector["facts"].as_array().expect("facts").iter().enumerate() {
        let fields: Vec<FieldOutcome> = facts["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| FieldOutcome {
                pointer: f["pointer"].as_str().expect("pointer").to_owned(),
                kid: f["kid"]
                    .as_str()
                    .map(|kid| keyring.get(kid).expect("a kid of the keyring").kid().clone()),
                result: match f["result"].as_str() {
                    Some("sealed") => FieldResult::Sealed,
                    Some("opened") => FieldResult::Opened,
                    Some("absent") => FieldResult::Absent,
                    Some("withheld") => FieldResult::Withheld,
                    _ => FieldResult::Masked,
                },
            })
            .collect();
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        let facts = AuditFacts {
            time_unix_nanos: u128::from(facts["time_unix_nanos"].as_u64().expect("time")),
            request_id: text(&facts["request_id"]),
            principal: text(&facts["principal"]),
            rule: text(&facts["rule"]),
            direction: match facts["direction"].as_str() {
                Some("request") => Some(Direction::Request),
                Some("response") => Some(Direction::Response),
                _ => None,
            },
            event_id: text(&facts["event_id"]),
            event_type: text(&facts["event_type"]),
            operations: facts["operations"]
                .as_array()
                .expect("operations")
                .iter()
                .filter_map(Value::as_str)
                .map(leak)
                .collect(),
            fields: &fields,
            other_kids: strings(&facts["other_kids"]),
            stale_kids: strings(&facts["stale_kids"]),
            outcome: leak(facts["outcome"].as_str().expect("outcome")),
            reason: facts["reason"].as_str().map(leak),
        };
        let line = chain.append(&keyring, &facts);
        assert_eq!(Some(line.as_str()), vector["log"][i].as_str(), "{name}: record {i}");
    }
}

/// A JSON array of strings (absent: empty).
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}
