//! The conformance cases of `tests/cases/` run through the shipped filter
//! (`eventseal_proxy_wasm.wasm`, release, wasm32-wasip1) in the wasmtime harness.
//!
//! `build.rs` builds the module and generates one test per case file
//! (`cases::case_<name>`, with `cases::every_case_file_has_a_test`); the module is
//! compiled once and shared, each case gets its own plugin VM, and cases run in parallel
//! like any other tests. The case model, the checks and the runner are
//! `eventseal_testkit`'s, shared by every host's runner.

mod collector;
mod hold;

use eventseal_harness::Module;
use eventseal_testkit::{case, jose};
use std::sync::OnceLock;

/// The shipped filter, compiled once for every test.
pub fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = env!("EVENTSEAL_PROXY_WASM");
        Module::from_file(path).unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
    })
}

/// The Standard Webhooks vectors (`v1`, `v1a`, from the independent generator) as cases,
/// through the shipped filter in both modes.
mod webhook_vectors {
    #[test]
    fn every_webhook_vector_through_the_filter() {
        for (name, case) in eventseal_testkit::webhooks::cases() {
            eventseal_testkit::harness::case_value(crate::module(), &name, &case);
        }
    }
}

/// One test per case file, each run through the shipped filter in the harness.
mod cases {
    fn run(name: &str) {
        eventseal_testkit::harness::case(crate::module(), name);
    }

    include!(concat!(env!("OUT_DIR"), "/cases.rs"));
}

mod secrets {
    //! Nothing secret or plaintext reaches the proxy log, whatever the filter does with it.

    use crate::jose;
    use crate::module;
    use eventseal_harness::{Headers, PluginConfig, Upstream};
    use serde_json::{Value, json};

    const MARKER: &str = "MARKER-7c1e4f0a-do-not-log";
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const AUDIT: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    fn request(path: &str, body: &[u8]) -> (Headers, Vec<u8>) {
        let headers: Headers = [
            (":method", "POST"),
            (":path", path),
            (":authority", "gateway.example"),
            ("content-type", "application/json"),
            ("x-tenant", "acme"),
        ]
        .into();
        (headers, body.to_vec())
    }

