//! The shipped filter (`eventseal_proxy_wasm.wasm`, release, wasm32-wasip1) in the harness,
//! with its `vault_transit` cluster pointing at a real OpenBao: it seals and opens events
//! with data keys from Transit, shares one KMS call between streams, fails closed with 503
//! and `Retry-After` while the KMS is down, recovers by itself, and keeps opening across a
//! Transit key rotation. The checks are independent of core: the test unwraps the data key
//! with OpenBao's own `decrypt` and decrypts the field with its own AES-GCM.

use crate::started;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventseal_harness::{
    HttpCallRequest, HttpCallResponse, HttpExchange, HttpOutcome, Module, Plugin, PluginConfig, StreamState, Upstream,
};
use eventseal_testkit::http::call as http;
use eventseal_testkit::openbao::{OpenBao, ROOT_TOKEN, decrypt_field, openbao_decrypt, orders_policy as policy, wrapped_of};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;

fn module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let path = env!("EVENTSEAL_PROXY_WASM");
            Module::from_file(path).unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
        })
        .clone()
}

fn plugin_with(policy: &Value, kms: Upstream) -> Plugin {
    module()
        .plugin(
            PluginConfig::new()
                .configuration(policy.to_string())
                .env("BAO_TOKEN", ROOT_TOKEN)
                .upstream("openbao", kms),
        )
        .unwrap_or_else(|e| panic!("the filter refused its configuration: {e}"))
}

fn plugin(bao: &OpenBao, limits: &Value) -> Plugin {
    plugin_with(&policy(bao, limits), Upstream::http(bao.addr().to_string()))
}

fn event(n: u32) -> Value {
    json!({"type": "order.created", "id": format!("o-{n}"), "data": {"card": {"number": "4111111111111111", "n": n}, "total": 12}})
}

fn exchange(path: &str, body: &Value) -> HttpExchange {
    HttpExchange::new([
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway.example"),
        ("content-type", "application/json"),
        ("x-client-id", "billing"),
    ])
    .request_body(body.to_string())
}

/// What the upstream received, which must be a forwarded request.
fn forwarded(outcome: &HttpOutcome) -> Value {
    match outcome.forwarded_request() {
        Some(request) => serde_json::from_slice(&request.body).expect("JSON upstream body"),
        None => panic!("not forwarded: {outcome:?}"),
    }
}

fn seal(plugin: &Plugin, n: u32) -> Value {
    forwarded(&plugin.run_http(exchange("/events/orders", &event(n))).expect("no trap"))
}

fn envelope(sealed: &Value) -> &str {
    sealed["data"]["card"].as_str().expect("the card is sealed into one string")
}

fn calls_to(plugin: &Plugin, path: &str) -> usize {
    plugin.http_calls().iter().filter(|c| c.path() == path).count()
}

/// The headers of a sealing request, for streams driven step by step.
const SEAL_HEADERS: [(&str, &str); 4] = [
    (":method", "POST"),
    (":path", "/events/orders"),
    (":authority", "gateway.example"),
    ("content-type", "application/json"),
];

/// Carries a call of a [`Upstream::manual`] cluster to OpenBao and its answer back: the
/// test is the network between the filter and OpenBao.
fn carry_to_openbao(bao: &OpenBao, plugin: &Plugin, call: &HttpCallRequest) {
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .filter(|(name, _)| !name.starts_with(':'))
        .map(|(name, value)| (name, std::str::from_utf8(value).unwrap()))
        .collect();
    let (status, body) = http(bao.addr(), call.method(), call.path(), &headers, &call.body).expect("OpenBao answers");
    plugin
        .respond_http_call(call.token, HttpCallResponse::new(status).with_body(body))
        .unwrap();
}

fn metric(plugin: &Plugin, name: &str) -> u64 {
    plugin.metric(name).map_or(0, |m| m.value())
}

const DATAKEY: &str = "/v1/transit/datakey/plaintext/orders";
const DECRYPT: &str = "/v1/transit/decrypt/orders";

