//! Every conformance case through Envoy, in both of the filter's modes (`envoy.headers`
//! forward, and hold with Envoy's `allow_on_headers_stop_iteration`), judged by the
//! conformance checks and compared with the harness running the same case in the same mode.
//!
//! One Envoy serves all cases: one listener per case (its own policy, keys and `vm_id`, so
//! no replay cache or counter is shared between cases), mTLS with required client
//! certificates for cases with a SPIFFE identity, `jwt_authn` in front of the filter for
//! cases with JWT claims, plain HTTP otherwise. Cases run one after the other against one
//! recording upstream, so counters can be read as differences around each case. A policy
//! the filter must refuse cannot be part of that Envoy (it would not start): each such case
//! gets its own Envoy, which must refuse to start.

use crate::case::{Case, Mode};
use crate::case::{Prepared, prepare_request, prepare_response};
use crate::check::{self, Observed};
use crate::client;
use crate::envoy::{self, Envoy, Filter, Listener, ListenerTls, Protocol};
use crate::jose;
use crate::jwt::JwtIssuer;
use crate::pki::TestCa;
use crate::upstream::{Answer, Received, Upstream};
use eventseal_harness::{Error, Headers, HttpOutcome, LocalReply, Message, PluginConfig};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// The cluster of the recording upstream.
const UPSTREAM: &str = "upstream";

/// Every case file's name.
pub fn case_names() -> Vec<String> {
    let dir = envoy::workspace().join("tests/cases");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/cases is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The policy's `principal.payload`: where `jwt_authn` must store the claims.
fn jwt_payload_key(case: &Case) -> String {
    case.config
        .pointer("/principal/payload")
        .and_then(Value::as_str)
        .unwrap_or("jwt_payload")
        .to_owned()
}

/// The listener that serves `case`.
pub fn listener(name: &str, case: &Case, ca: &TestCa, jwt: &JwtIssuer) -> Listener {
    let identity = case.identity.as_ref();
    Listener {
        name: name.to_owned(),
        protocol: Protocol::Http {
            jwt: identity.and_then(|i| i.jwt.as_ref()).map(|_| (jwt.jwks(), jwt_payload_key(case))),
        },
        filter: Some(Filter {
            policy: serde_json::to_string(&case.config).expect("JSON serializes"),
            keys: case.keys.to_string(),
            env: Vec::new(),
            // A deployment that matches its policy: the knob with hold mode.
            allow_on_headers_stop_iteration: case.holds_headers(),
        }),
        tls: identity.and_then(|i| i.spiffe.as_ref()).map(|_| ListenerTls {
            cert: ca.server_cert_pem.clone(),
            key: ca.server_key_pem.clone(),
            client_ca: ca.cert_pem.clone(),
        }),
        cluster: UPSTREAM.to_owned(),
    }
}

/// What the harness and Envoy are compared on: everything the filter decides, nothing the
/// host adds on its own (Envoy's `date`, `server`, `x-request-id`, framing headers).
#[derive(Debug, PartialEq)]
struct Summary {
    outcome: &'static str,
    status: Option<u16>,
    content_type: Option<String>,
    problem: Option<Value>,
    upstream_reached: bool,
    upstream_body: Option<Value>,
    client_body: Option<Value>,
    upstream_headers: BTreeMap<String, Option<String>>,
    client_headers: BTreeMap<String, Option<String>>,
}

/// Header names whose values the filter decides or must leave alone.
fn relevant_headers(case: &Case) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["content-type", "webhook-id", "webhook-timestamp", "webhook-signature"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.extend(case.request.headers.keys().cloned());
    if let Some(response) = &case.upstream_response {
        names.extend(response.headers.keys().cloned());
    }
    if let Some(forwarded) = &case.expect.forwarded {
        for side in [&forwarded.upstream, &forwarded.client].into_iter().flatten() {
            names.extend(side.headers.keys().cloned());
            names.extend(side.headers_absent.iter().cloned());
        }
    }
    for framing in ["content-length", "transfer-encoding", "host"] {
        names.remove(framing);
    }
    names
}

/// A body for comparison: JSON with every envelope that opens replaced by what it holds
/// and binds (nonces differ between runs); anything else as text.
fn normalize(body: &[u8], sets: &[&Value]) -> Value {
    fn walk(value: &mut Value, sets: &[&Value]) {
        match value {
            Value::String(s) if s.split('.').count() == 5 => {
                if let Ok((header, opened)) = jose::open(sets, s) {
                    *value = json!({"$opened": opened, "kid": header["kid"], "ptr": header["ptr"], "ctx": header["ctx"]});
                }
            }
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, sets)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, sets)),
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            walk(&mut value, sets);
            value
        }
        Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

