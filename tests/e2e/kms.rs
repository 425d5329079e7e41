//! The filter in real Envoy with a `vault_transit` key source on a real OpenBao: the body is
//! paused while Envoy's `dispatch_http_call` goes to the KMS cluster, the upstream gets the
//! field sealed with an OpenBao data key (checked independently: OpenBao unwraps the
//! encrypted key, and the test's own AES-GCM decrypts the field), an allowed reader gets
//! it opened, and while OpenBao is down the client gets 503 with `Retry-After` and the
//! upstream none of the body; after OpenBao is back, requests succeed again. Envoy's
//! `/stats` counts the KMS calls and the failed ones. With a relay in front of OpenBao
//! that holds the call until the test's condition holds: concurrent requests wait for one shared call (Envoy's own count of requests
//! to the KMS cluster agrees), and when the client whose stream sent the call goes away,
//! Envoy cancels the call and the filter sends it again for the request still waiting.

use crate::client::{self, Request};
use crate::envoy::{self, Envoy, Filter, Listener, Protocol};
use crate::upstream::{Answer, Upstream};
use eventseal_testkit::openbao::{OpenBao, ROOT_TOKEN, decrypt_field, openbao_decrypt, orders_policy, wrapped_of};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Requests Envoy's listener `prefix` has in hand (`http.<prefix>.downstream_rq_active`).
fn active_requests(admin: SocketAddr, prefix: &str) -> u64 {
    let name = format!("http.{prefix}.downstream_rq_active");
    client::get(admin, &format!("/stats?filter=^{name}$"))
        .ok()
        .and_then(|r| envoy::stat_value(&String::from_utf8_lossy(&r.body), &name))
        .unwrap_or(0)
}

/// The KMS counters and the KMS cluster's request count from Envoy's `/stats`.
fn kms_stats(envoy: &Envoy) -> impl Fn(&str) -> u64 + use<> {
    let (_, stats) = envoy
        .get("/stats?filter=(eventseal_kms|cluster.openbao.upstream_rq_total)")
        .expect("the admin API answers");
    move |name: &str| envoy::stat_value(&stats, name).unwrap_or_else(|| panic!("no {name} in:\n{stats}"))
}

/// When a relay lets what Envoy sends to the KMS through.
type Release = Arc<dyn Fn() -> bool + Send + Sync>;

/// Waits until `release` says so (checked every few milliseconds, for at most 60 s).
fn hold_until(release: &Release) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !release() {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay's condition did not come true in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP relay in front of OpenBao that holds what Envoy sends until a condition of the
/// test holds, so that the KMS call is certainly still out while the test arranges what
/// must happen meanwhile: a wait on a condition, not on a guess of how slow the machine is.
struct HeldRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HeldRelay {
    fn start(to: SocketAddr, release: Release) -> HeldRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let (Ok(client), Ok(server)) = (client, TcpStream::connect(to)) else {
                    continue;
                };
                let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let release = Arc::clone(&release);
                std::thread::spawn(move || relay(client_in, server, Some(release)));
                std::thread::spawn(move || relay(server_in, client, None));
            }
        });
        HeldRelay { addr, stop }
    }
}

impl Drop for HeldRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, release: Option<Release>) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer) {
        if let Some(release) = &release {
            hold_until(release);
        }
        if to.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Envoy and the upstream for the `kms` listener, the KMS cluster going to `kms`.
fn envoy_with_kms(bao: &OpenBao, limits: &Value, kms: SocketAddr) -> (Envoy, Upstream) {
    let upstream = Upstream::start();
    let listener = Listener {
        name: "kms".to_owned(),
        protocol: Protocol::Http { jwt: None },
        filter: Some(Filter {
            policy: orders_policy(bao, limits).to_string(),
            keys: String::new(),
            env: vec![("BAO_TOKEN".to_owned(), ROOT_TOKEN.to_owned())],
            allow_on_headers_stop_iteration: false,
        }),
        tls: None,
        cluster: "upstream".to_owned(),
    };
    let clusters = [("upstream".to_owned(), upstream.addr), ("openbao".to_owned(), kms)];
    let envoy = Envoy::start(&envoy::bootstrap(&[listener], &clusters)).unwrap_or_else(|r| panic!("Envoy refused:\n{}", r.log));
    upstream.reset(ok());
    (envoy, upstream)
}

/// OpenBao with the Transit key `transit/orders`.
fn started_bao() -> OpenBao {
    let mut bao = OpenBao::start();
    bao.create_transit_key("transit", "orders");
    bao
}

fn event(n: u32) -> Value {
    json!({"type": "order.created", "id": format!("o-{n}"), "data": {"card": {"number": "4111111111111111", "n": n}}})
}

fn post(envoy: &Envoy, path: &str, body: &Value) -> client::Response {
    post_to(envoy.listener("kms"), path, body)
}

fn post_to(listener: SocketAddr, path: &str, body: &Value) -> client::Response {
    let body = body.to_string();
    let length = body.len().to_string();
    let headers: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway.example"),
        ("content-type", "application/json"),
        ("content-length", &length),
        ("x-client-id", "billing"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    client::send(
        listener,
        None,
        &Request {
            headers: &headers,
            body: Some(body.as_bytes()),
            chunks: 1,
        },
    )
    .expect("Envoy answers")
}

/// The body the upstream received for the one request since the last reset.
fn upstream_body(upstream: &Upstream) -> Value {
    let received = upstream.received(Duration::from_millis(30));
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].end_of_stream);
    serde_json::from_slice(&received[0].body).expect("JSON at the upstream")
}