#[test]
fn the_filter_seals_with_an_openbao_data_key_and_opens_after_unwrapping() {
    let bao = started();
    let sealer = plugin(&bao, &json!({}));
    let sealed = seal(&sealer, 1);
    let card = envelope(&sealed);
    assert_eq!(sealed["data"]["total"], 12, "other members are unchanged");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(card.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "eventseal.vault-transit");
    assert_eq!(header["enc"], "A256GCM");
    assert_eq!(header["kid"], "transit:transit/orders");
    // Independently: OpenBao unwraps the encrypted-key segment, and that key decrypts the field.
    let data_key = openbao_decrypt(&bao, &wrapped_of(card));
    assert_eq!(decrypt_field(&data_key, card), event(1)["data"]["card"]);
    // The call carried the token from the VM's environment, to the configured cluster.
    let call = &sealer.http_calls()[0];
    assert_eq!((call.upstream.as_str(), call.path()), ("openbao", DATAKEY));
    assert_eq!(call.header("x-vault-token"), Some(ROOT_TOKEN));
    assert!(!sealer.logs().iter().any(|l| l.message.contains(ROOT_TOKEN)));

    // Another VM (no cached key) opens it for an allowed reader: one decrypt call.
    let opener = plugin(&bao, &json!({}));
    let opened = forwarded(&opener.run_http(exchange("/deliver/orders", &sealed)).expect("no trap"));
    assert_eq!(opened, event(1));
    assert_eq!((calls_to(&opener, DECRYPT), opener.http_calls().len()), (1, 1));
    // Opened again: the unwrapped key comes from the cache.
    let again = forwarded(&opener.run_http(exchange("/deliver/orders", &sealed)).expect("no trap"));
    assert_eq!(again, event(1));
    assert_eq!(opener.http_calls().len(), 1);
    // The sealer's own data key opens without a call.
    assert_eq!(forwarded(&sealer.run_http(exchange("/deliver/orders", &sealed)).unwrap()), event(1));
    assert_eq!(calls_to(&sealer, DECRYPT), 0);
}

#[test]
fn a_wrapped_key_openbao_refuses_does_not_open() {
    let bao = started();
    let sealed = seal(&plugin(&bao, &json!({})), 2);
    let mut parts: Vec<String> = envelope(&sealed).split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(format!("vault:v1:{}", base64::engine::general_purpose::STANDARD.encode([7u8; 60])));
    let mut forged = sealed.clone();
    forged["data"]["card"] = json!(parts.join("."));
    let opener = plugin(&bao, &json!({}));
    let outcome = opener.run_http(exchange("/deliver/orders", &forged)).expect("no trap");
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("forwarded: {outcome:?}"));
    assert_eq!(reply.status, 422, "{}", reply.body_text());
    assert!(!reply.body_text().contains("4111111111111111"));
}

#[test]
fn data_keys_are_reused_within_their_limit() {
    let bao = started();
    let sealer = plugin(&bao, &json!({"max_seals_per_key": 10}));
    let mut wrapped = std::collections::BTreeSet::new();
    for n in 0..25 {
        wrapped.insert(wrapped_of(envelope(&seal(&sealer, n))));
    }
    // 25 seals at 10 per key: 3 data keys (the third asked for ahead, while the second sealed).
    assert_eq!(calls_to(&sealer, DATAKEY), 3, "{:?}", sealer.http_calls());
    assert_eq!(wrapped.len(), 3);
    assert_eq!(sealer.http_calls().len(), 3);
}

#[test]
fn streams_paused_together_share_one_kms_call() {
    let bao = started();
    let sealer = plugin_with(&policy(&bao, &json!({})), Upstream::manual());
    let mut streams = Vec::new();
    for n in 0..5 {
        let mut stream = sealer.http_stream().unwrap();
        assert_eq!(stream.send_request_headers(SEAL_HEADERS, false).unwrap(), StreamState::Continued);
        assert_eq!(
            stream.send_request_body(event(n).to_string(), true).unwrap(),
            StreamState::Paused,
            "stream {n} waits for the data key"
        );
        streams.push(stream);
    }
    let pending = sealer.pending_http_calls();
    assert_eq!(pending.len(), 1, "one datakey call for five streams: {pending:?}");
    carry_to_openbao(&bao, &sealer, &pending[0]);
    let mut wrapped = std::collections::BTreeSet::new();
    for (n, mut stream) in streams.into_iter().enumerate() {
        assert_eq!(stream.request_state(), StreamState::Continued, "stream {n} resumed");
        let body: Value = serde_json::from_slice(&stream.upstream_request().body).unwrap();
        let card = envelope(&body).to_owned();
        assert_eq!(
            decrypt_field(&openbao_decrypt(&bao, &wrapped_of(&card)), &card),
            event(u32::try_from(n).unwrap())["data"]["card"]
        );
        wrapped.insert(wrapped_of(&card));
        assert_eq!(
            stream.send_response_headers([(":status", "204")], true).unwrap(),
            StreamState::Continued
        );
        let outcome = stream.finish().unwrap();
        assert!(matches!(outcome, HttpOutcome::Forwarded { .. }), "{outcome:?}");
    }
    assert_eq!(wrapped.len(), 1, "all sealed with the one data key");
    assert_eq!(sealer.http_calls().len(), 1);
}