fn summarize(case: &Case, sets: &[&Value], observed: &Observed) -> Summary {
    let names = relevant_headers(case);
    // A signature the filter makes has a fresh id and the time of signing: compared by
    // presence here, checked against the body by the conformance checks.
    let made_by_the_filter = |name: &str| case.sign_request.is_none() && name.starts_with("webhook-");
    let pick = |m: &Message| -> BTreeMap<String, Option<String>> {
        names
            .iter()
            .map(|n| {
                let value = m.header(n).map(|v| {
                    if made_by_the_filter(n) {
                        "(signed)".to_owned()
                    } else {
                        v.to_owned()
                    }
                });
                (n.clone(), value)
            })
            .collect()
    };
    let sent_request_id = case.request.headers.contains_key("x-request-id");
    let mut summary = Summary {
        outcome: "",
        status: None,
        content_type: None,
        problem: None,
        upstream_reached: !observed.upstream.body.is_empty() || observed.upstream.end_of_stream,
        upstream_body: None,
        client_body: None,
        upstream_headers: BTreeMap::new(),
        client_headers: BTreeMap::new(),
    };
    match &observed.outcome {
        HttpOutcome::Forwarded { request, response } => {
            summary.outcome = "forwarded";
            summary.status = response.header(":status").and_then(|s| s.parse().ok());
            summary.upstream_body = Some(normalize(&request.body, sets));
            summary.client_body = Some(normalize(&response.body, sets));
            summary.upstream_headers = pick(request);
            summary.client_headers = pick(response);
        }
        HttpOutcome::LocalReply(reply) => {
            summary.outcome = "local_reply";
            summary.status = Some(reply.status);
            summary.content_type = reply.header("content-type").map(str::to_owned);
            let mut problem = normalize(&reply.body, sets);
            // Envoy makes up a request id when the client sent none; the harness has none.
            if !sent_request_id && let Some(map) = problem.as_object_mut() {
                map.remove("request_id");
            }
            summary.problem = Some(problem);
        }
        HttpOutcome::Reset { .. } => {
            summary.outcome = "reset";
            summary.client_body = Some(Value::String(format!("{} bytes", observed.client.body.len())));
        }
        _ => summary.outcome = "paused",
    }
    summary
}

fn headers_of(pairs: &[(String, String)]) -> Headers {
    pairs.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect()
}

