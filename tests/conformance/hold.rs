//! `envoy.headers: hold` through the shipped filter in the harness, with and without
//! Envoy's `allow_on_headers_stop_iteration` (which the harness models as cpp-host does).
//! Whatever is forwarded is checked with the runner's own JOSE and HMAC code.

use crate::module;
use eventseal_harness::{HttpStream, Plugin, PluginConfig, StreamState};
use eventseal_testkit::jose;
use serde_json::{Value, json};
use std::time::Duration;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn keys() -> Value {
    json!({"keys": [
        {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": KEY, "status": "primary"},
        {"kty": "oct", "kid": "h1", "alg": "HS256", "k": HOOK, "status": "primary"},
    ]})
}

fn policy(headers: &str) -> Value {
    json!({
        "envoy": {"headers": headers},
        "principal": {"source": "header", "header": "x-client"},
        "rules": [
            {"name": "publish", "match": {"path": "/publish"}, "context": {"type": {"body": "/type"}},
             "seal": {"fields": ["/data/card"]}, "sign": true},
            {"name": "read", "match": {"path": "/read"}, "apply_to": "response",
             "context": {"type": {"body": "/type"}},
             "open": {"fields": ["/data/card"], "readers": ["*"]}},
        ]
    })
}

fn plugin(headers: &str, knob: bool) -> Plugin {
    module()
        .plugin(
            PluginConfig::new()
                .configuration(policy(headers).to_string())
                .env("EVENTSEAL_KEYS", keys().to_string())
                .allow_on_headers_stop_iteration(knob),
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

fn post(path: &str, body: &str) -> [(&'static str, String); 6] {
    [
        ("x-client", "reader".to_owned()),
        (":method", "POST".to_owned()),
        (":path", path.to_owned()),
        (":authority", "gateway.example".to_owned()),
        ("content-type", "application/json".to_owned()),
        ("content-length", body.len().to_string()),
    ]
}

const EVENT: &str = r#"{"type":"order.created","data":{"card":"4111111111111111","amount":3}}"#;

/// Sends a request with its body in two chunks; the stream as it stands after.
fn publish(plugin: &Plugin, body: &str) -> HttpStream {
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(post("/publish", body), false).unwrap();
    let (a, b) = body.split_at(body.len() / 2);
    stream.send_request_body(a, false).unwrap();
    stream.send_request_body(b, true).unwrap();
    stream
}

#[test]
fn hold_mode_seals_then_signs_and_frames_the_body_exactly() {
    let plugin = plugin("hold", true);
    let stream = publish(&plugin, EVENT);
    assert_eq!(stream.request_state(), StreamState::Continued);
    let upstream = stream.upstream_request();
    let body = upstream.body.clone();
    assert_eq!(upstream.header("content-length"), Some(body.len().to_string().as_str()));
    let sealed: Value = serde_json::from_slice(&body).unwrap();
    let (header, card) = jose::open(&[&keys()], sealed["data"]["card"].as_str().unwrap()).unwrap();
    assert_eq!((header["ptr"].as_str(), card), (Some("/data/card"), json!("4111111111111111")));
    // The signature covers the sealed body the upstream received.
    let id = upstream.header("webhook-id").expect("webhook-id");
    let timestamp: i64 = upstream.header("webhook-timestamp").expect("webhook-timestamp").parse().unwrap();
    let secret = jose::key_bytes(&[&keys()], "h1");
    assert_eq!(
        upstream.header("webhook-signature"),
        Some(jose::webhook_signature(&secret, id, timestamp, &body).as_str())
    );
}

#[test]
fn hold_mode_refuses_a_request_body_before_the_upstream_sees_anything() {
    let plugin = plugin("hold", true);
    let stream = publish(&plugin, r#"{"type":"order.created","data":{"card":"#);
    let reply = stream.local_reply().expect("a local reply");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert_eq!(stream.upstream_request().headers, None, "the upstream saw no request at all");
}

#[test]
fn hold_mode_answers_a_tampered_response_field_with_a_502_problem_not_a_reset() {
    let plugin = plugin("hold", true);
    let key = jose::key_bytes(&[&keys()], "k1");
    let ctx = json!({"type": "order.created"});
    let tampered = jose::seal(&key, "k1", "/data/card", ctx.as_object().unwrap(), &json!("4111"), Some("flip_tag"));
    let body = json!({"type": "order.created", "data": {"card": tampered}}).to_string();
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(post("/read", ""), true).unwrap();
    stream
        .send_response_headers(
            [
                (":status", "200"),
                ("content-type", "application/json"),
                ("content-length", &body.len().to_string()),
            ],
            false,
        )
        .unwrap();
    stream.send_response_body(&body, true).unwrap();
    let reply = stream.local_reply().expect("a local reply, not a reset");
    assert_eq!(reply.status, 502);
    let problem: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(problem["type"], "urn:eventseal:problem:sealed-field-rejected");
    let received = String::from_utf8(stream.client_response().body).unwrap();
    assert_eq!(received.as_bytes(), reply.body.as_slice(), "the client received the problem");
    assert!(!received.contains(&tampered), "nothing of the refused body reached the client");
}

#[test]
fn hold_mode_without_the_knob_fails_closed_and_says_why_instead_of_hanging() {
    let plugin = plugin("hold", false);
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(post("/publish", EVENT), false).unwrap();
    stream.send_request_body(EVENT, true).unwrap();
    assert_eq!(stream.request_state(), StreamState::Paused, "Envoy holds the body: no callback ran");
    plugin.advance_time(Duration::from_millis(1_500)).unwrap();
    let reply = stream.local_reply().expect("the held stream is answered");
    assert_eq!(reply.status, 503);
    assert_eq!(stream.upstream_request().headers, None, "nothing was forwarded unchecked");
    assert!(plugin.logged("set allow_on_headers_stop_iteration: true"), "the log names the fix");
    assert_eq!(plugin.metric("eventseal_hold_unavailable").map(|m| m.value()), Some(1));
    // From now on a held stream fails at once.
    let mut next = plugin.http_stream().unwrap();
    next.send_request_headers(post("/publish", EVENT), false).unwrap();
    assert_eq!(next.local_reply().map(|r| r.status), Some(503));
}

#[test]
fn with_the_knob_a_slow_body_is_not_mistaken_for_a_missing_knob() {
    let plugin = plugin("hold", true);
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(post("/publish", EVENT), false).unwrap();
    stream.send_request_body(&EVENT[..10], false).unwrap();
    plugin.advance_time(Duration::from_secs(5)).unwrap();
    stream.send_request_body(&EVENT[10..], true).unwrap();
    assert_eq!(stream.request_state(), StreamState::Continued);
    assert!(stream.local_reply().is_none());
}

#[test]
fn forward_mode_refuses_signing_at_load_and_works_whether_or_not_envoy_sets_the_knob() {
    let loaded = module().plugin(
        PluginConfig::new()
            .configuration(policy("forward").to_string())
            .env("EVENTSEAL_KEYS", keys().to_string()),
    );
    let Err(refused) = loaded else {
        panic!("sign is refused in forward mode")
    };
    assert!(refused.to_string().contains("/rules/0/sign"), "{refused}");
    let mut unsigned = policy("forward");
    unsigned["rules"][0]["sign"] = json!(false);
    for knob in [false, true] {
        let plugin = module()
            .plugin(
                PluginConfig::new()
                    .configuration(unsigned.to_string())
                    .env("EVENTSEAL_KEYS", keys().to_string())
                    .allow_on_headers_stop_iteration(knob),
            )
            .unwrap();
        let stream = publish(&plugin, EVENT);
        let upstream = stream.upstream_request();
        assert_eq!(upstream.header("content-length"), None, "knob {knob}: the body is framed anew");
        let sealed: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert!(
            jose::open(&[&keys()], sealed["data"]["card"].as_str().unwrap()).is_ok(),
            "knob {knob}"
        );
    }
}