    #[test]
    fn a_marker_secret_never_reaches_the_log() {
        let keys = json!({"keys": [
            {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": KEY, "status": "primary"},
            {"kty": "oct", "kid": "h1", "alg": "HS256", "k": HOOK, "status": "primary"},
            {"kty": "oct", "kid": "a1", "alg": "HS256", "use": "audit", "k": AUDIT, "status": "primary"},
        ]});
        let config = json!({
            "principal": {"source": "header", "header": "x-client"},
            "audit": {"collector": {"cluster": "audit"}, "batch_records": 2},
            "rules": [
                {"name": "seal", "match": {"path": "/seal"}, "context": {"tenant": {"header": "x-tenant"}},
                 "seal": {"fields": ["/secret"], "required": true}},
                {"name": "open", "match": {"path": "/open"}, "context": {"tenant": {"header": "x-tenant"}},
                 "open": {"fields": ["/secret"], "readers": ["*"]}},
                {"name": "verify", "match": {"path": "/verify"}, "verify": true,
                 "seal": {"fields": ["/secret"]}}
            ]
        });
        let collector = crate::collector::Collector::start();
        let plugin = module()
            .plugin(
                PluginConfig::new()
                    .configuration(config.to_string())
                    .env("EVENTSEAL_KEYS", keys.to_string())
                    .upstream("audit", Upstream::http(collector.address())),
            )
            .expect("the filter starts");
        let key = jose::key_bytes(&[&keys], "k1");
        let ctx = json!({"tenant": "acme"});
        let ctx = ctx.as_object().expect("an object");
        let good = jose::seal(&key, "k1", "/secret", ctx, &json!(MARKER), None);
        let moved = jose::seal(&key, "k1", "/elsewhere", ctx, &json!(MARKER), None);
        let bodies: Vec<(&str, Value)> = vec![
            ("/seal", json!({"secret": MARKER})),   // sealed
            ("/seal", json!({"other": MARKER})),    // refused: field missing
            ("/open", json!({"secret": good})),     // opened for the reader
            ("/open", json!({"secret": moved})),    // refused: moved field
            ("/open", json!({"secret": MARKER})),   // refused: not an envelope
            ("/verify", json!({"secret": MARKER})), // refused: unsigned
        ];
        let mut replies = Vec::new();
        for (path, body) in &bodies {
            let (mut headers, body) = request(path, body.to_string().as_bytes());
            headers.add("x-client", "reader");
            let mut stream = plugin.http_stream().expect("a stream");
            stream.send_request_headers(headers, false).expect("headers");
            stream.send_request_body(&body, true).expect("body");
            if let Some(reply) = stream.local_reply() {
                replies.push(reply.body_text());
            }
            let _ = stream.finish();
        }
        // A malformed body with the marker in it: the parser's error must not quote it.
        let (headers, _) = request("/seal", b"");
        let mut stream = plugin.http_stream().expect("a stream");
        stream.send_request_headers(headers, false).expect("headers");
        stream
            .send_request_body(format!("{{\"secret\": \"{MARKER}\"").as_bytes(), true)
            .expect("body");
        replies.extend(stream.local_reply().map(|r| r.body_text()));
        let _ = stream.finish();

        plugin.advance_time(std::time::Duration::from_secs(2)).expect("ticks");

        let logs: Vec<String> = plugin.logs().into_iter().map(|l| l.message).collect();
        // The log is captured (refusals are logged), so this test can see a leak.
        assert!(
            logs.iter().filter(|l| l.starts_with("eventseal: refused")).count() >= 4,
            "{logs:#?}"
        );
        assert_eq!(replies.len(), 5, "{replies:#?}");
        // One audit record per decision, in the log and at the collector.
        let records = logs.iter().filter(|l| l.starts_with("{\"audit\":1,")).count();
        assert_eq!(records, 7, "{logs:#?}");
        let shipped: Vec<String> = collector.received().into_iter().map(|r| r.body).collect();
        assert_eq!(shipped.iter().map(|b| b.lines().count()).sum::<usize>(), records);
        let stats = plugin.stats_text();
        assert!(stats.contains("eventseal_audit_records"), "{stats}");
        for line in logs.iter().chain(&replies).chain(&shipped).chain(std::iter::once(&stats)) {
            for secret in [MARKER, KEY, HOOK, AUDIT, "AAECAwQFBgcICQoL", "MfKQ9r8GKYqrTwjUPD8I", "ICEiIyQlJico"] {
                assert!(!line.contains(secret), "leaked {secret:?}: {line}");
            }
        }
    }
}

mod workers {
    //! What the cases cannot say on their own: several workers of one VM id, and a body
    //! refused before its end.

    use crate::case::now;
    use crate::jose;
    use crate::module;
    use eventseal_harness::{Headers, HttpOutcome, LocalReply, Plugin, PluginConfig, SharedState, StreamState};
    use serde_json::{Value, json};

    const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"type":"invoice.paid"}"#;

    /// A policy that verifies on `/hooks`, with `settings` as further top-level members
    /// (`limits`, `signatures`).
    fn config(settings: Value) -> PluginConfig {
        let keys = json!({"keys": [{"kty": "oct", "kid": "h1", "alg": "HS256", "k": HOOK, "status": "primary"}]});
        let mut policy = json!({"rules": [{"name": "hooks", "match": {"path": "/hooks"}, "verify": true}]});
        for (name, value) in settings.as_object().expect("an object of policy members") {
            policy[name] = value.clone();
        }
        PluginConfig::new()
            .configuration(policy.to_string())
            .env("EVENTSEAL_KEYS", keys.to_string())
    }

    /// Sends `BODY`, signed now under message id `id`, through `worker`: whether it reached
    /// the upstream whole, and the local reply if the filter answered instead.
    fn deliver(worker: &Plugin, id: &str) -> (bool, Option<LocalReply>) {
        let ts = now();
        let key = jose::key_bytes(&[&json!({"keys": [{"kid": "h1", "k": HOOK}]})], "h1");
        let signed = headers(&[
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", jose::webhook_signature(&key, id, ts, BODY)),
        ]);
        let mut stream = worker.http_stream().expect("a stream");
        stream.send_request_headers(&signed, false).expect("headers");
        stream.send_request_body(BODY, true).expect("body");
        (stream.upstream_request().end_of_stream, stream.local_reply())
    }