/// Envoy's side of one exchange, in the harness's terms.
fn observe(response: &client::Response, received: &[Received]) -> Observed {
    let upstream = received.last().map_or_else(Message::default, |r| Message {
        headers: Some(headers_of(&r.headers)),
        body: r.body.clone(),
        trailers: None,
        end_of_stream: r.end_of_stream,
    });
    let status = response.status.map(|s| s.to_string()).unwrap_or_default();
    let mut client_headers = vec![(":status".to_owned(), status)];
    client_headers.extend(response.headers.iter().cloned());
    let client = Message {
        headers: response.status.map(|_| headers_of(&client_headers)),
        body: response.body.clone(),
        trailers: None,
        end_of_stream: response.complete,
    };
    let answered = received.iter().any(|r| r.answered);
    // The filter's own answer: the upstream never answered, or (a response refused in hold
    // mode) it answered and the client got a problem instead; no case's upstream answers
    // with a problem.
    let problem = response.header("content-type") == Some(eventseal_core::PROBLEM_CONTENT_TYPE);
    let (outcome, local_reply) = match response.status {
        Some(status) if response.complete && (!answered || problem) => {
            let reply = LocalReply {
                status,
                headers: headers_of(&client_headers),
                body: response.body.clone(),
                details: String::new(),
                grpc_status: -1,
            };
            (HttpOutcome::LocalReply(reply.clone()), Some(reply))
        }
        Some(_) if response.complete => (
            HttpOutcome::Forwarded {
                request: upstream.clone(),
                response: client.clone(),
            },
            None,
        ),
        _ => (
            HttpOutcome::Reset {
                details: "the connection closed before the response ended".to_owned(),
            },
            None,
        ),
    };
    Observed {
        outcome,
        upstream,
        client,
        local_reply,
        // Envoy cannot show whether the filter paused; `streamed` is not checked here.
        paused: false,
    }
}

/// The harness's outcome of the last send, and the counters the case names.
fn through_harness(name: &str, case: &Case, request: &Prepared, response: &Prepared) -> (Observed, BTreeMap<String, Option<u64>>) {
    let config = PluginConfig::new()
        .configuration(serde_json::to_vec(&case.config).expect("JSON values serialize"))
        .env("EVENTSEAL_KEYS", case.keys.to_string())
        .allow_on_headers_stop_iteration(case.holds_headers());
    let plugin = crate::module()
        .plugin(config)
        .unwrap_or_else(|e| panic!("{name}: the filter did not start in the harness: {e}"));
    let mut last = None;
    for i in 1..=case.repeat.unwrap_or(1).max(1) {
        last = Some(
            eventseal_testkit::harness::exchange(&plugin, case, request, response)
                .unwrap_or_else(|e| panic!("{name}: harness send {i}: {e}")),
        );
    }
    let metrics = case
        .expect
        .metrics
        .iter()
        .flatten()
        .map(|(metric, _)| (metric.clone(), plugin.metric(metric).map(|m| m.value())))
        .collect();
    (last.expect("at least one send"), metrics)
}

/// Everything the suite shares while cases run.
pub struct Bench {
    /// The Envoy with every case's listener.
    pub envoy: Envoy,
    /// The recording upstream.
    pub upstream: Upstream,
    /// The CA of client certificates.
    pub ca: TestCa,
    /// The JWT signer.
    pub jwt: JwtIssuer,
}

impl Bench {
    /// One Envoy with a listener for each case, a fresh CA, JWT key and upstream.
    ///
    /// # Panics
    /// When Envoy does not start.
    pub fn start(cases: &[&(String, Case)]) -> Bench {
        let ca = TestCa::new();
        let jwt = JwtIssuer::new();
        let upstream = Upstream::start();
        let listeners: Vec<Listener> = cases.iter().map(|(n, c)| listener(n, c, &ca, &jwt)).collect();
        let bootstrap = envoy::bootstrap(&listeners, &[(UPSTREAM.to_owned(), upstream.addr)]);
        let envoy = Envoy::start(&bootstrap).unwrap_or_else(|r| panic!("Envoy did not start ({}):\n{}", r.status, r.log));
        Bench { envoy, upstream, ca, jwt }
    }
}

/// How Envoy's `/stats/prometheus` names a counter the filter defines as `metric`: Envoy
/// keeps custom wasm metrics under `wasmcustom.`, and its Prometheus output drops that
/// namespace and the `envoy_` prefix, so the name is the filter's own.
pub fn prometheus_name(metric: &str) -> String {
    metric.replace('.', "_")
}

