//! The benchmark workloads, shared by the native criterion bench and the wasm comparison:
//! a CloudEvents-style event of a given size and the policies that seal or open N fields.

use serde_json::{Value, json};

/// The keyring every workload uses (one sealing key, one signing key).
pub const KEYRING: &str = r#"{"keys":[
 {"kty":"oct","kid":"bench-seal","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"},
 {"kty":"oct","kid":"bench-sign","alg":"HS256","k":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","status":"primary"}]}"#;

/// A CloudEvents-style event of about `target_bytes`, with `fields` sensitive members in
/// `data` (`/data/f0` ...) and padding in `/data/notes`.
pub fn event(target_bytes: usize, fields: usize) -> Vec<u8> {
    let mut data = serde_json::Map::new();
    for i in 0..fields {
        data.insert(format!("f{i}"), json!(format!("sensitive-value-{i:04}")));
    }
    data.insert("notes".into(), json!(""));
    let mut event = json!({
        "specversion": "1.0", "id": "evt-0001", "source": "/bench", "type": "com.example.bench",
        "datacontenttype": "application/json", "data": Value::Object(data)
    });
    let size = serde_json::to_vec(&event).unwrap().len();
    event["data"]["notes"] = json!("x".repeat(target_bytes.saturating_sub(size)));
    serde_json::to_vec(&event).unwrap()
}

/// The selectors of the first `fields` sensitive members.
pub fn selectors(fields: usize) -> Vec<String> {
    (0..fields).map(|i| format!("/data/f{i}")).collect()
}

/// A policy with one rule on `POST /bench` that seals (or opens) the selected fields.
pub fn policy(action: &str, fields: usize) -> String {
    let selectors = selectors(fields);
    let body = match action {
        "seal" => json!({"seal": {"fields": selectors}}),
        "open" => json!({"open": {"fields": selectors, "readers": ["*"]}, "apply_to": "request"}),
        "verify" => json!({"verify": true}),
        other => panic!("unknown action {other}"),
    };
    let mut rule = json!({"name": "bench", "match": {"methods": ["POST"], "path": "/bench"}, "context": {"type": {"body": "/type"}}});
    rule.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    json!({"principal": {"source": "header", "header": "x-principal"}, "rules": [rule]}).to_string()
}