#[test]
fn a_call_whose_stream_ended_is_sent_again_for_the_streams_still_waiting() {
    let bao = started();
    let sealer = plugin_with(&policy(&bao, &json!({})), Upstream::manual());
    let paused = |n| {
        let mut stream = sealer.http_stream().unwrap();
        stream.send_request_headers(SEAL_HEADERS, false).unwrap();
        assert_eq!(stream.send_request_body(event(n).to_string(), true).unwrap(), StreamState::Paused);
        stream
    };
    let (sender, waiter) = (paused(1), paused(2));
    assert_eq!(sealer.pending_http_calls().len(), 1, "the two streams share one call");
    assert_eq!(metric(&sealer, "eventseal_kms_calls_in_flight"), 1);
    // The client of the stream that sent the call goes away; Envoy cancels its call.
    drop(sender);
    assert!(sealer.pending_http_calls().is_empty());
    assert_eq!(
        metric(&sealer, "eventseal_kms_calls_in_flight"),
        0,
        "a cancelled call is not in flight"
    );
    let tick = sealer.tick_period().expect("a KMS sets a tick");
    sealer.advance_time(tick).unwrap();
    let pending = sealer.pending_http_calls();
    assert_eq!(pending.len(), 1, "sent again from the root context on its tick: {pending:?}");
    assert_eq!(pending[0].path(), DATAKEY);
    assert_eq!(waiter.request_state(), StreamState::Paused, "still waiting, not refused");
    assert_eq!(metric(&sealer, "eventseal_kms_calls_in_flight"), 1);
    carry_to_openbao(&bao, &sealer, &pending[0]);
    assert_eq!(metric(&sealer, "eventseal_kms_calls_in_flight"), 0);
    assert_eq!(waiter.request_state(), StreamState::Continued);
    let sealed: Value = serde_json::from_slice(&waiter.upstream_request().body).unwrap();
    let card = envelope(&sealed);
    assert_eq!(
        decrypt_field(&openbao_decrypt(&bao, &wrapped_of(card)), card),
        event(2)["data"]["card"]
    );
    assert_eq!(
        [
            metric(&sealer, "eventseal_kms_calls"),
            metric(&sealer, "eventseal_kms_calls_resent"),
            metric(&sealer, "eventseal_kms_call_failures"),
        ],
        [2, 1, 0],
        "{}",
        sealer.stats_text()
    );
}

#[test]
fn decrypt_calls_out_at_once_are_bounded_and_a_body_beyond_the_bound_gets_503() {
    let bao = started();
    // Each event sealed under its own data key, so opening each needs its own decrypt call.
    let sealed: Vec<Value> = {
        let sealer = plugin(&bao, &json!({"max_seals_per_key": 1}));
        (0..3).map(|n| seal(&sealer, n)).collect()
    };
    let opener = plugin_with(&policy(&bao, &json!({"max_unwraps_in_flight": 2})), Upstream::manual());
    let open = |body: &Value| {
        let mut stream = opener.http_stream().unwrap();
        let mut headers = SEAL_HEADERS.to_vec();
        headers[1] = (":path", "/deliver/orders");
        headers.push(("x-client-id", "billing"));
        stream.send_request_headers(headers, false).unwrap();
        let state = stream.send_request_body(body.to_string(), true).unwrap();
        (stream, state)
    };
    let (first, second) = (open(&sealed[0]), open(&sealed[1]));
    assert_eq!((first.1, second.1), (StreamState::Paused, StreamState::Paused));
    assert_eq!(opener.pending_http_calls().len(), 2);
    assert_eq!(metric(&opener, "eventseal_kms_calls_in_flight"), 2);
    // Two calls out: a third data key is refused now, not queued without bound.
    let (third, state) = open(&sealed[2]);
    assert_eq!(state, StreamState::LocalReply);
    let reply = third.local_reply().expect("refused");
    assert_eq!(reply.status, 503, "{}", reply.body_text());
    assert!(reply.body_text().contains("kms-unavailable") && reply.headers.get("retry-after") == Some("1"));
    assert_eq!(opener.pending_http_calls().len(), 2, "no third call");
    // The calls complete; both waiting streams open.
    for call in opener.pending_http_calls() {
        carry_to_openbao(&bao, &opener, &call);
    }
    assert_eq!(metric(&opener, "eventseal_kms_calls_in_flight"), 0);
    for (stream, n) in [(&first.0, 0), (&second.0, 1)] {
        assert_eq!(stream.request_state(), StreamState::Continued);
        let opened: Value = serde_json::from_slice(&stream.upstream_request().body).unwrap();
        assert_eq!(opened, event(n));
    }
}

