//! Audit delivery: the filter ships its records, batched, to a real HTTP collector on
//! loopback; with the collector down it keeps serving, keeps the records in the proxy log,
//! and counts what it could not deliver.

use crate::module;
use eventseal_core::{Keyring, verify_audit_log};
use eventseal_harness::{Headers, HttpOutcome, Plugin, PluginConfig, Upstream};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One POST the collector received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line's path.
    pub path: String,
    /// `content-type`.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// A tiny HTTP/1.1 collector on loopback: records every request body and answers 200.
pub struct Collector {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Listens on a free loopback port.
    pub fn start() -> Collector {
        Collector::listen("127.0.0.1:0".parse().expect("an address"), Arc::default())
    }

    fn listen(address: SocketAddr, received: Arc<Mutex<Vec<Received>>>) -> Collector {
        let listener = TcpListener::bind(address).expect("the collector binds on loopback");
        let address = listener.local_addr().expect("a local address");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                for connection in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(mut connection) = connection
                        && let Some(request) = read_request(&mut connection)
                    {
                        received.lock().expect("not poisoned").push(request);
                        let _ = connection.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    }
                }
            })
        };
        Collector {
            address,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// `host:port`, for [`Upstream::http`].
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// Closes the listening socket: connections are refused from now on.
    pub fn stop(mut self) -> (SocketAddr, Arc<Mutex<Vec<Received>>>) {
        self.shutdown();
        (self.address, Arc::clone(&self.received))
    }

    /// Listens again on the same address, keeping what was received.
    pub fn restart((address, received): (SocketAddr, Arc<Mutex<Vec<Received>>>)) -> Collector {
        Collector::listen(address, received)
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and drops the listener.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_request(connection: &mut TcpStream) -> Option<Received> {
    connection.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = connection.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length")?.parse().ok()?;
    let mut body = buffer[end + 4..].to_vec();
    while body.len() < length {
        let n = connection.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        path: head.split(' ').nth(1).unwrap_or_default().to_owned(),
        content_type: header("content-type").unwrap_or_default(),
        body: String::from_utf8(body).ok()?,
    })
}

const SEAL_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
const AUDIT_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

fn keys() -> Value {
    json!({"keys": [
        {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": SEAL_KEY, "status": "primary"},
        {"kty": "oct", "kid": "a1", "alg": "HS256", "use": "audit", "k": AUDIT_KEY, "status": "primary"},
    ]})
}

fn filter(collector: Upstream, batch: usize, buffer: usize) -> Plugin {
    let policy = json!({
        "audit": {
            "collector": {"cluster": "audit", "path": "/v1/audit", "authority": "audit-collector"},
            "batch_records": batch, "buffer_records": buffer, "flush_interval_ms": 1000, "timeout_ms": 2000
        },
        "rules": [{"name": "orders", "match": {"path": "/orders"}, "seal": {"fields": ["/card"]}}]
    });
    module()
        .plugin(
            PluginConfig::new()
                .configuration(policy.to_string())
                .env("EVENTSEAL_KEYS", keys().to_string())
                .upstream("audit", collector),
        )
        .expect("the filter starts")
}

/// One sealing decision; returns the body the upstream received.
fn send(plugin: &Plugin, i: usize) -> String {
    let headers: Headers = [
        (":method", "POST"),
        (":path", "/orders"),
        (":authority", "gateway.example"),
        ("content-type", "application/json"),
    ]
    .into();
    let body = format!(r#"{{"id":"e{i}","card":"4111 1111 1111 1111"}}"#);
    let mut stream = plugin.http_stream().expect("a stream");
    stream.send_request_headers(headers, false).expect("headers");
    stream.send_request_body(body, true).expect("body");
    let forwarded = stream.upstream_request().body_text();
    match stream.finish().expect("the stream ends") {
        HttpOutcome::LocalReply(reply) => panic!("refused: {} {}", reply.status, reply.body_text()),
        _ => forwarded,
    }
}

fn metric(plugin: &Plugin, name: &str) -> u64 {
    plugin.metric(name).map_or(0, |m| m.value())
}

fn records_in_log(plugin: &Plugin) -> Vec<String> {
    plugin
        .logs()
        .into_iter()
        .map(|l| l.message)
        .filter(|l| l.starts_with("{\"audit\":1,"))
        .collect()
}

fn ring() -> Keyring {
    Keyring::from_value(&keys(), "").expect("a valid keyring")
}

#[test]
fn records_reach_the_collector_in_batches() {
    let collector = Collector::start();
    let plugin = filter(Upstream::http(collector.address()), 3, 100);
    assert_eq!(plugin.tick_period(), Some(Duration::from_millis(100)));
    send(&plugin, 0);
    send(&plugin, 1);
    plugin.advance_time(Duration::from_millis(300)).expect("ticks");
    assert!(collector.received().is_empty(), "two records wait for a full batch or the interval");
    send(&plugin, 2);
    plugin.advance_time(Duration::from_millis(100)).expect("a tick");
    let received = collector.received();
    assert_eq!(received.len(), 1, "a full batch goes at the next tick: {received:#?}");
    assert_eq!(received[0].path, "/v1/audit");
    assert_eq!(received[0].content_type, "application/x-ndjson");
    let log = records_in_log(&plugin);
    assert_eq!(received[0].body, log.join("\n"), "the batch is the log's records, one per line");

    send(&plugin, 3);
    plugin.advance_time(Duration::from_millis(500)).expect("ticks");
    assert_eq!(collector.received().len(), 1, "a partial batch waits for the flush interval");
    plugin.advance_time(Duration::from_millis(600)).expect("ticks");
    let received = collector.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert_eq!(received[1].body, records_in_log(&plugin)[3]);

    let shipped: Vec<&str> = received.iter().map(|r| r.body.as_str()).collect();
    let summary = verify_audit_log(&shipped.join("\n"), &ring(), true).expect("the collector's copy verifies");
    assert_eq!(summary.records, 4);
    assert!(!shipped.concat().contains("4111 1111"), "no plaintext in the shipped records");
    assert_eq!(
        [
            metric(&plugin, "eventseal_audit_records"),
            metric(&plugin, "eventseal_audit_delivered"),
            metric(&plugin, "eventseal_audit_undelivered")
        ],
        [4, 4, 0]
    );
}

#[test]
fn with_the_collector_down_the_filter_serves_keeps_the_log_and_counts_the_undelivered() {
    let down = Collector::start().stop();
    let plugin = filter(Upstream::http(down.0.to_string()), 2, 4);
    for i in 0..6 {
        let forwarded = send(&plugin, i);
        assert!(
            forwarded.contains(&format!("\"id\":\"e{i}\"")) && !forwarded.contains("4111 1111"),
            "the filter keeps serving: {forwarded}"
        );
    }
    // Attempts fail (connection refused) and back off; nothing is delivered.
    plugin.advance_time(Duration::from_secs(10)).expect("ticks");
    let attempts = plugin.http_calls().len();
    assert!((2..=5).contains(&attempts), "retries back off: {attempts} attempts in 10 s");
    assert!(plugin.http_calls().iter().all(|c| c.upstream == "audit" && c.method() == "POST"));
    assert_eq!(metric(&plugin, "eventseal_audit_records"), 6);
    assert_eq!(metric(&plugin, "eventseal_audit_delivered"), 0);
    assert_eq!(metric(&plugin, "eventseal_audit_undelivered"), 2, "6 records, room for 4");
    assert_eq!(
        metric(&plugin, "eventseal_audit_buffered"),
        4,
        "the buffer holds its bound, and /stats says so"
    );
    let warnings: Vec<String> = plugin
        .logs()
        .into_iter()
        .map(|l| l.message)
        .filter(|l| l.contains("audit collector") && l.contains("dropping"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning per episode: {warnings:#?}");
    let log = records_in_log(&plugin);
    assert_eq!(
        verify_audit_log(&log.join("\n"), &ring(), true)
            .expect("the log is complete")
            .records,
        6,
        "every record stays in the proxy log"
    );

    // The collector comes back: the buffered records (the newest four) are delivered.
    let collector = Collector::restart(down);
    plugin.advance_time(Duration::from_secs(120)).expect("ticks");
    let shipped: Vec<String> = collector.received().into_iter().map(|r| r.body).collect();
    assert_eq!(shipped.join("\n"), log[2..].join("\n"));
    assert_eq!(metric(&plugin, "eventseal_audit_delivered"), 4);
    assert_eq!(metric(&plugin, "eventseal_audit_undelivered"), 2);
    assert_eq!(metric(&plugin, "eventseal_audit_buffered"), 0);
}

#[test]
fn an_unreachable_cluster_and_an_erroring_collector_keep_the_records() {
    let plugin = filter(Upstream::unreachable(), 1, 10);
    send(&plugin, 0);
    plugin.advance_time(Duration::from_secs(5)).expect("ticks");
    assert!(!plugin.http_calls().is_empty());
    assert_eq!(metric(&plugin, "eventseal_audit_delivered"), 0);
    assert_eq!(
        metric(&plugin, "eventseal_audit_undelivered"),
        0,
        "within the bound nothing is dropped"
    );

    let failing = Arc::new(AtomicBool::new(true));
    let answers = Arc::clone(&failing);
    let plugin = filter(
        Upstream::handler(move |_| {
            let status = if answers.load(Ordering::SeqCst) { 500 } else { 204 };
            eventseal_harness::HttpCallResponse::new(status).into()
        }),
        1,
        10,
    );
    send(&plugin, 0);
    plugin.advance_time(Duration::from_secs(5)).expect("ticks");
    assert_eq!(metric(&plugin, "eventseal_audit_delivered"), 0, "a 500 is not a delivery");
    failing.store(false, Ordering::SeqCst);
    plugin.advance_time(Duration::from_secs(120)).expect("ticks");
    assert_eq!(metric(&plugin, "eventseal_audit_delivered"), 1);
}

#[test]
fn at_shutdown_the_buffered_records_reach_the_collector_before_the_vm_ends() {
    let collector = Collector::start();
    let plugin = filter(Upstream::http(collector.address()), 2, 100);
    for i in 0..5 {
        send(&plugin, i);
    }
    assert!(collector.received().is_empty(), "no tick yet: everything is buffered");
    assert!(plugin.shutdown().expect("no trap"), "the VM ends once the collector has everything");
    let shipped: Vec<String> = collector.received().into_iter().map(|r| r.body).collect();
    assert_eq!(shipped.len(), 3, "batches of at most 2: {shipped:#?}");
    assert_eq!(shipped.join("\n"), records_in_log(&plugin).join("\n"));
    assert_eq!(
        verify_audit_log(&shipped.join("\n"), &ring(), true)
            .expect("the collector's copy verifies")
            .records,
        5
    );
    assert_eq!(
        [
            metric(&plugin, "eventseal_audit_delivered"),
            metric(&plugin, "eventseal_audit_undelivered")
        ],
        [5, 0]
    );
}

#[test]
fn at_shutdown_a_failing_collector_gets_one_attempt_and_the_rest_is_counted() {
    let down = Collector::start().stop();
    let plugin = filter(Upstream::http(down.0.to_string()), 2, 100);
    for i in 0..3 {
        send(&plugin, i);
    }
    assert!(plugin.shutdown().expect("no trap"), "a failing collector does not hold the VM");
    assert_eq!(plugin.http_calls().len(), 1, "one attempt, no retry at shutdown");
    assert_eq!(
        [
            metric(&plugin, "eventseal_audit_delivered"),
            metric(&plugin, "eventseal_audit_undelivered")
        ],
        [0, 3]
    );
    let warning = plugin
        .logs()
        .into_iter()
        .map(|l| l.message)
        .find(|l| l.contains("shutting down"))
        .expect("a warning says what the collector did not take");
    assert!(warning.contains("3 audit record(s)"), "{warning}");
    assert_eq!(records_in_log(&plugin).len(), 3, "every record stays in the proxy log");
}
