//! `envoy.headers: hold` in real Envoy 1.40, with `allow_on_headers_stop_iteration` set
//! in the wasm filter's `PluginConfig`, and the mismatches both ways (docs/CONFIG.md).
//! Signatures are checked with the Python `standardwebhooks` library, envelopes with the
//! runner's own JOSE code.

use crate::client;
use crate::envoy::{self, Envoy, Filter, Listener, Protocol};
use crate::jose;
use crate::upstream::{Answer, Upstream};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const HOOK: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const EVENT: &str = r#"{"type":"order.created","data":{"card":"4111111111111111","amount":3}}"#;

fn keys() -> Value {
    json!({"keys": [
        {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": KEY, "status": "primary"},
        {"kty": "oct", "kid": "h1", "alg": "HS256", "k": HOOK, "status": "primary"},
    ]})
}

fn policy(headers: &str, sign: bool) -> Value {
    json!({
        "envoy": {"headers": headers},
        "principal": {"source": "header", "header": "x-client"},
        "rules": [
            {"name": "publish", "match": {"path": "/publish"}, "context": {"type": {"body": "/type"}},
             "seal": {"fields": ["/data/card"], "required": true}, "sign": sign},
            {"name": "hooks", "match": {"path": "/hooks"}, "verify": true},
            {"name": "read", "match": {"path": "/read"}, "apply_to": "response",
             "context": {"type": {"body": "/type"}},
             "open": {"fields": ["/data/card"], "readers": ["billing"], "denied": "refuse"}},
        ]
    })
}

fn start(headers: &str, sign: bool, knob: bool) -> (Envoy, Upstream) {
    start_with(headers, sign, knob, |_| {})
}

/// [`start`], with a last change to Envoy's bootstrap.
fn start_with(headers: &str, sign: bool, knob: bool, adjust: impl FnOnce(&mut Value)) -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let listener = Listener {
        name: "hold".to_owned(),
        protocol: Protocol::Http { jwt: None },
        filter: Some(Filter {
            policy: policy(headers, sign).to_string(),
            keys: keys().to_string(),
            env: Vec::new(),
            allow_on_headers_stop_iteration: knob,
        }),
        tls: None,
        cluster: "upstream".to_owned(),
    };
    let mut bootstrap = envoy::bootstrap(&[listener], &[("upstream".to_owned(), upstream.addr)]);
    adjust(&mut bootstrap);
    let envoy = Envoy::start(&bootstrap).unwrap_or_else(|r| panic!("Envoy refused:\n{}", r.log));
    (envoy, upstream)
}

fn answer(body: Option<&str>) -> Answer {
    let mut headers = vec![(":status".to_owned(), "200".to_owned())];
    if body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    Answer {
        headers,
        body: body.map(|b| b.as_bytes().to_vec()),
        chunks: 1,
    }
}

