//! A typical SDK filter end to end: what a test of any proxy-wasm module looks like.

use std::time::Duration;

use eventseal_harness::{HttpCallReply, HttpCallResponse, HttpExchange, MetricValue, Plugin, PluginConfig, Upstream};

use crate::filter_module;

fn plugin(config: PluginConfig) -> Plugin {
    filter_module().plugin(config).unwrap_or_else(|e| panic!("{e}"))
}

fn post(path: &str) -> HttpExchange {
    HttpExchange::new([
        (":method", "POST"),
        (":path", path),
        (":authority", "api.example"),
        ("content-type", "text/plain"),
    ])
}

#[test]
fn bodies_are_buffered_and_rewritten_in_both_directions() {
    let plugin = plugin(PluginConfig::new());
    let outcome = plugin
        .run_http(
            post("/events")
                .request_chunks(["ab", "cd", "ef"])
                .response_headers([(":status", "200"), ("server", "upstream")])
                .response_chunks(["o", "k"]),
        )
        .unwrap();
    let request = outcome.forwarded_request().unwrap();
    assert_eq!(request.body_text(), "ABCDEF");
    assert_eq!(request.header("x-filter"), Some("on"));
    assert!(plugin.logged("request body callbacks: 2/false 4/false 6/true"));
    let response = outcome.forwarded_response().unwrap();
    assert_eq!(response.body_text(), "ok (filtered)");
    assert_eq!(response.header("x-filter-response"), Some("on"));
    assert_eq!(response.header("server"), None);
    assert!(plugin.logged("method=POST status=200"), "on_log saw the final headers");
}

#[test]
fn a_denied_request_gets_a_local_reply_that_the_filter_also_sees() {
    let plugin = plugin(PluginConfig::new());
    let outcome = plugin.run_http(post("/deny/this").request_body("secret")).unwrap();
    let reply = outcome.local_reply().unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("x-denied"), Some("yes"));
    assert_eq!(
        reply.header("x-filter-response"),
        Some("on"),
        "Envoy runs local replies through the filter's response callbacks"
    );
    assert_eq!(reply.body_text(), "denied by filter (filtered)");
}

#[test]
fn an_http_call_pauses_the_request_until_the_answer() {
    let auth = Upstream::handler(|request| match request.header("x-token") {
        Some("good") => HttpCallResponse::new(200).with_body("alice").into(),
        _ => HttpCallResponse::new(401).into(),
    });
    let plugin = plugin(PluginConfig::new().configuration("auth_cluster=auth").upstream("auth", auth));
    let outcome = plugin.run_http(post("/events").request_body("x")).unwrap();
    assert!(outcome.forwarded_request().is_some(), "no x-auth header, no call");
    let mut good = post("/events").request_body("x");
    good.request_headers.add("x-auth", "good");
    let outcome = plugin.run_http(good).unwrap();
    assert_eq!(outcome.forwarded_request().unwrap().header("x-auth-user"), Some("alice"));
    let mut bad = post("/events").request_body("x");
    bad.request_headers.add("x-auth", "bad");
    let outcome = plugin.run_http(bad).unwrap();
    assert_eq!(outcome.local_reply().unwrap().body_text(), "auth failed: 401 (filtered)");
    assert_eq!(plugin.http_calls().len(), 2);
}

#[test]
fn a_failed_or_timed_out_call_is_seen_as_envoy_reports_it() {
    let plugin = plugin(
        PluginConfig::new()
            .configuration("auth_cluster=auth")
            .upstream("auth", Upstream::handler(|_| HttpCallReply::Reset)),
    );
    let mut exchange = post("/events");
    exchange.request_headers.add("x-auth", "t");
    let outcome = plugin.run_http(exchange.clone()).unwrap();
    assert!(outcome.local_reply().unwrap().body_text().starts_with("auth failed: no response"));

    let plugin = self::plugin(
        PluginConfig::new()
            .configuration("auth_cluster=auth")
            .upstream("auth", Upstream::manual()),
    );
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(exchange.request_headers, true).unwrap();
    plugin.advance_time(Duration::from_secs(2)).unwrap();
    assert!(stream.local_reply().unwrap().body_text().starts_with("auth failed: 504"));
}

#[test]
fn an_unknown_cluster_is_refused_at_dispatch() {
    let plugin = plugin(PluginConfig::new().configuration("auth_cluster=missing"));
    let mut exchange = post("/events");
    exchange.request_headers.add("x-auth", "t");
    let outcome = plugin.run_http(exchange).unwrap();
    assert_eq!(outcome.local_reply().unwrap().status, 500);
    assert!(
        outcome
            .local_reply()
            .unwrap()
            .body_text()
            .starts_with("dispatch failed: BadArgument")
    );
}

#[test]
fn ticks_follow_the_virtual_clock() {
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
    let plugin = plugin(PluginConfig::new().configuration("tick_ms=100").start_time(start));
    assert_eq!(plugin.tick_period(), Some(Duration::from_millis(100)));
    plugin.advance_time(Duration::from_millis(350)).unwrap();
    assert_eq!(plugin.metric("filter_ticks_total"), Some(MetricValue::Counter(3)));
    let ticks: Vec<String> = plugin
        .logs()
        .into_iter()
        .filter(|l| l.message.starts_with("tick at"))
        .map(|l| l.message)
        .collect();
    assert_eq!(ticks, ["tick at 1000100", "tick at 1000200", "tick at 1000300"]);
    plugin.advance_time(Duration::from_millis(50)).unwrap();
    assert_eq!(plugin.metric("filter_ticks_total"), Some(MetricValue::Counter(4)));
}

#[test]
fn metrics_and_shared_data_count_requests() {
    let plugin = plugin(PluginConfig::new());
    for _ in 0..3 {
        plugin.run_http(post("/events")).unwrap();
    }
    assert_eq!(plugin.metric("filter_requests_total").unwrap().value(), 3);
    assert_eq!(plugin.shared_data("requests").unwrap().0, b"3");
}

#[test]
fn environment_variables_reach_the_filter() {
    let plugin = plugin(PluginConfig::new().env("FILTER_GREETING", "hello"));
    let outcome = plugin.run_http(post("/events")).unwrap();
    assert_eq!(outcome.forwarded_request().unwrap().header("x-greeting"), Some("hello"));
}
