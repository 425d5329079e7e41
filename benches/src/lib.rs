//! Shared pieces of eventseal's benchmarks: the core bench's workloads (the same file, so
//! every comparison runs exactly what `cargo bench -p eventseal-core` runs) and core's
//! decision on one request body, as the filter makes it.

#[path = "../../crates/core/benches/workloads.rs"]
#[allow(missing_docs, dead_code)]
pub mod workloads;

use eventseal_core::{BodyJob, Decision, Direction, Engine, MemoryReplayCache, Policy, Principal, RequestHead};

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
        .load_keyring(|_| Some(workloads::KEYRING.to_owned()))
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
    };
    let rule = engine.route(&request).expect("the bench rule matches");
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

/// The `webhook-*` headers of a signed request.
///
/// # Panics
/// When the workloads' keyring has no signing key (a bug in the workloads).
pub fn signature_headers(engine: &Engine, id: &str, timestamp: i64, body: &[u8]) -> [(String, String); 3] {
    let signature = eventseal_core::sign(engine.keyring(), id, timestamp, body).expect("the workload keyring signs");
    [
        ("webhook-id".into(), id.to_owned()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ]
}