fn post(envoy: &Envoy, path: &str, extra: &[(&str, &str)], body: &str) -> client::Response {
    let length = body.len().to_string();
    let mut headers: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway.example"),
        ("content-type", "application/json"),
        ("content-length", &length),
        ("x-client", "billing"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    for (name, value) in extra {
        headers.retain(|(n, _)| n != name);
        headers.push(((*name).to_owned(), (*value).to_owned()));
    }
    let request = client::Request {
        headers: &headers,
        body: Some(body.as_bytes()),
        chunks: 2,
    };
    client::send(envoy.listener("hold"), None, &request).expect("Envoy answers")
}

fn problem_type(response: &client::Response) -> String {
    assert_eq!(response.header("content-type"), Some("application/problem+json"), "{response:?}");
    let problem: Value = serde_json::from_slice(&response.body).expect("a problem+json body");
    problem["type"].as_str().unwrap_or_default().to_owned()
}

/// The Python `standardwebhooks` library verifies the signature headers over the body.
fn standardwebhooks_verifies(body: &[u8], headers: &[(String, String)]) -> Result<(), String> {
    let python = envoy::workspace().join(".venv/bin/python");
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str()).to_owned();
    let script = "import sys, json\nfrom standardwebhooks import Webhook\n\
                  secret, body, headers = sys.argv[1], sys.stdin.buffer.read(), json.loads(sys.argv[2])\n\
                  Webhook(secret).verify(body, headers)\nprint('verified')";
    let hook_headers = json!({
        "webhook-id": header("webhook-id"),
        "webhook-timestamp": header("webhook-timestamp"),
        "webhook-signature": header("webhook-signature"),
    });
    let mut child = Command::new(&python)
        .args(["-c", script, HOOK, &hook_headers.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup (it installs tests/requirements.txt)", python.display()));
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), body).expect("write the body");
    let out = child.wait_with_output().expect("python runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn in_envoy_hold_mode_seals_then_signs_and_the_upstream_gets_an_exact_content_length() {
    let (envoy, upstream) = start("hold", true, true);
    upstream.reset(answer(None));
    let response = post(&envoy, "/publish", &[], EVENT);
    assert_eq!(response.status, Some(200), "{response:?}\n{}", envoy.log());
    let received = upstream.received(Duration::from_millis(100));
    let request = received.first().expect("the upstream received the request");
    let length = request.headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.as_str());
    assert_eq!(
        length,
        Some(request.body.len().to_string().as_str()),
        "content-length is the body's length"
    );
    let sealed: Value = serde_json::from_slice(&request.body).expect("a JSON body");
    let (header, card) = jose::open(&[&keys()], sealed["data"]["card"].as_str().expect("an envelope")).expect("it opens");
    assert_eq!((header["ptr"].as_str(), card), (Some("/data/card"), json!("4111111111111111")));
    standardwebhooks_verifies(&request.body, &request.headers)
        .unwrap_or_else(|e| panic!("standardwebhooks refused the signature over the sealed body: {e}"));
    let mut tampered = request.body.clone();
    tampered[2] ^= 1;
    assert!(
        standardwebhooks_verifies(&tampered, &request.headers).is_err(),
        "the check can fail"
    );
}

/// A request that must be refused: path, extra headers, body, status, problem slug.
type Refusal<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, u16, &'a str);

