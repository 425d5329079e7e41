//! `allow_on_headers_stop_iteration`, modelled both ways as proxy-wasm-cpp-host does: the
//! `filter` guest's `/hold` paths pause their headers and decide on the whole body.

use eventseal_harness::{HttpExchange, HttpOutcome, Plugin, PluginConfig, StreamState};

use crate::filter_module;

fn plugin(allow: bool) -> Plugin {
    filter_module()
        .plugin(PluginConfig::new().allow_on_headers_stop_iteration(allow))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn post(path: &str) -> [(&'static str, String); 4] {
    [
        (":method", "POST".to_owned()),
        (":path", path.to_owned()),
        (":authority", "api.example".to_owned()),
        ("content-length", "6".to_owned()),
    ]
}

#[test]
fn without_the_knob_paused_headers_stop_all_iteration_and_the_body_waits() {
    let plugin = plugin(false);
    let mut stream = plugin.http_stream().unwrap();
    assert_eq!(stream.send_request_headers(post("/hold"), false).unwrap(), StreamState::Paused);
    // StopAllIterationAndWatermark: Envoy keeps the body; no body callback runs.
    assert_eq!(stream.send_request_body("abcdef", true).unwrap(), StreamState::Paused);
    assert!(!plugin.logged("held request body callbacks"), "a body callback ran");
    assert_eq!(stream.upstream_request().headers, None, "nothing forwarded");
    assert!(matches!(stream.finish().unwrap(), HttpOutcome::Paused { .. }));
}

#[test]
fn with_the_knob_body_callbacks_run_while_the_headers_are_held_and_still_writable() {
    let plugin = plugin(true);
    let mut stream = plugin.http_stream().unwrap();
    assert_eq!(stream.send_request_headers(post("/hold"), false).unwrap(), StreamState::Paused);
    assert_eq!(stream.send_request_body("abc", false).unwrap(), StreamState::Paused);
    assert_eq!(stream.upstream_request().headers, None, "the headers are held");
    assert_eq!(stream.send_request_body("def", true).unwrap(), StreamState::Continued);
    assert!(plugin.logged("held request body callbacks: 3/false 6/true"));
    let request = stream.upstream_request();
    assert_eq!(request.body_text(), "[ABCDEF]");
    assert_eq!(request.header("content-length"), Some("8"), "set to the new length");
    assert_eq!(
        request.header("x-signed"),
        Some("len=8"),
        "a header set after the body went with the headers"
    );
}

#[test]
fn with_the_knob_a_local_reply_from_the_request_body_forwards_nothing() {
    let plugin = plugin(true);
    let outcome = plugin
        .run_http(HttpExchange::new(post("/hold")).request_chunks(["ref", "use"]))
        .unwrap();
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!(reply.status, 403);
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(post("/hold"), false).unwrap();
    stream.send_request_body("refuse", true).unwrap();
    assert_eq!(stream.upstream_request().headers, None, "the upstream saw no request at all");
    assert_eq!(stream.local_reply().map(|r| r.status), Some(403));
}

#[test]
fn with_the_knob_a_response_refused_in_its_body_is_a_local_reply_not_a_reset() {
    let plugin = plugin(true);
    let outcome = plugin
        .run_http(
            HttpExchange::new(post("/hold"))
                .request_body("abcdef")
                .response_headers([(":status", "200"), ("content-length", "6")])
                .response_body("refuse"),
        )
        .unwrap();
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!(reply.status, 502);
    assert_eq!(reply.body_text(), "refused before the client");
    // Without the knob the same filter could not hold the response headers: the body
    // callback never runs (the response waits), which is why the filter must know.
    let outcome = plugin_without_knob_response();
    assert!(matches!(outcome, HttpOutcome::Paused { .. }), "{outcome:?}");
}

fn plugin_without_knob_response() -> HttpOutcome {
    let plugin = plugin(false);
    let mut stream = plugin.http_stream().unwrap();
    stream.send_request_headers(post("/hold"), true).unwrap();
    stream
        .send_response_headers([(":status", "200"), ("content-length", "6")], false)
        .unwrap();
    stream.send_response_body("refuse", true).unwrap();
    stream.finish().unwrap()
}
