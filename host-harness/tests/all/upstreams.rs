//! `proxy_http_call`: clusters answered by closures, by real HTTP servers, by the test, and
//! Envoy's answers for failures.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use eventseal_harness::{HttpCallReply, HttpCallResponse, PluginConfig, Upstream};

use crate::{field, probe_plugin, probe_request, result};

fn call_response(plugin: &eventseal_harness::Plugin) -> String {
    result(plugin, "call-response")
}

#[test]
fn http_call_argument_errors() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::manual()));
    plugin.run_http(probe_request("http-call")).unwrap();
    let line = result(&plugin, "http-call");
    assert_eq!(field(&line, "unknown_cluster"), "BadArgument");
    assert_eq!(field(&line, "no_authority"), "BadArgument");
    assert!(field(&line, "call").starts_with("Ok("));
}

#[test]
fn a_closure_upstream_answers_and_the_response_is_readable_in_the_callback() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let upstream = Upstream::handler(move |request| {
        record.lock().unwrap().push(request.clone());
        HttpCallResponse::new(201)
            .with_header("X-Reply", "1")
            .with_body("pong pong")
            .with_trailer("x-trailer", "t")
            .into()
    });
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", upstream));
    let outcome = plugin.run_http(probe_request("http-call")).unwrap();
    assert!(outcome.forwarded_request().is_some(), "the filter resumed after the answer");
    let line = call_response(&plugin);
    assert_eq!(field(&line, "headers"), "2");
    assert_eq!(field(&line, "trailers"), "1");
    assert_eq!(field(&line, "status"), "201");
    assert_eq!(field(&line, "body"), "pong_pong");
    assert_eq!(field(&line, "trailer"), "t");
    let seen = seen.lock().unwrap();
    assert_eq!(
        (seen[0].method(), seen[0].path(), seen[0].authority()),
        ("POST", "/echo", "echo.local")
    );
    assert_eq!(seen[0].body, b"ping");
    assert_eq!(seen[0].timeout, Some(Duration::from_secs(1)));
    assert_eq!(plugin.http_calls().len(), 1);
}

#[test]
fn a_manual_upstream_waits_for_the_test() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::manual()));
    let mut stream = plugin.http_stream().unwrap();
    stream
        .send_request_headers(probe_request("http-call").request_headers, true)
        .unwrap();
    let pending = plugin.pending_http_calls();
    assert_eq!(pending.len(), 1);
    assert!(
        plugin
            .respond_http_call(pending[0].token + 100, HttpCallResponse::new(200))
            .is_err()
    );
    plugin.respond_http_call(pending[0].token, HttpCallResponse::new(204)).unwrap();
    assert_eq!(field(&call_response(&plugin), "status"), "204");
    assert!(plugin.pending_http_calls().is_empty());
    assert!(stream.upstream_request().end_of_stream);
}

#[test]
fn a_call_is_cancelled_with_the_stream_that_made_it() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::manual()));
    let mut ending = plugin.http_stream().unwrap();
    ending
        .send_request_headers(probe_request("http-call").request_headers, true)
        .unwrap();
    let mut staying = plugin.http_stream().unwrap();
    staying
        .send_request_headers(probe_request("http-call").request_headers, true)
        .unwrap();
    let tokens: Vec<u32> = plugin.pending_http_calls().iter().map(|c| c.token).collect();
    assert_eq!(tokens.len(), 2);
    ending.finish().unwrap();
    let left: Vec<u32> = plugin.pending_http_calls().iter().map(|c| c.token).collect();
    assert_eq!(left, [tokens[1]], "Envoy cancels a deleted context's calls, and only those");
    assert!(plugin.respond_http_call(tokens[0], HttpCallResponse::new(200)).is_err());
    plugin.respond_http_call(tokens[1], HttpCallResponse::new(204)).unwrap();
    assert!(staying.upstream_request().end_of_stream);
}

#[test]
fn a_manual_call_times_out_on_the_virtual_clock_with_envoys_504() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::manual()));
    let mut stream = plugin.http_stream().unwrap();
    let mut headers = probe_request("http-call").request_headers;
    headers.add("x-timeout-ms", "250");
    stream.send_request_headers(headers, true).unwrap();
    plugin.advance_time(Duration::from_millis(249)).unwrap();
    assert_eq!(plugin.pending_http_calls().len(), 1);
    plugin.advance_time(Duration::from_millis(1)).unwrap();
    assert!(plugin.pending_http_calls().is_empty());
    let line = call_response(&plugin);
    assert_eq!(field(&line, "status"), "504");
    assert_eq!(field(&line, "body"), "upstream_request_timeout");
}

#[test]
fn a_reset_call_delivers_no_headers_and_a_broken_connection_status() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::handler(|_| HttpCallReply::Reset)));
    plugin.run_http(probe_request("http-call")).unwrap();
    let line = call_response(&plugin);
    assert_eq!(field(&line, "headers"), "0");
    assert_eq!(field(&line, "status"), "none");
    assert_eq!(field(&line, "body"), "none");
    assert_eq!(field(&line, "get_status"), "11:reset");
}

#[test]
fn an_unreachable_cluster_answers_with_envoys_503() {
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::unreachable()));
    plugin.run_http(probe_request("http-call")).unwrap();
    let line = call_response(&plugin);
    assert_eq!(field(&line, "status"), "503");
    assert!(field(&line, "body").starts_with("upstream_connect_error"));
}

/// Serves one connection with `reply` after reading the request, once `release` (if any)
/// says so; returns the request text.
fn serve_once(reply: &'static str, release: Option<mpsc::Receiver<()>>) -> (String, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") || !request.ends_with(b"ping") {
            let n = socket.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        if let Some(release) = release {
            let _ = release.recv();
        }
        let _ = socket.write_all(reply.as_bytes());
        String::from_utf8_lossy(&request).into_owned()
    });
    (address, handle)
}

#[test]
fn a_real_http_endpoint_on_loopback() {
    let (address, server) = serve_once(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n4\r\nreal\r\n5\r\n_body\r\n0\r\n\r\n",
        None,
    );
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::http(address)));
    plugin.run_http(probe_request("http-call")).unwrap();
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /echo HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains("host: echo.local\r\n") && request.contains("content-length: 4\r\n"),
        "{request}"
    );
    let line = call_response(&plugin);
    assert_eq!(field(&line, "status"), "200");
    assert_eq!(field(&line, "body"), "real_body");
}

#[test]
fn a_slow_real_endpoint_times_out_with_504() {
    // The endpoint answers only after the call has timed out, however slow the machine.
    let (release, held) = mpsc::channel();
    let (address, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Some(held));
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::http(address)));
    let mut exchange = probe_request("http-call");
    exchange.request_headers.add("x-timeout-ms", "100");
    plugin.run_http(exchange).unwrap();
    assert_eq!(field(&call_response(&plugin), "status"), "504");
    release.send(()).unwrap();
    server.join().unwrap();
}

#[test]
fn a_refused_real_endpoint_answers_503() {
    // Bound but not listening: connections are refused, and the port stays ours for the test.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap().to_string();
    let plugin = probe_plugin(PluginConfig::new().upstream("echo", Upstream::http(address)));
    plugin.run_http(probe_request("http-call")).unwrap();
    assert_eq!(field(&call_response(&plugin), "status"), "503");
}
