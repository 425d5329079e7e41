//! The benchmark workloads, shared by the native criterion bench and the wasm comparison:
//! a CloudEvents-style event of a given size and the policies that seal or open N fields.

use eventseal_core::{BodyJob, Decision, Direction, Engine, MemoryReplayCache, Policy, Principal, RequestHead};
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
    let mut rule = json!({"name": "bench", "match": {"methods": [METHOD], "path": PATH}, "context": {"type": {"body": "/type"}}});
    rule.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    json!({"principal": {"source": "header", "header": PRINCIPAL.0}, "rules": [rule]}).to_string()
}

/// The method, path and authority every workload's requests use (the bench rule matches them).
pub const METHOD: &str = "POST";
/// See [`METHOD`].
pub const PATH: &str = "/bench";
/// See [`METHOD`].
pub const AUTHORITY: &str = "bench";
/// The principal header the workload policies trust, and its value.
pub const PRINCIPAL: (&str, &str) = ("x-principal", "bench");

/// An engine for a workload policy, with the workloads' keyring.
///
/// # Panics
/// When the policy or the keyring is invalid (a bug in the workloads).
pub fn engine(policy: &str) -> Engine {
    let policy = Policy::from_json(policy).expect("the workload policy is valid");
    let keyring = policy
        .load_keyring(|_| Some(KEYRING.to_owned()))
        .expect("the workload keyring is valid");
    Engine::new(policy, keyring)
}

/// The request headers of every workload (besides signatures).
pub fn headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        (PRINCIPAL.0.into(), PRINCIPAL.1.into()),
    ]
}

/// Core's decision on a request body to `POST /bench`, as the filter asks for it: the body
/// to forward.
///
/// # Panics
/// When the rule does not match or the body is refused (the workloads are valid).
pub fn decide(engine: &Engine, headers: &[(String, String)], body: &[u8], now: i64) -> Vec<u8> {
    let request = RequestHead {
        method: METHOD,
        path: PATH,
        authority: AUTHORITY,
        headers,
        subject: None,
    };
    let rule = engine.rule(engine.route(&request).expect("the bench rule matches"));
    let principal = Principal {
        id: PRINCIPAL.1.into(),
        claims: serde_json::Value::Null,
    };
    let job = BodyJob {
        rule,
        direction: Direction::Request,
        request,
        headers,
        principal: Some(&principal),
        body,
        now,
    };
    match engine.decide(&job, &mut MemoryReplayCache::default()) {
        Decision::Forward { body: Some(body), .. } => body,
        Decision::Forward { body: None, .. } => body.to_vec(),
        Decision::Refuse { problem, .. } => panic!("refused: {problem:?}"),
    }
}

/// The subject of the NATS gateway workload (`benches/nats-load.sh`): the tenant is its
/// second token.
pub const NATS_SUBJECT: &str = "orders.acme.created";
/// The producer the NATS policy admits on publish (a client certificate's URI SAN).
pub const NATS_PRODUCER: &str = "spiffe://example.org/ns/shop/sa/checkout";
/// The reader the NATS policy opens the fields for on delivery.
pub const NATS_READER: &str = "spiffe://example.org/ns/billing/sa/invoicer";

/// The NATS gateway policy: publishes on `orders.*.created` by a shop producer get the
/// first `fields` sensitive members sealed, deliveries on it get them opened for billing
/// readers; the tenant (the subject's second token) is the context. Keys come from the
/// environment variable `EVENTSEAL_KEYS`.
pub fn nats_policy(fields: usize) -> String {
    let selectors = selectors(fields);
    let context = json!({"tenant": {"subject_token": 2}});
    json!({
        "protocol": "nats",
        "keys": {"env": "EVENTSEAL_KEYS"},
        "principal": {"source": "mtls"},
        "rules": [
            {"name": "orders-publish", "match": {"subject": "orders.*.created"}, "apply_to": "publish",
             "producers": ["spiffe://example.org/ns/shop/*"], "context": context, "seal": {"fields": selectors}},
            {"name": "orders-delivery", "match": {"subject": "orders.*.created"}, "apply_to": "delivery",
             "context": context, "open": {"fields": selectors, "readers": ["spiffe://example.org/ns/billing/*"]}},
        ]
    })
    .to_string()
}