    fn headers(extra: &[(&str, String)]) -> Headers {
        let mut headers: Headers = [(":method", "POST"), (":path", "/hooks"), (":authority", "gateway.example")].into();
        for (name, value) in extra {
            headers.add(*name, value.as_str());
        }
        headers
    }

    #[test]
    fn a_replay_is_refused_by_every_worker_of_the_vm() {
        let shared = SharedState::new();
        let workers: Vec<_> = (0..3)
            .map(|_| module().plugin(config(json!({})).shared_state(&shared)).expect("a worker starts"))
            .collect();
        let seen: Vec<_> = workers.iter().map(|worker| deliver(worker, "msg_w1")).collect();
        assert!(
            seen[0].0 && seen[0].1.is_none(),
            "the first delivery must go upstream: {:?}",
            seen[0]
        );
        for (reached, reply) in &seen[1..] {
            let reply = reply
                .as_ref()
                .unwrap_or_else(|| panic!("a replay on another worker was let through (upstream reached: {reached})"));
            assert_eq!(reply.status, 401);
            assert!(reply.body_text().contains("signature-replayed"), "{}", reply.body_text());
        }
    }

    #[test]
    fn the_replay_memory_is_bounded_and_fails_closed_when_full() {
        // One bucket of 16 ids, shared by two workers of the VM id.
        let shared = SharedState::new();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let config = config(json!({"signatures": {"replay_capacity": 16}}));
                module().plugin(config.shared_state(&shared)).expect("a worker starts")
            })
            .collect();
        for i in 0..16 {
            let (reached, reply) = deliver(&workers[i % 2], &format!("msg_{i}"));
            assert!(reached && reply.is_none(), "message {i} must go upstream: {reply:?}");
        }
        assert_eq!(shared.metric("eventseal_replay_ids").map(|m| m.value()), Some(16));

        // Full: a new id cannot be remembered, so it is refused, not let through unrecorded.
        let (reached, reply) = deliver(&workers[0], "msg_16");
        let reply = reply.expect("refused");
        assert!(!reached);
        assert_eq!(reply.status, 503);
        assert!(String::from_utf8_lossy(&reply.body).contains("urn:eventseal:problem:replay-cache-full"));
        let retry: u64 = reply.headers.get("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=301).contains(&retry), "{retry}");
        // And every id it holds is still refused as a replay, on either worker.
        for i in 0..16 {
            let (reached, reply) = deliver(&workers[1 - i % 2], &format!("msg_{i}"));
            let reply = reply.unwrap_or_else(|| panic!("replay of message {i} let through (upstream reached: {reached})"));
            assert_eq!(reply.status, 401, "{}", String::from_utf8_lossy(&reply.body));
        }
        assert_eq!(shared.metric("eventseal_refused_replay_cache_full").map(|m| m.value()), Some(1));
        assert_eq!(shared.metric("eventseal_refused_signature_replayed").map(|m| m.value()), Some(16));
        // The memory is the one bucket, at most 16 entries of 16 bytes, whatever came.
        let (bucket, _) = shared.shared_data("", "eventseal.replay.0").expect("the bucket");
        assert_eq!(bucket.len(), 16 * 16);
    }

    #[test]
    fn far_more_unique_ids_than_the_capacity_stay_within_its_bound() {
        // 64 ids in 4 buckets; 400 unique, validly signed messages arrive.
        let shared = SharedState::new();
        let config = config(json!({"signatures": {"replay_capacity": 64}}));
        let plugin = module().plugin(config.shared_state(&shared)).expect("the filter starts");
        let mut statuses = std::collections::BTreeMap::new();
        for i in 0..400 {
            let (_, reply) = deliver(&plugin, &format!("msg_{i}"));
            *statuses.entry(reply.map_or(200, |r| r.status)).or_insert(0) += 1;
        }
        // Every bucket filled up, then refused: 64 through, the rest 503, none let through unrecorded.
        assert_eq!(statuses, [(200, 64), (503, 336)].into_iter().collect());
        assert_eq!(shared.metric("eventseal_replay_ids").map(|m| m.value()), Some(64));
        for bucket in 0..4 {
            let (entries, _) = shared.shared_data("", &format!("eventseal.replay.{bucket}")).expect("a bucket");
            assert_eq!(entries.len(), 16 * 16, "bucket {bucket}");
        }
        assert!(shared.shared_data("", "eventseal.replay.4").is_none(), "no fifth bucket");
    }

    #[test]
    fn an_oversized_body_is_refused_before_its_end() {
        let plugin = module()
            .plugin(config(json!({"limits": {"max_body_bytes": 100}})))
            .expect("the filter starts");
        let mut stream = plugin.http_stream().expect("a stream");
        assert_eq!(
            stream.send_request_headers(headers(&[]), false).expect("headers"),
            StreamState::Continued
        );
        assert_eq!(stream.send_request_body([b'x'; 60], false).expect("chunk 1"), StreamState::Paused);
        // 120 bytes buffered, more to come: refused now, not at the end of the stream.
        assert_eq!(
            stream.send_request_body([b'x'; 60], false).expect("chunk 2"),
            StreamState::LocalReply
        );
        assert!(stream.upstream_request().body.is_empty());
        match stream.finish().expect("the stream ends") {
            HttpOutcome::LocalReply(reply) => assert_eq!(reply.status, 413),
            other => panic!("expected a 413, got {other:?}"),
        }
    }
}