#[test]
fn a_body_with_more_data_keys_than_the_limit_is_refused_without_asking_the_kms() {
    let bao = started();
    let mut policy = policy(&bao, &json!({"max_unwraps_per_body": 2}));
    policy["rules"][0]["seal"]["fields"] = json!(["/data/cards/*"]);
    policy["rules"][1]["open"]["fields"] = json!(["/data/cards/*"]);
    let cards: Vec<Value> = (0..3).map(|n| json!({"number": "4111111111111111", "n": n})).collect();
    let event = json!({"type": "order.created", "id": "o-1", "data": {"cards": cards}});
    // Three filters, three data keys: card i of the mixed event is sealed under key i.
    let sealed: Vec<Value> = (0..3)
        .map(|_| {
            let sealer = plugin_with(&policy, Upstream::http(bao.addr().to_string()));
            forwarded(&sealer.run_http(exchange("/events/orders", &event)).expect("no trap"))
        })
        .collect();
    let mut mixed = sealed[0].clone();
    for (i, other) in sealed.iter().enumerate() {
        mixed["data"]["cards"][i] = other["data"]["cards"][i].clone();
    }
    let keys: std::collections::BTreeSet<String> = (0..3)
        .map(|i| wrapped_of(mixed["data"]["cards"][i].as_str().expect("sealed")))
        .collect();
    assert_eq!(keys.len(), 3);

    let opener = plugin_with(&policy, Upstream::http(bao.addr().to_string()));
    let outcome = opener.run_http(exchange("/deliver/orders", &mixed)).expect("no trap");
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("opened: {outcome:?}"));
    assert_eq!(reply.status, 422, "{}", reply.body_text());
    let problem: Value = serde_json::from_slice(&reply.body).expect("problem+json");
    assert_eq!(problem["type"], "urn:eventseal:problem:sealed-field-rejected");
    let detail = problem["detail"].as_str().expect("a detail");
    assert!(detail.contains("3 data keys") && detail.contains("at most 2"), "{detail}");
    assert_eq!(calls_to(&opener, DECRYPT), 0, "the KMS is not asked for a refused body");

    // Two data keys are within the limit.
    mixed["data"]["cards"][2] = sealed[1]["data"]["cards"][2].clone();
    assert_eq!(
        forwarded(&opener.run_http(exchange("/deliver/orders", &mixed)).expect("no trap")),
        event
    );
    assert_eq!(calls_to(&opener, DECRYPT), 2);
}

#[test]
fn a_dead_kms_gives_503_with_retry_after_and_the_filter_recovers_when_it_returns() {
    let mut bao = started();
    // One seal per data key: every request needs the KMS.
    let sealer = plugin(&bao, &json!({"max_seals_per_key": 1, "backoff_initial_ms": 2000}));
    envelope(&seal(&sealer, 1));
    bao.kill();
    let outcome = sealer.run_http(exchange("/events/orders", &event(2))).expect("no trap");
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("not refused: {outcome:?}"));
    assert_eq!(reply.status, 503, "{}", reply.body_text());
    let retry_after: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem: Value = serde_json::from_slice(&reply.body).expect("problem+json");
    assert_eq!(problem["type"], "urn:eventseal:problem:kms-unavailable");
    assert!(!reply.body_text().contains("4111111111111111"));
    // While backing off, no call goes out and the answer is the same.
    let calls = sealer.http_calls().len();
    let outcome = sealer.run_http(exchange("/events/orders", &event(3))).expect("no trap");
    assert_eq!(outcome.local_reply().map(|r| r.status), Some(503));
    assert!(outcome.local_reply().unwrap().header("retry-after").is_some());
    assert_eq!(sealer.http_calls().len(), calls);
    // OpenBao is back: once the backoff has passed, requests succeed again, same VM.
    bao.restart();
    sealer.advance_time(Duration::from_secs(3)).unwrap();
    let sealed = seal(&sealer, 4);
    let card = envelope(&sealed);
    assert_eq!(
        decrypt_field(&openbao_decrypt(&bao, &wrapped_of(card)), card),
        event(4)["data"]["card"]
    );
    assert_eq!(forwarded(&sealer.run_http(exchange("/deliver/orders", &sealed)).unwrap()), event(4));
}

#[test]
fn a_dead_kms_refuses_to_open_with_503() {
    let mut bao = started();
    let sealed = seal(&plugin(&bao, &json!({})), 5);
    let opener = plugin(&bao, &json!({}));
    bao.kill();
    let outcome = opener.run_http(exchange("/deliver/orders", &sealed)).expect("no trap");
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("not refused: {outcome:?}"));
    assert_eq!(reply.status, 503, "{}", reply.body_text());
    assert!(reply.header("retry-after").is_some());
    assert!(!reply.body_text().contains("4111111111111111"));
}

