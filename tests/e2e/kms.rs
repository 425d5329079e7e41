//! The filter in real Envoy with a `vault_transit` key source on a real OpenBao: the body is
//! paused while Envoy's `dispatch_http_call` goes to the KMS cluster, the upstream gets the
//! field sealed with an OpenBao data key (checked independently: OpenBao unwraps the
//! encrypted key, and the test's own AES-GCM decrypts the field), an allowed reader gets
//! it opened, and while OpenBao is down the client gets 503 with `Retry-After` and the
//! upstream none of the body; after OpenBao is back, requests succeed again. Envoy's
//! `/stats` counts the KMS calls and the failed ones.

use crate::client::{self, Request};
use crate::envoy::{self, Envoy, Listener};
use crate::upstream::{Answer, Upstream};
use eventseal_kms_tests::{OpenBao, ROOT_TOKEN, decrypt_field, openbao_decrypt, orders_policy, wrapped_of};
use serde_json::{Value, json};
use std::time::Duration;

fn policy(bao: &OpenBao) -> Value {
    // Every seal needs the KMS, so a dead KMS shows at once; retry soon after.
    let limits = json!({"max_seals_per_key": 1, "backoff_initial_ms": 500, "backoff_max_ms": 1000, "timeout_ms": 2000});
    orders_policy(bao, &limits)
}

fn event(n: u32) -> Value {
    json!({"type": "order.created", "id": format!("o-{n}"), "data": {"card": {"number": "4111111111111111", "n": n}}})
}

fn post(envoy: &Envoy, path: &str, body: &Value) -> client::Response {
    let body = body.to_string();
    let length = body.len().to_string();
    let headers: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway.example"),
        ("content-type", "application/json"),
        ("content-length", &length),
        ("x-client-id", "billing"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    client::send(
        envoy.listener("kms"),
        None,
        &Request {
            headers: &headers,
            body: Some(body.as_bytes()),
            chunks: 1,
        },
    )
    .expect("Envoy answers")
}

/// The body the upstream received for the one request since the last reset.
fn upstream_body(upstream: &Upstream) -> Value {
    let received = upstream.received(Duration::from_millis(30));
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].end_of_stream);
    serde_json::from_slice(&received[0].body).expect("JSON at the upstream")
}

fn ok() -> Answer {
    Answer {
        headers: vec![(":status".to_owned(), "200".to_owned())],
        body: Some(b"{}".to_vec()),
        chunks: 1,
    }
}

/// The test's own unwrap (OpenBao's decrypt) and AES-256-GCM open of a KMS envelope.
fn decrypt_independently(bao: &OpenBao, envelope: &str) -> Value {
    decrypt_field(&openbao_decrypt(bao, &wrapped_of(envelope)), envelope)
}

#[test]
fn envoy_seals_and_opens_with_openbao_and_fails_closed_while_it_is_down() {
    let mut bao = OpenBao::start();
    bao.create_transit_key("transit", "orders");
    let upstream = Upstream::start();
    let listener = Listener {
        name: "kms".to_owned(),
        policy: policy(&bao).to_string(),
        keys: String::new(),
        env: vec![("BAO_TOKEN".to_owned(), ROOT_TOKEN.to_owned())],
        tls: None,
        jwt: None,
        cluster: "upstream".to_owned(),
    };
    let clusters = [("upstream".to_owned(), upstream.addr), ("openbao".to_owned(), bao.addr())];
    let envoy = Envoy::start(&envoy::bootstrap(&[listener], &clusters)).unwrap_or_else(|r| panic!("Envoy refused:\n{}", r.log));

    upstream.reset(ok());
    let response = post(&envoy, "/events/orders", &event(1));
    assert_eq!(
        response.status,
        Some(200),
        "{}\n{}",
        String::from_utf8_lossy(&response.body),
        envoy.log()
    );
    let sealed = upstream_body(&upstream);
    let card = sealed["data"]["card"].as_str().expect("sealed into one string");
    assert_eq!(decrypt_independently(&bao, card), event(1)["data"]["card"]);

    upstream.reset(ok());
    assert_eq!(post(&envoy, "/deliver/orders", &sealed).status, Some(200));
    assert_eq!(upstream_body(&upstream), event(1));

    bao.kill();
    upstream.reset(ok());
    let refused = post(&envoy, "/events/orders", &event(2));
    assert_eq!(refused.status, Some(503), "{}", String::from_utf8_lossy(&refused.body));
    assert!(
        refused
            .header("retry-after")
            .is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s >= 1))
    );
    let problem: Value = serde_json::from_slice(&refused.body).expect("problem+json");
    assert_eq!(problem["type"], "urn:eventseal:problem:kms-unavailable");
    // The upstream saw at most the headers, then a reset: none of the body.
    let received = upstream.received(Duration::from_millis(100));
    assert!(received.iter().all(|r| r.body.is_empty() && !r.end_of_stream), "{received:?}");

    bao.restart();
    std::thread::sleep(Duration::from_millis(1200));
    upstream.reset(ok());
    let response = post(&envoy, "/events/orders", &event(3));
    assert_eq!(response.status, Some(200), "{}", String::from_utf8_lossy(&response.body));
    let sealed = upstream_body(&upstream);
    assert_eq!(
        decrypt_independently(&bao, sealed["data"]["card"].as_str().expect("sealed")),
        event(3)["data"]["card"]
    );
    // Envoy shows the KMS counters: the call made while OpenBao was down is a failure.
    let (_, stats) = envoy.get("/stats?filter=eventseal_kms").expect("the admin API answers");
    let counter = |name: &str| {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("wasmcustom.{name}: ")))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no counter {name} in:\n{stats}"))
    };
    let (calls, failures) = (counter("eventseal_kms_calls"), counter("eventseal_kms_call_failures"));
    assert!(failures >= 1 && calls >= failures + 2, "{stats}");
    assert_eq!(counter("eventseal_kms_calls_resent"), 0, "{stats}");
    let log = envoy.stop();
    assert!(!log.contains(ROOT_TOKEN), "the token is in Envoy's log");
}
