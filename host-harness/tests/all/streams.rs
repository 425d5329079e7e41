//! Envoy's HTTP stream rules: buffering, pausing, continuing, local replies, resets, and
//! which header maps are reachable when.

use eventseal_harness::{HttpCallResponse, HttpOutcome, PluginConfig, StreamState, Upstream};

use crate::{probe_plugin, probe_request};

fn request_headers(scenario: &str) -> eventseal_harness::Headers {
    probe_request(scenario).request_headers
}

#[test]
fn a_paused_body_accumulates_and_the_next_callback_sees_all_of_it() {
    let plugin = probe_plugin(PluginConfig::new());
    let outcome = plugin
        .run_http(probe_request("buffer-until-end").request_chunks(["ab", "cd", "ef"]))
        .unwrap();
    let sizes: Vec<String> = plugin
        .logs()
        .into_iter()
        .filter(|l| l.message.starts_with("probe body"))
        .map(|l| l.message)
        .collect();
    assert_eq!(
        sizes,
        [
            "probe body size=2 end=false headers=BadArgument",
            "probe body size=4 end=false headers=BadArgument",
            "probe body size=6 end=true headers=BadArgument"
        ]
    );
    assert_eq!(outcome.forwarded_request().unwrap().body, b"abcdef");
}

#[test]
fn a_continued_body_chunk_is_forwarded_at_once() {
    let plugin = probe_plugin(PluginConfig::new());
    let mut stream = plugin.http_stream().unwrap();
    assert_eq!(
        stream.send_request_headers(request_headers("none"), false).unwrap(),
        StreamState::Continued
    );
    assert_eq!(stream.send_request_body("ab", false).unwrap(), StreamState::Continued);
    assert_eq!(stream.upstream_request().body, b"ab");
    assert!(!stream.upstream_request().end_of_stream);
    stream.send_request_body("cd", true).unwrap();
    assert!(stream.upstream_request().end_of_stream);
    assert_eq!(stream.request_state(), StreamState::Continued);
}

#[test]
fn paused_headers_hold_body_and_trailers_until_continue() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::manual()));
    let mut stream = plugin.http_stream().unwrap();
    assert_eq!(
        stream.send_request_headers(request_headers("http-call"), false).unwrap(),
        StreamState::Paused
    );
    assert_eq!(stream.send_request_body("ab", false).unwrap(), StreamState::Paused);
    assert_eq!(stream.send_request_body("cd", false).unwrap(), StreamState::Paused);
    assert_eq!(stream.send_request_trailers([("x-t", "1")]).unwrap(), StreamState::Paused);
    assert!(!plugin.logged("probe body"), "Envoy holds data while headers are stopped");
    assert_eq!(stream.upstream_request().headers, None);
    let token = plugin.pending_http_calls()[0].token;
    plugin.respond_http_call(token, HttpCallResponse::new(200)).unwrap();
    assert!(
        plugin.logged("probe body size=4 end=false"),
        "the held body arrives in one callback"
    );
    assert!(plugin.logged("probe trailers count=1"));
    let request = stream.upstream_request();
    assert_eq!(request.body, b"abcd");
    assert_eq!(request.header("x-probe"), Some("http-call"));
    assert!(request.end_of_stream);
    assert_eq!(stream.request_state(), StreamState::Continued);
    assert!(
        matches!(stream.finish().unwrap(), HttpOutcome::Paused { .. }),
        "no response was sent"
    );
}

#[test]
fn headers_paused_with_end_of_stream_forward_the_end_on_continue() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::handler(|_| HttpCallResponse::new(200).into())));
    let outcome = plugin.run_http(probe_request("http-call")).unwrap();
    let request = outcome.forwarded_request().expect("forwarded after the call answered");
    assert!(request.end_of_stream && request.body.is_empty());
}

#[test]
fn a_local_reply_from_the_request_path_runs_through_the_filters_response_callbacks() {
    let plugin = probe_plugin(PluginConfig::new());
    let outcome = plugin.run_http(probe_request("local").request_body("ignored")).unwrap();
    let reply = outcome.local_reply().expect("local reply");
    assert_eq!(reply.status, 418);
    assert_eq!(reply.body_text(), "short and stout");
    assert_eq!(reply.header("x-local"), Some("yes"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.header("content-length"), Some("15"));
    assert_eq!(reply.header("x-probe-saw-response"), Some("418"));
    assert!(
        !plugin.logged("probe body"),
        "the request body never reaches the filter after a local reply"
    );
}

#[test]
fn a_local_reply_before_the_response_is_forwarded_replaces_it() {
    let plugin = probe_plugin(PluginConfig::new());
    let outcome = plugin
        .run_http(probe_request("response-local").response_body("upstream body"))
        .unwrap();
    let reply = outcome.local_reply().expect("local reply");
    assert_eq!((reply.status, reply.body_text().as_str()), (502, "replaced by probe"));
    assert!(!plugin.logged("probe response body"), "later callbacks are not called");
}

#[test]
fn a_local_reply_after_the_response_headers_went_out_resets_the_stream() {
    let plugin = probe_plugin(PluginConfig::new());
    let outcome = plugin
        .run_http(probe_request("response-body-local").response_body("upstream body"))
        .unwrap();
    assert!(matches!(outcome, HttpOutcome::Reset { .. }), "{outcome:?}");
}

#[test]
fn close_stream_resets() {
    let plugin = probe_plugin(PluginConfig::new());
    let mut stream = plugin.http_stream().unwrap();
    assert_eq!(
        stream.send_request_headers(request_headers("reset"), true).unwrap(),
        StreamState::Reset
    );
    assert_eq!(
        stream.finish().unwrap(),
        HttpOutcome::Reset {
            details: "wasm_close_stream".to_owned()
        }
    );
}

#[test]
fn on_log_reads_the_final_headers_but_cannot_change_them() {
    let plugin = probe_plugin(PluginConfig::new());
    let outcome = plugin
        .run_http(probe_request("none").response_headers([(":status", "201")]))
        .unwrap();
    assert_eq!(outcome.forwarded_response().unwrap().header("x-probe-saw-response"), Some("201"));
    let line = plugin
        .logs()
        .into_iter()
        .find(|l| l.message.starts_with("probe access-log:"))
        .unwrap()
        .message;
    assert_eq!(
        line,
        "probe access-log: request_header=Ok:none missing=NotFound add=BadArgument response_status=Ok:201"
    );
}

#[test]
fn steps_after_a_local_reply_do_not_reach_the_filter() {
    let plugin = probe_plugin(PluginConfig::new());
    let mut stream = plugin.http_stream().unwrap();
    assert_eq!(
        stream.send_request_headers(request_headers("local"), false).unwrap(),
        StreamState::LocalReply
    );
    assert_eq!(stream.send_request_body("x", true).unwrap(), StreamState::LocalReply);
    assert!(!plugin.logged("probe body"));
    assert_eq!(stream.local_reply().unwrap().status, 418);
}

#[test]
fn streams_interleave_and_misuse_is_an_error() {
    let plugin = probe_plugin(PluginConfig::new());
    let mut first = plugin.http_stream().unwrap();
    let mut second = plugin.http_stream().unwrap();
    assert_ne!(first.id(), second.id());
    first.send_request_headers(request_headers("none"), false).unwrap();
    second.send_request_headers(request_headers("none"), true).unwrap();
    first.send_request_body("1", true).unwrap();
    assert!(second.send_request_body("late", true).is_err(), "body after end of stream");
    assert!(first.send_request_headers(request_headers("none"), true).is_err(), "headers twice");
    assert!(matches!(first.finish().unwrap(), HttpOutcome::Paused { .. }));
}