fn ok() -> Answer {
    Answer {
        headers: vec![(":status".to_owned(), "200".to_owned())],
        body: Some(b"{}".to_vec()),
        chunks: 1,
    }
}

/// The client got 200; else the test fails with the response and Envoy's log.
fn assert_ok(response: &client::Response, envoy: &Envoy) {
    assert_eq!(
        response.status,
        Some(200),
        "{}\n{}",
        String::from_utf8_lossy(&response.body),
        envoy.log()
    );
}

/// The test's own unwrap (OpenBao's decrypt) and AES-256-GCM open of a KMS envelope.
fn decrypt_independently(bao: &OpenBao, envelope: &str) -> Value {
    decrypt_field(&openbao_decrypt(bao, &wrapped_of(envelope)), envelope)
}

#[test]
fn envoy_seals_and_opens_with_openbao_and_fails_closed_while_it_is_down() {
    let mut bao = started_bao();
    // Every seal needs the KMS, so a dead KMS shows at once; retry soon after.
    let limits = json!({"max_seals_per_key": 1, "backoff_initial_ms": 500, "backoff_max_ms": 1000, "timeout_ms": 2000});
    let (envoy, upstream) = envoy_with_kms(&bao, &limits, bao.addr());

    let response = post(&envoy, "/events/orders", &event(1));
    assert_ok(&response, &envoy);
    let sealed = upstream_body(&upstream);
    let card = sealed["data"]["card"].as_str().expect("sealed into one string");
    assert_eq!(decrypt_independently(&bao, card), event(1)["data"]["card"]);

    upstream.reset(ok());
    assert_eq!(post(&envoy, "/deliver/orders", &sealed).status, Some(200));
    assert_eq!(upstream_body(&upstream), event(1));

    bao.kill();
    upstream.reset(ok());
    let refused = post(&envoy, "/events/orders", &event(2));
    assert_eq!(refused.status, Some(503), "{}", String::from_utf8_lossy(&refused.body));
    assert!(
        refused
            .header("retry-after")
            .is_some_and(|s| s.parse::<u32>().is_ok_and(|s| s >= 1))
    );
    let problem: Value = serde_json::from_slice(&refused.body).expect("problem+json");
    assert_eq!(problem["type"], "urn:eventseal:problem:kms-unavailable");
    // The upstream saw at most the headers, then a reset: none of the body.
    let received = upstream.received(Duration::from_millis(100));
    assert!(received.iter().all(|r| r.body.is_empty() && !r.end_of_stream), "{received:?}");

    bao.restart();
    // Requests are refused until the filter's backoff ends (at most backoff_max_ms), then sealed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let response = loop {
        upstream.reset(ok());
        let response = post(&envoy, "/events/orders", &event(3));
        if response.status != Some(503) || std::time::Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(response.status, Some(200), "{}", String::from_utf8_lossy(&response.body));
    let sealed = upstream_body(&upstream);
    assert_eq!(
        decrypt_independently(&bao, sealed["data"]["card"].as_str().expect("sealed")),
        event(3)["data"]["card"]
    );
    // Envoy shows the KMS counters: the call made while OpenBao was down is a failure.
    let stat = kms_stats(&envoy);
    let (calls, failures) = (
        stat("wasmcustom.eventseal_kms_calls"),
        stat("wasmcustom.eventseal_kms_call_failures"),
    );
    assert!(failures >= 1 && calls >= failures + 2, "calls {calls}, failures {failures}");
    assert_eq!(stat("wasmcustom.eventseal_kms_calls_resent"), 0);
    let log = envoy.stop();
    assert!(!log.contains(ROOT_TOKEN), "the token is in Envoy's log");
}