mod audit {
    //! Every decision of the filter leaves a record in the proxy log that `eventseal audit
    //! verify` (core's `verify_audit_log`) accepts as one unbroken, keyed chain.

    use crate::module;
    use eventseal_core::{Keyring, verify_audit_log};
    use eventseal_harness::{Headers, PluginConfig};
    use serde_json::{Value, json};

    /// The filter's log lines, and the audit records among them.
    fn audit_log(plugin: &eventseal_harness::Plugin) -> (Vec<String>, Vec<Value>) {
        let log: Vec<String> = plugin.logs().into_iter().map(|l| l.message).collect();
        let records = log
            .iter()
            .filter(|l| l.contains("{\"audit\":1,"))
            .map(|l| serde_json::from_str(l).expect("a record is one JSON object"))
            .collect();
        (log, records)
    }

    /// The filter with `policy` and the keyring `keys`.
    fn start(policy: &Value, keys: &Value) -> eventseal_harness::Plugin {
        module()
            .plugin(
                PluginConfig::new()
                    .configuration(policy.to_string())
                    .env("EVENTSEAL_KEYS", keys.to_string()),
            )
            .expect("the filter starts")
    }

    #[test]
    fn keys_being_rotated_out_are_marked_in_the_record() {
        use crate::case::now;
        use crate::jose;
        // Key n is 32 bytes of n.
        let (new_k, old_k) = ([1u8; 32], [2u8; 32]);
        let (hook_new, hook_old) = ([3u8; 32], [4u8; 32]);
        let keys = json!({"keys": [
            {"kty": "oct", "kid": "k-new", "alg": "A256GCM", "k": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE", "status": "primary"},
            {"kty": "oct", "kid": "k-old", "alg": "A256GCM", "k": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI", "status": "retired"},
            {"kty": "oct", "kid": "hooks-new", "alg": "HS256", "k": "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM", "status": "primary"},
            {"kty": "oct", "kid": "hooks-old", "alg": "HS256", "k": "BAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ", "status": "active"},
            {"kty": "oct", "kid": "a1", "alg": "HS256", "use": "audit", "k": "BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU", "status": "primary"},
        ]});
        let policy = json!({
            "principal": {"source": "header", "header": "x-client"},
            "rules": [{"name": "in", "match": {"path": "/in"}, "verify": true, "open": {"fields": ["/card"], "readers": ["*"]}}]
        });
        let plugin = start(&policy, &keys);
        let send = |id: &str, seal_key: (&[u8], &str), hook_key: &[u8]| {
            let card = jose::seal(seal_key.0, seal_key.1, "/card", &serde_json::Map::new(), &json!("4111"), None);
            let body = json!({"card": card}).to_string();
            let ts = now();
            let signature = jose::webhook_signature(hook_key, id, ts, body.as_bytes());
            let headers: Headers = [
                (":method", "POST"),
                (":path", "/in"),
                (":authority", "gateway.example"),
                ("content-type", "application/json"),
                ("x-client", "reader"),
                ("webhook-id", id),
                ("webhook-timestamp", &ts.to_string()),
                ("webhook-signature", &signature),
            ]
            .into();
            let mut stream = plugin.http_stream().expect("a stream");
            stream.send_request_headers(headers, false).expect("headers");
            let _ = stream.send_request_body(body.as_bytes(), true).expect("body");
            assert!(stream.local_reply().is_none(), "{id}: refused");
            let _ = stream.finish();
        };
        send("msg_stale", (&old_k, "k-old"), &hook_old);
        send("msg_current", (&new_k, "k-new"), &hook_new);
        let (log, records) = audit_log(&plugin);
        assert_eq!(records.len(), 2, "{log:#?}");
        assert_eq!(records[0]["stale_kids"], json!(["hooks-old", "k-old"]), "{:#}", records[0]);
        assert!(records[1].get("stale_kids").is_none(), "{:#}", records[1]);
        let counter = |name: &str| plugin.metric(name).map(|m| m.value());
        assert_eq!(counter("eventseal_opened_under_retired_key"), Some(1));
        assert_eq!(counter("eventseal_verified_under_non_primary_key"), Some(1));
        let keyring = Keyring::from_value(&keys, "").expect("a valid keyring");
        verify_audit_log(&log.join("\n"), &keyring, true).unwrap_or_else(|e| panic!("the chain does not verify: {e:?}"));
    }

    #[test]
    fn every_decision_is_recorded_in_a_verifiable_chain() {
        let keys = json!({"keys": [
            {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "status": "primary"},
            {"kty": "oct", "kid": "a1", "alg": "HS256", "use": "audit", "k": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8", "status": "primary"},
        ]});
        let policy = json!({
            "principal": {"source": "header", "header": "x-client"},
            "rules": [
                {"name": "orders", "match": {"path": "/orders"}, "producers": ["shop-*"], "seal": {"fields": ["/card"]}},
                {"name": "admin", "match": {"path": "/admin"}, "producers": ["ops-*"]}
            ]
        });
        let plugin = start(&policy, &keys);
        let send = |path: &str, client: &str, body: Option<&str>| {
            let headers: Headers = [
                (":method", "POST"),
                (":path", path),
                (":authority", "gateway.example"),
                ("content-type", "application/json"),
                ("x-client", client),
                ("x-request-id", "req-1"),
            ]
            .into();
            let mut stream = plugin.http_stream().expect("a stream");
            stream.send_request_headers(headers, body.is_none()).expect("headers");
            if let Some(body) = body {
                let _ = stream.send_request_body(body, true).expect("body");
            }
            let _ = stream.finish();
        };
        send(
            "/orders",
            "shop-1",
            Some(r#"{"id":"e1","type":"order","card":"4111 1111 1111 1111"}"#),
        ); // sealed
        send("/orders", "mailer", Some(r#"{"card":"4111 1111 1111 1111"}"#)); // producer refused
        send("/orders", "shop-1", Some("{not json")); // refused: malformed
        send("/admin", "ops-7", None); // admitted, no body action
        send("/health", "anyone", None); // no rule: no decision, no record

        let (log, records) = audit_log(&plugin);
        let outcomes: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r["rule"].as_str().unwrap_or(""), r["outcome"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("orders", "allowed"),
                ("orders", "refused"),
                ("orders", "refused"),
                ("admin", "allowed")
            ],
            "{log:#?}"
        );
        assert_eq!(records[0]["fields"], json!([{"pointer": "/card", "result": "sealed", "kid": "k1"}]));
        assert_eq!(records[0]["event_id"], "e1");
        assert_eq!(records[1]["reason"], "producer-forbidden");
        assert!(
            !log.iter().any(|l| l.contains("4111 1111")),
            "a plaintext reached the log: {log:#?}"
        );

        let keyring = Keyring::from_value(&keys, "").expect("a valid keyring");
        let summary = verify_audit_log(&log.join("\n"), &keyring, true).unwrap_or_else(|e| panic!("the chain does not verify: {e:?}"));
        assert_eq!(summary.records, 4);
        // An edited record breaks the chain.
        let edited = log.join("\n").replacen("\"outcome\":\"refused\"", "\"outcome\":\"allowed\"", 1);
        assert!(verify_audit_log(&edited, &keyring, true).is_err());
    }
}
