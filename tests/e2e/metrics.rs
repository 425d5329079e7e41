//! The filter's counters in Envoy's `/stats/prometheus` (and `/stats`) after real traffic.
//!
//! Envoy keeps a wasm module's own metrics under the `wasmcustom.` namespace
//! (`/stats`: `wasmcustom.eventseal_fields_sealed`); its Prometheus output drops that
//! namespace and adds no `envoy_` prefix, so the series is the filter's own name,
//! `eventseal_fields_sealed{} 6`, typed `counter`. Counters of every VM that defines the
//! same name are one series.

use crate::case::Case;
use crate::cases::listener;
use crate::client;
use crate::envoy::{self, Envoy};
use crate::jwt::JwtIssuer;
use crate::pki::TestCa;
use crate::upstream::{Answer, Upstream};
use serde_json::Value;
use std::time::Duration;

/// The value of a series in Prometheus text, exactly as printed.
fn series<'a>(text: &'a str, line_start: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
}

#[test]
fn prometheus_shows_the_filter_counters_after_traffic() {
    let case = Case::load_from(&envoy::workspace().join("tests/cases"), "seal-request-fields");
    let (ca, jwt, upstream) = (TestCa::new(), JwtIssuer::new(), Upstream::start());
    let bootstrap = envoy::bootstrap(&[listener("metrics", &case, &ca, &jwt)], &[("upstream".to_owned(), upstream.addr)]);
    let envoy = Envoy::start(&bootstrap).unwrap_or_else(|r| panic!("Envoy did not start ({}):\n{}", r.status, r.log));
    let sets = [&case.keys, &Value::Null];
    let request = crate::case::prepare_request(&case, &sets);
    upstream.reset(Answer {
        headers: vec![(":status".to_owned(), "202".to_owned())],
        body: None,
        chunks: 1,
    });
    let send = |headers: &[(String, String)], body: &[u8]| {
        client::send(
            envoy.listener("metrics"),
            None,
            &client::Request {
                headers,
                body: Some(body),
                chunks: 1,
            },
        )
        .expect("Envoy answers")
    };
    // Three events sealed (two fields each), one malformed body refused.
    let body = request.body.as_deref().expect("the case has a body");
    for _ in 0..3 {
        let response = send(&request.headers, body);
        assert_eq!(response.status, Some(202), "{response:?}");
    }
    let mut malformed_headers = request.headers.clone();
    malformed_headers.retain(|(name, _)| name != "content-length");
    malformed_headers.push(("content-length".to_owned(), "9".to_owned()));
    let refused = send(&malformed_headers, b"{\"type\": ");
    assert_eq!(refused.status, Some(400), "{refused:?}");
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    let _ = upstream.received(Duration::from_millis(50));

    let (status, text) = envoy.get("/stats/prometheus").expect("the admin API answers");
    assert_eq!(status, 200);
    let expected = [
        ("eventseal_fields_sealed", "6"),
        ("eventseal_refused_total", "1"),
        ("eventseal_refused_malformed_json", "1"),
        ("eventseal_fields_opened", "0"),
        ("eventseal_signature_failures", "0"),
    ];
    for (name, value) in expected {
        assert!(text.contains(&format!("# TYPE {name} counter\n")), "no counter {name} in:\n{text}");
        assert_eq!(series(&text, &format!("{name}{{}}")), Some(value), "{name} in:\n{text}");
    }
    // The same counters in /stats, under Envoy's namespace for wasm metrics.
    let (_, stats) = envoy.get("/stats?filter=eventseal").expect("the admin API answers");
    assert!(stats.lines().any(|l| l == "wasmcustom.eventseal_fields_sealed: 6"), "{stats}");
    assert!(
        stats.lines().any(|l| l == "wasmcustom.eventseal_refused_malformed_json: 1"),
        "{stats}"
    );
}

/// A rotation is watched in `/stats`: openings under a `retired` key and verifications
/// under a signing key other than the primary move their counters in real Envoy.
#[test]
fn stats_count_openings_under_retired_keys_and_verifications_under_non_primary_keys() {
    let dir = envoy::workspace().join("tests/cases");
    let retired = Case::load_from(&dir, "rotation-retired-key-still-opens");
    let non_primary = Case::load_from(&dir, "rotation-verify-non-primary-key");
    let (ca, jwt, upstream) = (TestCa::new(), JwtIssuer::new(), Upstream::start());
    let listeners = [
        listener("retired", &retired, &ca, &jwt),
        listener("non-primary", &non_primary, &ca, &jwt),
    ];
    let bootstrap = envoy::bootstrap(&listeners, &[("upstream".to_owned(), upstream.addr)]);
    let envoy = Envoy::start(&bootstrap).unwrap_or_else(|r| panic!("Envoy did not start ({}):\n{}", r.status, r.log));
    let send = |name: &str, case: &Case| {
        let foreign = case.foreign_keys.clone().unwrap_or(Value::Null);
        let request = crate::case::prepare_request(case, &[&case.keys, &foreign]);
        let spiffe = case.identity.as_ref().and_then(|i| i.spiffe.as_deref());
        upstream.reset(Answer {
            headers: vec![(":status".to_owned(), "200".to_owned())],
            body: None,
            chunks: 1,
        });
        let response = client::send(
            envoy.listener(name),
            spiffe.map(|s| ca.client(s)).as_ref(),
            &client::Request {
                headers: &request.headers,
                body: request.body.as_deref(),
                chunks: 1,
            },
        )
        .expect("Envoy answers");
        assert_eq!(response.status, Some(200), "{name}: {response:?}");
        let _ = upstream.received(Duration::from_millis(50));
    };
    send("retired", &retired);
    send("retired", &retired);
    send("non-primary", &non_primary);

    let (status, stats) = envoy.get("/stats?filter=eventseal").expect("the admin API answers");
    assert_eq!(status, 200);
    for line in [
        "wasmcustom.eventseal_opened_under_retired_key: 2",
        "wasmcustom.eventseal_verified_under_non_primary_key: 1",
        "wasmcustom.eventseal_fields_opened: 2",
    ] {
        assert!(stats.lines().any(|l| l == line), "no `{line}` in:\n{stats}");
    }
}