#[test]
fn in_envoy_hold_mode_a_refused_request_body_never_reaches_the_upstream() {
    let (envoy, upstream) = start("hold", true, true);
    upstream.reset(answer(None));
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let secret = jose::key_bytes(&[&keys()], "h1");
    let signed = jose::webhook_signature(&secret, "msg_1", timestamp.parse().expect("digits"), EVENT.as_bytes());
    let good = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signed.as_str()),
    ];
    // One accepted signature first: the replay below must be refused for being a replay.
    assert_eq!(post(&envoy, "/hooks", &good, EVENT).status, Some(200));
    upstream.reset(answer(None));
    let before = upstream.connections();
    let forged = jose::webhook_signature(
        b"not the hook secret",
        "msg_2",
        timestamp.parse().expect("digits"),
        EVENT.as_bytes(),
    );
    let bad_signature = [
        ("webhook-id", "msg_2"),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", forged.as_str()),
    ];
    let refusals: [Refusal<'_>; 4] = [
        ("/hooks", &bad_signature, EVENT, 401, "signature-invalid"),
        ("/publish", &[], r#"{"type":"order.created","data":{"card":"#, 400, "malformed-json"),
        ("/publish", &[], r#"{"type":"order.created","data":{}}"#, 400, "field-missing"),
        ("/hooks", &good, EVENT, 401, "signature-replayed"),
    ];
    for (path, extra, body, status, kind) in refusals {
        let response = post(&envoy, path, extra, body);
        assert_eq!(response.status, Some(status), "{kind}: {response:?}");
        assert_eq!(problem_type(&response), format!("urn:eventseal:problem:{kind}"));
    }
    // The first request may have left a pooled connection; the refused ones opened none.
    assert_eq!(
        upstream.connections(),
        before,
        "the upstream accepted no connection for a refused request"
    );
    let received = upstream.received(Duration::from_millis(200));
    assert_eq!(received.len(), 0, "the upstream received nothing: {received:?}");
}

#[test]
fn in_envoy_hold_mode_refused_responses_are_problems_not_resets() {
    let (envoy, upstream) = start("hold", false, true);
    let key = jose::key_bytes(&[&keys()], "k1");
    let ctx = json!({"type": "order.created"});
    let tampered = jose::seal(
        &key,
        "k1",
        "/data/card",
        ctx.as_object().expect("ctx"),
        &json!("4111"),
        Some("flip_tag"),
    );
    let body = json!({"type": "order.created", "data": {"card": tampered}}).to_string();
    upstream.reset(answer(Some(&body)));
    let response = post(&envoy, "/read", &[], "{}");
    assert_eq!(response.status, Some(502), "{response:?}");
    assert!(response.complete, "a whole response, not a reset");
    assert_eq!(problem_type(&response), "urn:eventseal:problem:sealed-field-rejected");
    // A reader the group refuses: 403.
    let sealed = jose::seal(&key, "k1", "/data/card", ctx.as_object().expect("ctx"), &json!("4111"), None);
    upstream.reset(answer(Some(
        &json!({"type": "order.created", "data": {"card": sealed}}).to_string(),
    )));
    let response = post(&envoy, "/read", &[("x-client", "intruder")], "{}");
    assert_eq!(response.status, Some(403), "{response:?}");
    assert!(response.complete);
    assert_eq!(problem_type(&response), "urn:eventseal:problem:reader-forbidden");
}

#[test]
fn in_envoy_hold_mode_without_the_knob_fails_closed_and_the_log_names_the_fix() {
    let (envoy, upstream) = start("hold", false, false);
    upstream.reset(answer(None));
    let started = std::time::Instant::now();
    let response = post(&envoy, "/publish", &[], EVENT);
    assert_eq!(response.status, Some(503), "{response:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered, not left to time out");
    assert_eq!(upstream.received(Duration::from_millis(100)).len(), 0, "nothing passed unchecked");
    let lines = envoy::wasm_log_lines(&envoy.log(), Some("hold"));
    assert!(
        lines.iter().any(|l| l.contains("set allow_on_headers_stop_iteration: true")),
        "{lines:#?}"
    );
    // A request without a body is never held.
    let get = client::get(envoy.listener("hold"), "/other").expect("Envoy answers");
    assert_eq!(get.status, Some(200));
}

#[test]
fn in_envoy_forward_mode_works_with_the_knob_set_too() {
    let (envoy, upstream) = start("forward", false, true);
    upstream.reset(answer(None));
    let response = post(&envoy, "/publish", &[], EVENT);
    assert_eq!(response.status, Some(200), "{response:?}");
    let received = upstream.received(Duration::from_millis(100));
    let sealed: Value = serde_json::from_slice(&received[0].body).expect("a JSON body");
    assert!(jose::open(&[&keys()], sealed["data"]["card"].as_str().expect("an envelope")).is_ok());
}

#[test]
fn in_envoy_hold_mode_a_body_over_envoys_buffer_limit_is_refused_by_envoy_and_never_forwarded() {
    // Envoy's buffer limit below the policy's max_body_bytes (1 MiB by default).
    let (envoy, upstream) = start_with("hold", false, true, |bootstrap| {
        bootstrap["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = json!(4096);
    });
    upstream.reset(answer(None));
    let padding = "x".repeat(16 * 1024);
    let body = json!({"type": "order.created", "data": {"card": "4111111111111111", "note": padding}}).to_string();
    let response = post(&envoy, "/publish", &[], &body);
    assert_eq!(response.status, Some(413), "{response:?}");
    assert_eq!(upstream.received(Duration::from_millis(200)).len(), 0, "nothing was forwarded");
    assert_eq!(upstream.connections(), 0);
    // Under the limit the same route works.
    let response = post(&envoy, "/publish", &[], EVENT);
    assert_eq!(response.status, Some(200), "{response:?}");
}