#[test]
fn after_rotation_new_seals_use_the_new_version_and_both_open() {
    let bao = started();
    let sealer = plugin(&bao, &json!({"max_seals_per_key": 1}));
    let before = seal(&sealer, 6);
    bao.rotate("transit", "orders");
    let after = seal(&sealer, 7);
    assert!(wrapped_of(envelope(&before)).starts_with("vault:v1:"));
    assert!(
        wrapped_of(envelope(&after)).starts_with("vault:v2:"),
        "{}",
        wrapped_of(envelope(&after))
    );
    let opener = plugin(&bao, &json!({}));
    assert_eq!(forwarded(&opener.run_http(exchange("/deliver/orders", &before)).unwrap()), event(6));
    assert_eq!(forwarded(&opener.run_http(exchange("/deliver/orders", &after)).unwrap()), event(7));
    assert_eq!(calls_to(&opener, DECRYPT), 2);
}

#[test]
fn a_data_key_is_refreshed_ahead_from_the_tick_without_pausing_anyone() {
    let bao = started();
    let sealer = plugin(&bao, &json!({"max_seals_per_key": 10}));
    let first: Vec<String> = (0..10).map(|n| wrapped_of(envelope(&seal(&sealer, n)))).collect();
    // The tenth seal used the last tenth of the key: a refresh is due, sent on the next tick.
    assert_eq!(calls_to(&sealer, DATAKEY), 1);
    sealer.advance_time(Duration::from_secs(1)).unwrap();
    assert_eq!(calls_to(&sealer, DATAKEY), 2, "the root's tick sent the refresh");
    let next = wrapped_of(envelope(&seal(&sealer, 10)));
    assert!(first.iter().all(|w| *w == first[0]));
    assert_ne!(next, first[0], "the eleventh seal uses the refreshed key");
    assert_eq!(calls_to(&sealer, DATAKEY), 2);
}

#[test]
fn a_kms_that_never_answers_gives_503_after_the_timeout() {
    let bao = started();
    let sealer = plugin_with(&policy(&bao, &json!({"timeout_ms": 500})), Upstream::manual());
    let mut stream = sealer.http_stream().unwrap();
    stream.send_request_headers(SEAL_HEADERS, false).unwrap();
    assert_eq!(stream.send_request_body(event(1).to_string(), true).unwrap(), StreamState::Paused);
    assert_eq!(sealer.pending_http_calls()[0].timeout, Some(Duration::from_millis(500)));
    sealer.advance_time(Duration::from_millis(600)).unwrap();
    let reply = stream.local_reply().expect("refused once the call timed out");
    assert_eq!(reply.status, 503, "{}", reply.body_text());
    assert!(reply.header("retry-after").is_some());
    assert!(stream.upstream_request().body.is_empty(), "nothing forwarded");
}

#[test]
fn rewrapped_envelopes_open_after_old_versions_are_retired_and_others_do_not() {
    let bao = started();
    let old = seal(&plugin(&bao, &json!({})), 8);
    bao.rotate("transit", "orders");
    // The rewrap of docs/OPERATIONS.md: only the encrypted-key segment changes.
    let (status, reply) = bao.post("/v1/transit/rewrap/orders", &json!({"ciphertext": wrapped_of(envelope(&old))}));
    assert_eq!(status, 200, "{reply}");
    let mut parts: Vec<String> = envelope(&old).split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(reply["data"]["ciphertext"].as_str().expect("ciphertext"));
    let mut rewrapped = old.clone();
    rewrapped["data"]["card"] = json!(parts.join("."));
    let (status, reply) = bao.post("/v1/transit/keys/orders/config", &json!({"min_decryption_version": 2}));
    assert!(status == 200 || status == 204, "{status} {reply}");
    let opener = plugin(&bao, &json!({}));
    assert_eq!(
        forwarded(&opener.run_http(exchange("/deliver/orders", &rewrapped)).unwrap()),
        event(8)
    );
    let outcome = opener.run_http(exchange("/deliver/orders", &old)).unwrap();
    let reply = outcome
        .local_reply()
        .unwrap_or_else(|| panic!("opened under a retired version: {outcome:?}"));
    assert_eq!(reply.status, 422, "{}", reply.body_text());
    let problem: Value = serde_json::from_slice(&reply.body).expect("problem+json");
    assert_eq!(problem["type"], "urn:eventseal:problem:sealed-field-rejected");
}