/// Runs `case` through Envoy and the harness; every difference, or `Ok`.
pub fn run_case(bench: &Bench, name: &str, case: &Case) -> Result<(), String> {
    let foreign = case.foreign_keys.clone().unwrap_or(Value::Null);
    let sets = [&case.keys, &foreign];
    let request = prepare_request(case, &sets);
    let response = prepare_response(case.upstream_response.as_ref(), &sets);
    let (harness, harness_metrics) = through_harness(name, case, &request, &response);

    let identity = case.identity.as_ref();
    let client_cert = identity.and_then(|i| i.spiffe.as_deref()).map(|spiffe| bench.ca.client(spiffe));
    let mut headers = request.headers.clone();
    if let Some(claims) = identity.and_then(|i| i.jwt.as_ref()) {
        headers.push(("authorization".to_owned(), format!("Bearer {}", bench.jwt.token(claims))));
    }
    let answer = Answer {
        headers: response.headers.clone(),
        body: response.body.clone(),
        chunks: response.chunks,
    };
    let before = bench.envoy.prometheus();
    let addr = bench.envoy.listener(name);
    let repeat = case.repeat.unwrap_or(1).max(1);
    let mut problems = Vec::new();
    let mut observed = None;
    for i in 1..=repeat {
        bench.upstream.reset(answer.clone());
        let sent = client::send(
            addr,
            client_cert.as_ref(),
            &client::Request {
                headers: &headers,
                body: request.body.as_deref(),
                chunks: request.chunks,
            },
        )
        .map_err(|e| format!("{name}: send {i} to Envoy failed: {e}"))?;
        // A refusal on the body may leave Envoy's upstream request (headers, then a reset)
        // in flight after the client has its answer: wait until Envoy has nothing in
        // flight to the upstream, then give the upstream's own thread a moment to read it.
        bench.envoy.wait_until_cluster_idle(UPSTREAM);
        let settle = if sent.complete && sent.status.is_some() { 30 } else { 100 };
        let received = bench.upstream.received(Duration::from_millis(settle));
        let seen = observe(&sent, &received);
        if i < repeat && !matches!(seen.outcome, HttpOutcome::Forwarded { .. }) {
            problems.push(format!("send {i} of {repeat} should be forwarded, got {:?}", seen.outcome));
        }
        observed = Some(seen);
    }
    let observed = observed.expect("at least one send");

    // 1. Envoy meets the case's expectations, judged by the conformance checks.
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
        check::outcome(name, case, &sets, &request, &response, &observed);
    })) {
        problems.push(format!("Envoy does not meet the expectations:\n{}", panic_text(&*panic)));
    }
    // 2. Envoy and the harness agree.
    let (from_harness, from_envoy) = (summarize(case, &sets, &harness), summarize(case, &sets, &observed));
    if from_harness != from_envoy {
        problems.push(format!(
            "Envoy and the harness differ:\n    harness: {from_harness:#?}\n    envoy:   {from_envoy:#?}"
        ));
    }
    // 3. Counters: Envoy's change over the case equals the expectation and the harness.
    let after = bench.envoy.prometheus();
    for (metric, expected) in case.expect.metrics.iter().flatten() {
        let key = prometheus_name(metric);
        let delta = after.get(&key).map(|a| a - before.get(&key).copied().unwrap_or(0));
        // A counter no case has touched yet may be absent: that is zero.
        let delta = delta.or_else(|| (expected.as_u64() == Some(0)).then_some(0));
        if delta != expected.as_u64() || harness_metrics.get(metric).copied().flatten() != expected.as_u64() {
            problems.push(format!(
                "counter {metric}: expected {expected}, Envoy's /stats/prometheus `{key}` moved by {delta:?}, the harness has {:?}",
                harness_metrics.get(metric).copied().flatten()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let mut text = format!("case {name}: {}\n", case.description);
        for problem in problems {
            let _ = writeln!(text, "  - {problem}");
        }
        let _ = writeln!(text, "  Envoy's outcome: {:?}", observed.outcome);
        let _ = writeln!(text, "  harness outcome: {:?}", harness.outcome);
        Err(text)
    }
}

/// A panic payload as text.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic".to_owned())
}

/// A case whose policy the filter must refuse: Envoy must refuse to start with it, logging
/// the location, as the harness refuses it.
fn run_refused(name: &str, case: &Case, ca: &TestCa, jwt: &JwtIssuer, upstream: &Upstream) -> Result<(), String> {
    let config = PluginConfig::new()
        .configuration(serde_json::to_vec(&case.config).expect("JSON values serialize"))
        .env("EVENTSEAL_KEYS", case.keys.to_string())
        .allow_on_headers_stop_iteration(case.holds_headers());
    let harness_refused = matches!(crate::module().plugin(config), Err(Error::ConfigurationRefused { .. }));
    let bootstrap = envoy::bootstrap(&[listener(name, case, ca, jwt)], &[(UPSTREAM.to_owned(), upstream.addr)]);
    let refused = match Envoy::start(&bootstrap) {
        Ok(envoy) => {
            return Err(format!(
                "case {name}: Envoy started with a policy the filter must refuse:\n{}",
                envoy.log()
            ));
        }
        Err(refused) => refused,
    };
    let logs = envoy::wasm_log_lines(&refused.log, Some(name));
    let mut problems = Vec::new();
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check::config_refused(name, case, &logs))) {
        problems.push(panic_text(&*panic));
    }
    if refused.status.success() || !refused.log.contains(&format!("Unable to create Wasm plugin eventseal-{name}")) {
        problems.push(format!("Envoy should exit with an error naming the plugin, got {}", refused.status));
    }
    if !harness_refused {
        problems.push("the harness accepted the policy Envoy refused".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "case {name}:\n  {}\n  Envoy's log:\n{}",
            problems.join("\n  "),
            refused.log
        ))
    }
}

