//! The Standard Webhooks vectors of `tests/vectors/webhooks/` (written by the independent
//! generator, pyca `cryptography` for `v1a`) as conformance cases, so every host runs them
//! the way it runs `tests/cases/`: the vector's keyring as the gateway's, its headers and
//! body as the request, its outcome as a forward, a refusal or a refused configuration.
//!
//! The vectors are signed at a fixed `now`; hosts read the real clock, so each case's
//! policy widens the tolerance by the time since then, and by an hour more for a case run
//! later in a long suite; an expired vector gets no hour, so it stays past the tolerance.

use crate::case::now;
use serde_json::{Value, json};

/// The vectors as `(name, case)`, sorted by name.
///
/// # Panics
///
/// When the folder or a vector cannot be read.
pub fn cases() -> Vec<(String, Value)> {
    let files = crate::generate::vector_files("webhooks");
    assert!(files.len() >= 20, "the webhook vectors are missing from tests/vectors/webhooks");
    files
        .iter()
        .map(|path| {
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let vector: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            let case = case_of(&vector);
            (name, case)
        })
        .collect()
}

/// The problem a refused vector gets: type slug, and what its detail says.
fn refusal(error: &str) -> (&'static str, Option<&'static str>) {
    match error {
        "not_authentic" => ("signature-invalid", Some("no valid signature")),
        "no_checkable_signature" => ("signature-invalid", Some("no signature this keyring can check")),
        "malformed_header" => ("signature-malformed", None),
        "missing_header" => ("signature-missing", None),
        "timestamp_too_old" | "timestamp_too_new" => ("signature-expired", None),
        other => panic!("unknown vector outcome {other:?}"),
    }
}

fn case_of(vector: &Value) -> Value {
    let since = now() - vector["now"].as_i64().expect("now");
    let expired = matches!(vector["expected"]["error"].as_str(), Some("timestamp_too_old"));
    let later = if expired { 0 } else { 3600 };
    let tolerance = vector["tolerance_seconds"].as_i64().expect("tolerance") + since.max(0) + later;
    let mut headers = vector["headers"].clone();
    headers["content-type"] = json!("application/json");
    let expected = &vector["expected"];
    let expect = if let Some(at) = expected["keyring_error"].as_str() {
        json!({"config_refused": {"at": at}})
    } else if let Some(error) = expected["error"].as_str() {
        let (slug, detail) = refusal(error);
        let mut reply = json!({"status": 401, "problem_type": format!("urn:eventseal:problem:{slug}")});
        if let Some(detail) = detail {
            reply["detail_contains"] = json!(detail);
        }
        json!({"local_reply": reply, "metrics": {"eventseal_signature_failures": 1}})
    } else {
        let non_primary = u64::from(expected["status"] != "primary");
        json!({
            "forwarded": {"upstream": {"unchanged_bytes": true}},
            "metrics": {"eventseal_signatures_verified": 1, "eventseal_verified_under_non_primary_key": non_primary},
        })
    };
    json!({
        "description": vector["description"],
        "config": {
            "keys": {"env": "EVENTSEAL_KEYS"},
            "signatures": {"tolerance_seconds": tolerance},
            "rules": [{"name": "hooks-verify", "match": {"methods": ["POST"], "path_prefix": "/hooks"}, "verify": true}],
        },
        "keys": vector["keys"],
        "request": {
            "method": "POST",
            "path": "/hooks/vector",
            "authority": "gateway.example",
            "headers": headers,
            "body": vector["body"],
        },
        "expect": expect,
    })
}