#[test]
fn concurrent_requests_in_envoy_share_one_kms_call() {
    // The relay holds the KMS call until Envoy has all five requests in hand, so each of
    // them finds the call still out: one call then means single flight, not five requests
    // served one after another from a cached key.
    let admin = Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let five_waiting = {
        let admin = Arc::clone(&admin);
        move || admin.get().is_some_and(|&admin| active_requests(admin, "kms") >= 5)
    };
    let bao = started_bao();
    let relay = HeldRelay::start(bao.addr(), Arc::new(five_waiting));
    let (envoy, upstream) = envoy_with_kms(&bao, &json!({}), relay.addr);
    admin.set(envoy.admin).expect("set once");
    let listener = envoy.listener("kms");
    let clients: Vec<_> = (0..5)
        .map(|n| std::thread::spawn(move || post_to(listener, "/events/orders", &event(n))))
        .collect();
    for client in clients {
        let response = client.join().expect("the client thread");
        assert_eq!(response.status, Some(200), "{}", String::from_utf8_lossy(&response.body));
    }
    let received = upstream.received(Duration::from_millis(30));
    assert_eq!(received.len(), 5);
    let mut wrapped = std::collections::BTreeSet::new();
    for request in &received {
        let sealed: Value = serde_json::from_slice(&request.body).expect("JSON at the upstream");
        let card = sealed["data"]["card"].as_str().expect("sealed");
        let n: u32 = sealed["id"]
            .as_str()
            .and_then(|id| id.strip_prefix("o-"))
            .and_then(|n| n.parse().ok())
            .expect("an event number");
        assert_eq!(decrypt_independently(&bao, card), event(n)["data"]["card"]);
        wrapped.insert(wrapped_of(card));
    }
    assert_eq!(wrapped.len(), 1, "all five sealed under one data key");
    // Envoy's own count of requests to the KMS cluster agrees with the filter's.
    let stat = kms_stats(&envoy);
    assert_eq!(stat("cluster.openbao.upstream_rq_total"), 1);
    assert_eq!(stat("wasmcustom.eventseal_kms_calls"), 1);
}

#[test]
fn in_envoy_a_kms_call_whose_client_went_away_is_sent_again_for_the_others() {
    // The relay holds the KMS call until the first client has gone away, so the call is
    // certainly still out when Envoy cancels it, however slow the machine.
    let admin = Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let went_away = Arc::new(AtomicBool::new(false));
    let released = {
        let (admin, went_away) = (Arc::clone(&admin), Arc::clone(&went_away));
        move || went_away.load(Ordering::SeqCst) && admin.get().is_some_and(|&admin| active_requests(admin, "kms") <= 1)
    };
    let bao = started_bao();
    let relay = HeldRelay::start(bao.addr(), Arc::new(released));
    let (envoy, upstream) = envoy_with_kms(&bao, &json!({}), relay.addr);
    admin.set(envoy.admin).expect("set once");
    let listener = envoy.listener("kms");
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} did not happen in 60 s:\n{}",
                envoy.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // The first client sends its event, so its stream sends the datakey call, and goes
    // away while the call is out: Envoy resets the stream and cancels the call. Written by
    // hand on purpose: a client that sends a request and vanishes without reading it.
    let body = event(1).to_string();
    let mut gone = TcpStream::connect(listener).expect("connect to Envoy");
    let head = format!(
        "POST /events/orders HTTP/1.1\r\nhost: gateway.example\r\ncontent-type: application/json\r\n\
         x-client-id: billing\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    gone.write_all(head.as_bytes())
        .and_then(|()| gone.write_all(body.as_bytes()))
        .expect("send");
    wait_for("the KMS call", &|| kms_stats(&envoy)("wasmcustom.eventseal_kms_calls") >= 1);
    let waiting = std::thread::spawn(move || post_to(listener, "/events/orders", &event(2)));
    wait_for("the second request", &|| active_requests(envoy.admin, "kms") >= 2);
    drop(gone);
    went_away.store(true, Ordering::SeqCst);
    let response = waiting.join().expect("the client thread");
    assert_ok(&response, &envoy);
    // The stream that went away reached the upstream as headers only (then a reset).
    let received = upstream.received(Duration::from_millis(30));
    let (complete, cut): (Vec<_>, Vec<_>) = received.iter().partition(|r| r.end_of_stream);
    assert!(cut.iter().all(|r| r.body.is_empty()), "{received:?}");
    assert_eq!(complete.len(), 1, "{received:?}");
    let sealed: Value = serde_json::from_slice(&complete[0].body).expect("JSON at the upstream");
    assert_eq!(sealed["id"], "o-2");
    assert_eq!(
        decrypt_independently(&bao, sealed["data"]["card"].as_str().expect("sealed")),
        event(2)["data"]["card"]
    );
    let stat = kms_stats(&envoy);
    assert_eq!(stat("wasmcustom.eventseal_kms_calls_resent"), 1);
    assert_eq!(stat("wasmcustom.eventseal_kms_call_failures"), 0);
    assert_eq!(stat("wasmcustom.eventseal_kms_calls"), 2);
    assert_eq!(stat("cluster.openbao.upstream_rq_total"), 2);
}