#[test]
fn every_case_through_envoy_matches_the_harness() {
    let started = Instant::now();
    let names = case_names();
    assert!(names.len() >= 30, "only {} cases", names.len());
    // Every case in both modes (`envoy.headers` forward and hold), each on its own listener.
    let dir = envoy::workspace().join("tests/cases");
    let mut cases: Vec<(String, Case)> = names
        .iter()
        .flat_map(|n| Mode::BOTH.map(|mode| (format!("{n}{}", mode.suffix()), Case::load_from(&dir, n).in_mode(mode))))
        .collect();
    // The Standard Webhooks vectors (v1, v1a, from the independent generator) as cases.
    for (name, case) in eventseal_testkit::webhooks::cases() {
        let name = format!("webhook-vector-{name}");
        cases.extend(Mode::BOTH.map(|mode| {
            (
                format!("{name}{}", mode.suffix()),
                Case::from_value(&name, case.clone()).in_mode(mode),
            )
        }));
    }
    let (refused, served): (Vec<_>, Vec<_>) = cases.iter().partition(|(_, c)| c.expect.config_refused.is_some());

    let bench = Bench::start(&served);
    let ready = started.elapsed();

    let mut failures = Vec::new();
    for (name, case) in &served {
        match catch_unwind(AssertUnwindSafe(|| run_case(&bench, name, case))) {
            Ok(Ok(())) => {}
            Ok(Err(text)) => failures.push(text),
            Err(panic) => failures.push(format!("case {name}: {}", panic_text(&*panic))),
        }
    }
    // Nothing secret or plaintext in what the filter logged through Envoy.
    let Bench { envoy, upstream, ca, jwt } = bench;
    let log = envoy.stop();
    for (name, case) in &served {
        let lines = envoy::wasm_log_lines(&log, Some(name));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check::no_plaintext(name, case, &lines))) {
            failures.push(panic_text(&*panic));
        }
    }
    for (name, case) in &refused {
        if let Err(text) = run_refused(name, case, &ca, &jwt, &upstream) {
            failures.push(text);
        }
    }
    eprintln!(
        "{} cases through Envoy ({} served by one Envoy, ready after {:.1?}; {} refused at load), {} failed, in {:.1?}",
        cases.len(),
        served.len(),
        ready,
        refused.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
