//! Every envelope vector of `tests/vectors/` (docs/FORMAT.md) through the component: the
//! vector's envelope is the one field of an event, opened by a policy that opens that
//! pointer, with the vector's context as literal context values and its keys as keyring.

use crate::component;
use eventseal_harness::component::{Exchange, FieldResult, Principal, ProblemKind};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

fn vector_files() -> Vec<PathBuf> {
    eventseal_testkit::generate::vector_files("")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// An event holding `value` at `pointer` and nothing else (arrays where a token is an index).
fn event_with(pointer: &str, value: Value) -> Value {
    let tokens: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    tokens.iter().rev().fold(value, |inner, token| match token.parse::<usize>() {
        Ok(index) => {
            let mut items = vec![Value::Null; index];
            items.push(inner);
            Value::Array(items)
        }
        Err(_) => {
            let mut members = Map::new();
            members.insert(token.clone(), inner);
            Value::Object(members)
        }
    })
}

/// The outcome class of a `sealed-field-rejected` detail ("cannot open <pointer>: <why>").
fn class(detail: &str) -> &'static str {
    let why = detail.rsplit_once(": ").map_or(detail, |(_, why)| why);
    let malformed = detail.contains(": malformed envelope");
    match why {
        _ if malformed => "malformed",
        "envelope is not authentic" => "unauthenticated",
        "envelope was sealed for another field" => "moved_field",
        "envelope was sealed under another context" => "wrong_context",
        "value is not a sealed envelope" => "not_sealed",
        _ if why.starts_with("unknown key") => "unknown_key",
        _ if why.ends_with("is disabled") => "disabled_key",
        _ => "unrecognized",
    }
}

/// One vector as the component meets it.
pub struct Opening {
    /// The vector's file name.
    pub file: String,
    /// The vector itself.
    pub vector: Value,
    /// A policy whose one rule opens the vector's pointer (route `POST /vector`, any
    /// reader), with the vector's context as literal values.
    pub policy: String,
    /// The vector's keys, as the keyring.
    pub keyring: String,
    /// An event holding the vector's envelope at its pointer.
    pub event: String,
}

/// The exchange every vector is opened on: a JSON POST to `/vector`, the route of every
/// vector's policy.
pub fn vector_exchange() -> Exchange {
    Exchange {
        method: "POST".into(),
        path: "/vector".into(),
        authority: "events.example".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        response: None,
    }
}

/// Every vector of `tests/vectors/`, in file name order.
pub fn openings() -> Vec<Opening> {
    let files = vector_files();
    assert!(files.len() >= 20, "only {} vectors", files.len());
    files
        .iter()
        .map(|path| {
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
            let vector: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let pointer = vector["pointer"].as_str().expect("a pointer");
            let context: Map<String, Value> = vector["context"]
                .as_object()
                .expect("a context object")
                .iter()
                .map(|(name, value)| (name.clone(), json!({ "literal": value })))
                .collect();
            let policy = json!({"rules": [{
                "name": "vector",
                "match": {"path": "/vector"},
                "context": context,
                "open": {"fields": [pointer], "required": true, "readers": ["*"]},
            }]});
            let event = event_with(pointer, vector["envelope"].clone());
            Opening {
                policy: policy.to_string(),
                keyring: vector["keys"].to_string(),
                event: event.to_string(),
                file,
                vector,
            }
        })
        .collect()
}

#[test]
fn every_vector_gives_its_expected_outcome_through_the_component() {
    let openings = openings();
    let mut failures = Vec::new();
    for Opening {
        file,
        vector,
        policy,
        keyring,
        event,
    } in &openings
    {
        let pointer = vector["pointer"].as_str().expect("a pointer");
        let expected = vector["expected"].as_str().expect("an expected outcome");
        let mut sealer = component()
            .create(policy, keyring)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .unwrap_or_else(|e| panic!("{file}: configuration refused: {}", e.message));
        let exchange = vector_exchange();
        let reader = Principal {
            id: "reader".into(),
            claims: String::new(),
        };
        let result = sealer
            .open(event.as_bytes(), &exchange, Some(&reader))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let got = match &result {
            Ok(outcome) => {
                let opened: Value = serde_json::from_slice(&outcome.event).expect("the opened event is JSON");
                if opened.pointer(pointer) != vector.get("plaintext") {
                    failures.push(format!("{file}: opened to {:?}", opened.pointer(pointer)));
                }
                if !matches!(outcome.fields.as_slice(), [f] if f.result == FieldResult::Opened) {
                    failures.push(format!("{file}: field outcomes {:?}", outcome.fields));
                }
                "success"
            }
            Err(problem) if problem.kind == ProblemKind::SealedFieldRejected && problem.status == 422 => class(&problem.detail),
            Err(problem) => {
                failures.push(format!(
                    "{file}: refused as {:?} {}: {}",
                    problem.kind, problem.status, problem.detail
                ));
                continue;
            }
        };
        if got != expected {
            failures.push(format!("{file}: expected {expected}, got {got} ({result:?})"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        openings.len(),
        failures.join("\n")
    );
}

#[test]
fn events_are_built_where_the_pointer_says() {
    assert_eq!(event_with("/a~1b/m~0n", json!(1)), json!({"a/b": {"m~n": 1}}));
    assert_eq!(event_with("/items/1/price", json!(2)), json!({"items": [null, {"price": 2}]}));
}
