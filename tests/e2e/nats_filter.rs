//! The filter as a NATS gateway in front of a real nats-server, with real `async-nats`
//! clients and raw sockets: every test runs twice, through Envoy 1.40 (the network filter
//! before `tcp_proxy`, clients with mTLS and TLS first) and through the harness's TCP mode
//! (`eventseal_testkit::gateway`, the same module on loopback sockets, one listener per
//! client identity).
//!
//! A tap subscriber connected straight to nats-server sees what the gateway let through;
//! the envelopes it sees are opened by the tests' own JWE code (`jose`), not by core.

use crate::envoy::Filter;
use crate::jose;
use crate::nats::{Gateway as EnvoyGateway, connect_plain, round_trip};
use async_nats::{Client, Event, HeaderMap, Subscriber};
use eventseal_harness::PluginConfig;
use eventseal_testkit::gateway::HarnessGateway;
use eventseal_testkit::nats::{NatsServer, RawClient};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a message may take to arrive.
const WAIT: Duration = Duration::from_secs(15);

const PRODUCER: &str = "spiffe://example.org/ns/shop/sa/checkout";
const READER: &str = "spiffe://example.org/ns/billing/sa/invoicer";
const OTHER: &str = "spiffe://example.org/ns/analytics/sa/reports";

const SUBJECT: &str = "orders.acme.created";
/// The Standard Webhooks secret of `hooks.>` (base64url of `HOOK_KEY`).
const HOOK_SECRET: &str = "aG9va3MtYXJlLXNpZ25lZC13aXRoLXRoaXMtMzJieXRlcw";
const HOOK_KEY: &[u8] = b"hooks-are-signed-with-this-32bytes";
const SEALED: [&str; 3] = ["/data/card/number", "/data/customer/email", "/data/items/*/price"];

fn keys() -> Value {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS RNG");
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    json!({"keys": [
        {"kty": "oct", "kid": "orders-1", "alg": "A256GCM", "k": k, "status": "primary"},
        {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": HOOK_SECRET, "status": "primary"},
    ]})
}

fn policy() -> Value {
    let context = json!({"tenant": {"subject_token": 2}, "type": {"body": "/type"}});
    json!({
        "protocol": "nats",
        "keys": {"env": "EVENTSEAL_KEYS"},
        "principal": {"source": "mtls"},
        "rules": [
            {"name": "orders-publish", "match": {"subject": "orders.*.created"}, "apply_to": "publish",
             "producers": ["spiffe://example.org/ns/shop/*"], "context": context, "seal": {"fields": SEALED}},
            {"name": "orders-delivery", "match": {"subject": "orders.*.created"}, "apply_to": "delivery",
             "context": context, "open": {"fields": SEALED, "readers": ["spiffe://example.org/ns/billing/*"]}},
            {"name": "hooks", "match": {"subject": "hooks.>"}, "verify": true},
        ],
    })
}

/// An order event of about `size` bytes (the note pads it), numbered `n`.
fn event(n: usize, size: usize) -> Vec<u8> {
    let mut event = json!({
        "specversion": "1.0", "id": format!("o-{n}"), "type": "com.example.order.created",
        "data": {"n": n, "card": {"number": "4111111111111111", "brand": "visa"},
                 "customer": {"email": "ada@example.com", "tier": "gold"},
                 "items": [{"sku": "A-1", "price": 1250}, {"sku": "B-2", "price": 399}], "note": ""},
    });
    let base = serde_json::to_vec(&event).expect("JSON values serialize").len();
    event["data"]["note"] = json!("x".repeat(size.saturating_sub(base)));
    serde_json::to_vec(&event).expect("JSON values serialize")
}

/// Which gateway runs the filter.
#[derive(Debug, Clone, Copy)]
enum Host {
    Envoy,
    Harness,
}

/// nats-server behind the filter, in one host.
struct Under {
    keys: Value,
    envoy: Option<EnvoyGateway>,
    harness: Option<(HarnessGateway, NatsServer)>,
}

impl Under {
    fn start(host: Host, jetstream: bool) -> Under {
        let server = if jetstream {
            NatsServer::start_jetstream()
        } else {
            NatsServer::start()
        };
        let (keys, policy) = (keys(), policy());
        match host {
            Host::Envoy => {
                let filter = Filter {
                    policy: policy.to_string(),
                    keys: keys.to_string(),
                    env: Vec::new(),
                    allow_on_headers_stop_iteration: false,
                };
                Under {
                    keys,
                    envoy: Some(EnvoyGateway::start_in_front_of(server, Some(filter))),
                    harness: None,
                }
            }
            Host::Harness => {
                let config = PluginConfig::new()
                    .configuration(policy.to_string())
                    .env("EVENTSEAL_KEYS", keys.to_string());
                let plugin = crate::module().plugin(config).expect("the filter starts in the harness");
                let gateway = HarnessGateway::start(plugin, server.addr(), &[Some(PRODUCER), Some(READER), Some(OTHER)]);
                Under {
                    keys,
                    envoy: None,
                    harness: Some((gateway, server)),
                }
            }
        }
    }

    fn server(&self) -> &NatsServer {
        match (&self.envoy, &self.harness) {
            (Some(envoy), _) => &envoy.server,
            (_, Some((_, server))) => server,
            _ => unreachable!("one host runs"),
        }
    }

    /// What went wrong, for a failing assertion: the host's log.
    fn log(&self) -> String {
        match (&self.envoy, &self.harness) {
            (Some(envoy), _) => envoy.envoy.log(),
            (_, Some((gateway, _))) => gateway.plugin().logs().into_iter().map(|l| l.message + "\n").collect(),
            _ => String::new(),
        }
    }

    /// A client through the gateway as `identity`, whose server errors arrive on the channel.
    async fn client(&self, identity: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
        let (errors, received) = mpsc::unbounded_channel();
        let options = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .event_callback(move |event| {
                let errors = errors.clone();
                async move {
                    if let Event::ServerError(error) = event {
                        let _ = errors.send(error.to_string());
                    }
                }
            });
        let client = match (&self.envoy, &self.harness) {
            (Some(envoy), _) => {
                let tls = envoy.identity(identity).rustls_config().expect("a client TLS config");
                options
                    .tls_first()
                    .tls_client_config(tls)
                    .connect(format!("tls://{}", envoy.addr()))
                    .await
            }
            (_, Some((gateway, _))) => options.connect(format!("nats://{}", gateway.addr(Some(identity)))).await,
            _ => unreachable!("one host runs"),
        };
        (
            client.unwrap_or_else(|e| panic!("connect as {identity}: {e}\n{}", self.log())),
            received,
        )
    }

    /// A client straight to nats-server, past the gateway.
    async fn tap(&self) -> Client {
        connect_plain(self.server().addr()).await.expect("connect to nats-server")
    }

    /// A byte-level client through the gateway as `identity`, after the `INFO`.
    fn raw(&self, identity: &str) -> RawClient {
        match (&self.envoy, &self.harness) {
            (Some(envoy), _) => envoy.raw(identity),
            (_, Some((gateway, _))) => RawClient::connect(gateway.addr(Some(identity))).expect("raw connect"),
            _ => unreachable!("one host runs"),
        }
    }
}

async fn next(subscriber: &mut Subscriber, who: &str) -> async_nats::Message {
    tokio::time::timeout(WAIT, subscriber.next())
        .await
        .unwrap_or_else(|_| panic!("{who}: no message within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{who}: the subscription ended"))
}

/// Checks what the tap saw: every selected field an envelope bound to its pointer and the
/// tenant, opening (with the tests' own JWE code) to the published value, and every other
/// byte of the event unchanged.
fn assert_sealed_at_rest(keys: &Value, published: &[u8], stored: &[u8]) {
    let (published, mut stored): (Value, Value) = (
        serde_json::from_slice(published).expect("published JSON"),
        serde_json::from_slice(stored).expect("stored JSON"),
    );
    let mut pointers = vec!["/data/card/number".to_owned(), "/data/customer/email".to_owned()];
    let items = published["data"]["items"].as_array().map_or(0, Vec::len);
    pointers.extend((0..items).map(|i| format!("/data/items/{i}/price")));
    for pointer in pointers {
        let envelope = stored
            .pointer(&pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{pointer} is not sealed"));
        let (header, value) = jose::open(&[keys], envelope).unwrap_or_else(|e| panic!("{pointer}: {e}"));
        assert_eq!(Some(&value), published.pointer(&pointer), "{pointer}");
        assert_eq!(header["ptr"], pointer.as_str());
        assert_eq!(header["ctx"]["tenant"], "acme");
        *stored.pointer_mut(&pointer).expect("present") = value;
    }
    assert_eq!(stored, published, "bytes other than the sealed fields changed");
}

/// Runs one test against both hosts.
macro_rules! in_both_hosts {
    ($($name:ident),* $(,)?) => {
        mod envoy {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Host::Envoy).await })*
        }
        mod harness {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Host::Harness).await })*
        }
    };
}

in_both_hosts!(
    published_fields_are_sealed_at_rest_and_open_only_for_readers,
    a_request_and_its_reply_pass_through_the_gateway,
    ten_thousand_pipelined_publishes_arrive_complete_and_in_order,
    a_publish_sent_byte_by_byte_is_sealed_like_any_other,
    every_ping_is_answered_in_order_between_pipelined_publishes,
    an_unauthorized_publish_is_dropped_and_the_client_is_told,
    a_signed_publish_verifies_and_a_forged_one_is_refused,
    a_delivery_that_cannot_be_opened_is_withheld_and_the_reader_is_told,
    broken_protocol_closes_that_connection_only,
    a_publish_over_max_payload_never_reaches_the_server,
    jetstream_stores_sealed_and_a_reader_consumes_opened,
);

async fn published_fields_are_sealed_at_rest_and_open_only_for_readers(host: Host) {
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let (reader, _) = under.client(READER).await;
    let (other, _) = under.client(OTHER).await;
    let (producer, _) = under.client(PRODUCER).await;
    let mut at_rest = tap.subscribe("orders.>").await.expect("subscribe");
    let mut opened = reader.subscribe("orders.>").await.expect("subscribe");
    let mut withheld = other.subscribe("orders.>").await.expect("subscribe");
    // A round trip through each connection: the subscriptions are in place.
    for client in [&tap, &reader, &other] {
        round_trip(client).await;
    }
    let published = event(1, 1024);
    let mut headers = HeaderMap::new();
    headers.insert("ce-type", "com.example.order.created");
    headers.insert("Nats-Msg-Id", "o-1");
    producer
        .publish_with_reply_and_headers(SUBJECT, "replies.o-1", headers, published.clone().into())
        .await
        .expect("publish");
    producer.flush().await.expect("flush");

    let stored = next(&mut at_rest, "the tap").await;
    assert_sealed_at_rest(&under.keys, &published, &stored.payload);
    let got = next(&mut opened, "the reader").await;
    assert_eq!(
        got.payload.as_ref(),
        published.as_slice(),
        "the reader gets the event byte for byte\n{}",
        under.log()
    );
    let log = under.log();
    for plaintext in ["4111111111111111", "ada@example.com"] {
        assert!(!log.contains(plaintext), "plaintext in the log:\n{log}");
    }
    let sealed = next(&mut withheld, "the other subscriber").await;
    assert_eq!(
        sealed.payload, stored.payload,
        "a subscriber without the grant gets the fields still sealed"
    );
    for message in [&stored, &got, &sealed] {
        let headers = message.headers.as_ref().expect("the headers arrive");
        assert_eq!(headers.get("ce-type").map(|v| v.as_str()), Some("com.example.order.created"));
        assert_eq!(headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some("o-1"));
        assert_eq!(message.reply.as_deref(), Some("replies.o-1"));
        assert_eq!(message.subject.as_str(), SUBJECT);
    }
}

async fn a_request_and_its_reply_pass_through_the_gateway(host: Host) {
    let under = Under::start(host, false);
    let (responder, _) = under.client(READER).await;
    let mut requests = responder.subscribe("quotes.>").await.expect("subscribe");
    round_trip(&responder).await;
    let answering = tokio::spawn(async move {
        let request = next(&mut requests, "the responder").await;
        let mut answer = b"quote for ".to_vec();
        answer.extend_from_slice(&request.payload);
        responder
            .publish(request.reply.expect("a reply subject"), answer.into())
            .await
            .expect("reply");
        responder.flush().await.expect("flush");
    });
    let (requester, _) = under.client(PRODUCER).await;
    let reply = tokio::time::timeout(WAIT, requester.request("quotes.acme", "order 7".into()))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(reply.payload.as_ref(), b"quote for order 7");
    answering.await.expect("the responder answered");
}

async fn ten_thousand_pipelined_publishes_arrive_complete_and_in_order(host: Host) {
    const COUNT: usize = 10_000;
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let (reader, _) = under.client(READER).await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    let mut opened = reader.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    round_trip(&reader).await;
    let (producer, _) = under.client(PRODUCER).await;
    let sizes = [64, 300, 1024, 4000, 20_000];
    let publishing = {
        let producer = producer.clone();
        tokio::spawn(async move {
            for n in 0..COUNT {
                // No flush between them: the client pipelines, reads split frames anywhere.
                producer
                    .publish(SUBJECT, event(n, sizes[n % sizes.len()]).into())
                    .await
                    .expect("publish");
            }
        })
    };
    // Round trips on the same connection interleave with the publishes.
    for _ in 0..20 {
        round_trip(&producer).await;
    }
    publishing.await.expect("published");
    producer.flush().await.expect("flush");
    for n in 0..COUNT {
        let stored = next(&mut at_rest, "the tap").await;
        let stored: Value = serde_json::from_slice(&stored.payload).expect("JSON at rest");
        assert_eq!(stored["data"]["n"], n, "the tap: out of order");
        assert!(
            stored["data"]["card"]["number"].as_str().is_some_and(|s| s.split('.').count() == 5),
            "sealed"
        );
        let got = next(&mut opened, "the reader").await;
        assert_eq!(got.payload.as_ref(), event(n, sizes[n % sizes.len()]).as_slice(), "message {n}");
    }
}

async fn a_publish_sent_byte_by_byte_is_sealed_like_any_other(host: Host) {
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let mut raw = under.raw(PRODUCER);
    let published = event(2, 200);
    let mut wire = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n".to_vec();
    wire.extend(format!("PUB {SUBJECT} {}\r\n", published.len()).as_bytes());
    wire.extend(&published);
    wire.extend(b"\r\nPING\r\n");
    // One byte per write, so every split happens, the one between `\r` and `\n` included.
    for byte in &wire {
        raw.send(&[*byte]).expect("send a byte");
    }
    raw.read_until_contains(b"PONG\r\n", WAIT).expect("the PONG");
    let stored = next(&mut at_rest, "the tap").await;
    assert_sealed_at_rest(&under.keys, &published, &stored.payload);
}

async fn every_ping_is_answered_in_order_between_pipelined_publishes(host: Host) {
    const PUBLISHES: usize = 2000;
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let mut raw = under.raw(PRODUCER);
    // One write: publishes, a PING after every tenth, and one refused publish (whose
    // -ERR the gateway times with a PING of its own, answered but not passed on).
    let mut wire = b"CONNECT {\"verbose\":false,\"headers\":true}\r\nPUB orders.acme.created 2\r\n{]\r\n".to_vec();
    for n in 0..PUBLISHES {
        let published = event(n, 100 + n % 700);
        wire.extend(format!("PUB {SUBJECT} {}\r\n", published.len()).as_bytes());
        wire.extend(&published);
        wire.extend(b"\r\n");
        if n % 10 == 9 {
            wire.extend(b"PING\r\n");
        }
    }
    raw.send(&wire).expect("send");
    let pongs = |bytes: &[u8]| bytes.windows(6).filter(|w| w == b"PONG\r\n").count();
    let answer = raw.read_until(|bytes| pongs(bytes) >= PUBLISHES / 10, WAIT).expect("the PONGs");
    assert_eq!(pongs(&answer), PUBLISHES / 10, "{}", String::from_utf8_lossy(&answer));
    for n in 0..PUBLISHES {
        let stored: Value = serde_json::from_slice(&next(&mut at_rest, "the tap").await.payload).expect("JSON");
        assert_eq!(stored["data"]["n"], n, "out of order");
    }
    // Nothing more than was asked for: no extra PONG arrives after one more round trip.
    raw.send(b"PING\r\n").expect("send");
    let last = raw.read_until_contains(b"PONG\r\n", WAIT).expect("the PONG");
    assert_eq!(pongs(&last), 1, "{}", String::from_utf8_lossy(&last));
}

async fn an_unauthorized_publish_is_dropped_and_the_client_is_told(host: Host) {
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let (intruder, mut errors) = under.client(OTHER).await;
    intruder.publish(SUBJECT, event(3, 300).into()).await.expect("publish");
    round_trip(&intruder).await;
    let error = tokio::time::timeout(WAIT, errors.recv())
        .await
        .expect("an error in time")
        .expect("an error");
    assert!(
        error.contains("Permissions Violation for Publish to \"orders.acme.created\"") && error.contains("producer-forbidden"),
        "{error}"
    );
    // The connection stays usable: a request on another subject still goes through.
    let mut echo = tap.subscribe("echo").await.expect("subscribe");
    round_trip(&tap).await;
    intruder.publish("echo", "still here".into()).await.expect("publish");
    intruder.flush().await.expect("flush");
    assert_eq!(next(&mut echo, "echo").await.payload.as_ref(), b"still here");
    // Nothing of the refused publish reached the server: the producer's marker comes first.
    let (producer, _) = under.client(PRODUCER).await;
    producer.publish(SUBJECT, event(4, 300).into()).await.expect("publish");
    producer.flush().await.expect("flush");
    let first: Value = serde_json::from_slice(&next(&mut at_rest, "the tap").await.payload).expect("JSON");
    assert_eq!(first["id"], "o-4", "the refused publish reached nats-server");
}

async fn broken_protocol_closes_that_connection_only(host: Host) {
    let under = Under::start(host, false);
    let (bystander, _) = under.client(READER).await;
    let mut garbage = under.raw(PRODUCER);
    garbage.send(b"CONNECT {}\r\nHELLO world\r\n").expect("send");
    let told = garbage.read_to_close(WAIT).expect("the gateway closes the connection");
    assert_told(&told, "malformed protocol: unknown operation");
    let mut long = under.raw(PRODUCER);
    long.send(format!("PUB {} 1\r\n", "a".repeat(5000)).as_bytes()).expect("send");
    let told = long.read_to_close(WAIT).expect("the gateway closes the connection");
    assert_told(&told, "control line longer than 4096 bytes");
    // Other connections, and new ones, work.
    round_trip(&bystander).await;
    let mut fresh = under.raw(PRODUCER);
    fresh.send(b"CONNECT {}\r\nPING\r\n").expect("send");
    fresh.read_until_contains(b"PONG\r\n", WAIT).expect("a new connection works");
}

/// The last thing a closed client received is the `-ERR` that says why, with its stable
/// name, as nats-server tells a client it closes.
fn assert_told(received: &[u8], why: &str) {
    let text = String::from_utf8_lossy(received);
    let last = text.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("-ERR 'eventseal nats-protocol-error: ") && last.contains(why),
        "the client was not told why it was closed ({why}): {text:?}"
    );
}

async fn a_publish_over_max_payload_never_reaches_the_server(host: Host) {
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let mut raw = under.raw(PRODUCER);
    let info = raw.info().clone();
    let server_max = under.server().info()["max_payload"].as_u64().expect("a max_payload");
    let told = info["max_payload"].as_u64().expect("a max_payload");
    assert!(
        told < server_max * 3 / 4,
        "the client is told {told}, the server allows {server_max}"
    );
    assert!(info.get("connect_urls").is_none(), "{info}");
    let size = usize::try_from(told).expect("fits") + 1;
    let mut wire = format!("CONNECT {{}}\r\nPUB {SUBJECT} {size}\r\n").into_bytes();
    wire.extend(vec![b'x'; size]);
    wire.extend(b"\r\n");
    let _ = raw.send(&wire);
    let told = raw.read_to_close(WAIT).expect("the gateway closes the connection");
    assert_told(&told, "is larger than");
    // Nothing arrived: the next message the tap sees is a producer's.
    let (producer, _) = under.client(PRODUCER).await;
    // async-nats holds the client to the same limit.
    let refused = producer.publish(SUBJECT, vec![b' '; size].into()).await;
    assert!(refused.is_err(), "async-nats published over the max_payload it was told");
    producer.publish(SUBJECT, event(5, 100).into()).await.expect("publish");
    producer.flush().await.expect("flush");
    let first: Value = serde_json::from_slice(&next(&mut at_rest, "the tap").await.payload).expect("JSON");
    assert_eq!(first["id"], "o-5");
}

async fn jetstream_stores_sealed_and_a_reader_consumes_opened(host: Host) {
    let under = Under::start(host, true);
    let tap = under.tap().await;
    let js = async_nats::jetstream::new(tap);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ORDERS".to_owned(),
            subjects: vec!["orders.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
    let (producer, _) = under.client(PRODUCER).await;
    let published = event(6, 800);
    let ack = async_nats::jetstream::new(producer)
        .publish(SUBJECT, published.clone().into())
        .await
        .expect("publish")
        .await
        .expect("the stream acknowledges through the gateway");
    let stored = stream.get_raw_message(ack.sequence).await.expect("the stored message");
    assert_sealed_at_rest(&under.keys, &published, &stored.payload);
    // A consumer through the gateway as a reader gets it opened.
    let (reader, _) = under.client(READER).await;
    let consumer: async_nats::jetstream::consumer::PullConsumer = async_nats::jetstream::new(reader)
        .get_stream("ORDERS")
        .await
        .expect("the stream, through the gateway")
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .expect("a consumer");
    let mut messages = consumer.fetch().max_messages(1).messages().await.expect("fetch");
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("a message in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(message.payload.as_ref(), published.as_slice(), "{}", under.log());
    message.ack().await.expect("ack through the gateway");
}

async fn a_delivery_that_cannot_be_opened_is_withheld_and_the_reader_is_told(host: Host) {
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let (producer, _) = under.client(PRODUCER).await;
    producer.publish(SUBJECT, event(8, 300).into()).await.expect("publish");
    producer.flush().await.expect("flush");
    let sealed: Value = serde_json::from_slice(&next(&mut at_rest, "the tap").await.payload).expect("JSON");
    // Someone with access to the server moves an envelope to another field.
    let mut moved = sealed.clone();
    moved["data"]["customer"]["email"] = sealed["data"]["card"]["number"].clone();
    let (reader, mut errors) = under.client(READER).await;
    let mut opened = reader.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&reader).await;
    tap.publish(SUBJECT, serde_json::to_vec(&moved).expect("JSON").into())
        .await
        .expect("publish");
    tap.publish(SUBJECT, serde_json::to_vec(&sealed).expect("JSON").into())
        .await
        .expect("publish");
    tap.flush().await.expect("flush");
    let error = tokio::time::timeout(WAIT, errors.recv())
        .await
        .expect("an error in time")
        .expect("an error");
    assert!(
        error.contains("Permissions Violation for Subscription to \"orders.acme.created\"") && error.contains("sealed-field-rejected"),
        "{error}"
    );
    // The moved envelope never reaches the reader, half opened or not; the next one does.
    let delivered: Value = serde_json::from_slice(&next(&mut opened, "the reader").await.payload).expect("JSON");
    assert_eq!(delivered, serde_json::from_slice::<Value>(&event(8, 300)).expect("JSON"));
}

async fn a_signed_publish_verifies_and_a_forged_one_is_refused(host: Host) {
    let under = Under::start(host, false);
    let tap = under.tap().await;
    let mut hooks = tap.subscribe("hooks.>").await.expect("subscribe");
    round_trip(&tap).await;
    let (sender, mut errors) = under.client(OTHER).await;
    let body = br#"{"type":"invoice.paid","data":{"id":"inv_1"}}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let timestamp = i64::try_from(now).expect("fits");
    let signed = |id: &str, signature: String| {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id);
        headers.insert("webhook-timestamp", timestamp.to_string().as_str());
        headers.insert("webhook-signature", signature.as_str());
        headers
    };
    let good = signed("msg_1", jose::webhook_signature(HOOK_KEY, "msg_1", timestamp, body));
    let forged = signed(
        "msg_2",
        jose::webhook_signature(b"not-the-key-not-the-key-not-the!", "msg_2", timestamp, body),
    );
    sender
        .publish_with_headers("hooks.billing", forged, body.as_slice().into())
        .await
        .expect("publish");
    sender
        .publish_with_headers("hooks.billing", good, body.as_slice().into())
        .await
        .expect("publish");
    sender.flush().await.expect("flush");
    let error = tokio::time::timeout(WAIT, errors.recv())
        .await
        .expect("an error in time")
        .expect("an error");
    assert!(
        error.contains("Publish to \"hooks.billing\"") && error.contains("signature-invalid"),
        "{error}"
    );
    // Only the signed one arrives, with its bytes and headers as they were signed.
    let arrived = next(&mut hooks, "the tap").await;
    assert_eq!(arrived.payload.as_ref(), body.as_slice());
    let headers = arrived.headers.as_ref().expect("the headers");
    assert_eq!(headers.get("webhook-id").map(|v| v.as_str()), Some("msg_1"), "{}", under.log());
}

/// Envelopes do not depend on the transport: what the gateway sealed on NATS, the same
/// module opens as an HTTP filter, and what it sealed over HTTP, the gateway opens on
/// delivery. The HTTP policy binds the same context (tenant from a header, type from the
/// body) under the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sealed_through_nats_opens_through_http_and_the_reverse() {
    let under = Under::start(Host::Harness, false);
    let context = json!({"tenant": {"header": "x-tenant"}, "type": {"body": "/type"}});
    let http_policy = json!({
        "keys": {"env": "EVENTSEAL_KEYS"},
        "principal": {"source": "header", "header": "x-principal"},
        "rules": [
            {"name": "seal", "match": {"path": "/seal"}, "context": context, "seal": {"fields": SEALED}},
            {"name": "open", "match": {"path": "/open"}, "context": context,
             "open": {"fields": SEALED, "readers": ["spiffe://example.org/ns/billing/*"]}},
        ],
    });
    let config = PluginConfig::new()
        .configuration(http_policy.to_string())
        .env("EVENTSEAL_KEYS", under.keys.to_string());
    let http = crate::module().plugin(config).expect("the HTTP filter starts");
    let through_http = |path: &str, body: &[u8]| {
        let mut stream = http.http_stream().expect("a stream");
        let headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", "events"),
            ("content-type", "application/json"),
            ("x-tenant", "acme"),
            ("x-principal", READER),
        ];
        stream.send_request_headers(headers, false).expect("headers");
        stream.send_request_body(body, true).expect("body");
        assert!(stream.local_reply().is_none(), "refused: {:?}", stream.local_reply());
        stream.upstream_request().body
    };
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let (producer, _) = under.client(PRODUCER).await;
    let published = event(7, 600);
    producer.publish(SUBJECT, published.clone().into()).await.expect("publish");
    producer.flush().await.expect("flush");
    let sealed_on_nats = next(&mut at_rest, "the tap").await.payload;
    assert_eq!(
        through_http("/open", &sealed_on_nats),
        published,
        "sealed on NATS, opened over HTTP"
    );

    let sealed_over_http = through_http("/seal", &published);
    assert_sealed_at_rest(&under.keys, &published, &sealed_over_http);
    let (reader, _) = under.client(READER).await;
    let mut opened = reader.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&reader).await;
    tap.publish(SUBJECT, sealed_over_http.into()).await.expect("publish at rest");
    tap.flush().await.expect("flush");
    let delivered = next(&mut opened, "the reader").await;
    assert_eq!(
        delivered.payload.as_ref(),
        published.as_slice(),
        "sealed over HTTP, opened on NATS delivery"
    );
}

/// The Node.js client of `examples/node` (`@nats-io/transport-node`, TLS first): publishes
/// through Envoy sealed at rest, and receives through it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_client_with_tls_first_publishes_sealed_and_receives_opened() {
    let under = Under::start(Host::Envoy, false);
    let envoy = under.envoy.as_ref().expect("Envoy runs");
    let node_modules = crate::envoy::workspace().join("examples/node/node_modules/@nats-io/transport-node");
    assert!(node_modules.is_dir(), "@nats-io/transport-node is not installed: run scripts/setup");
    let dir = std::env::temp_dir().join(format!("eventseal-node-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let files = |identity: &str, name: &str| {
        let id = envoy.identity(identity);
        let (cert, key, ca) = id.pem();
        let paths = [("ca", ca), ("cert", cert), ("key", key)].map(|(kind, pem)| {
            let path = dir.join(format!("{name}-{kind}.pem"));
            std::fs::write(&path, pem).expect("write a PEM file");
            path.display().to_string()
        });
        paths.to_vec()
    };
    let node = |mode: &str, identity: &str, name: &str, extra: &[String]| {
        let mut command = std::process::Command::new("node");
        command
            .current_dir(crate::envoy::workspace().join("examples/node"))
            .arg("nats-client.mjs")
            .arg(mode)
            .arg(format!("tls://{}", envoy.addr()))
            .args(files(identity, name))
            .arg(SUBJECT)
            .args(extra);
        command
    };
    let tap = under.tap().await;
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let published = event(9, 500);
    let event_file = dir.join("event.json");
    std::fs::write(&event_file, &published).expect("write the event");
    let status = node("publish", PRODUCER, "producer", &[event_file.display().to_string()])
        .status()
        .expect("node runs (scripts/setup installs it)");
    assert!(status.success(), "node publish: {status}");
    let stored = next(&mut at_rest, "the tap").await.payload;
    assert_sealed_at_rest(&under.keys, &published, &stored);

    let mut receiver = node("receive", READER, "reader", &[])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut lines = std::io::BufReader::new(receiver.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut line).expect("read");
    assert_eq!(line.trim(), "ready");
    tap.publish(SUBJECT, stored).await.expect("publish at rest");
    tap.flush().await.expect("flush");
    line.clear();
    std::io::BufRead::read_line(&mut lines, &mut line).expect("read");
    use base64::Engine as _;
    let received = base64::engine::general_purpose::STANDARD.decode(line.trim()).expect("base64");
    assert_eq!(received, published, "the Node reader gets the event opened");
    assert!(receiver.wait().expect("node ends").success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a KMS key source (Vault Transit on a real OpenBao), what a client publishes is
/// sealed under a data key the KMS wrapped, and a reader gets it opened. A gateway that has
/// not unwrapped a message's data key yet cannot wait for the KMS: the delivery is refused
/// with `kms-unavailable` (never delivered sealed or half opened), the unwrap goes out, and
/// the message opens when it comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_kms_messages_seal_under_data_keys_and_a_key_not_unwrapped_yet_is_refused_not_skipped() {
    use eventseal_testkit::openbao::{OpenBao, decrypt_field, openbao_decrypt, wrapped_of};
    let mut bao = OpenBao::start();
    bao.create_transit_key("transit", "orders");
    let mut policy = policy();
    policy["keys"] = json!({"vault_transit": {
        "cluster": "openbao", "authority": bao.addr().to_string(), "key": "orders", "token_env": "BAO_TOKEN",
    }});
    let start = |server: NatsServer| {
        let filter = Filter {
            policy: policy.to_string(),
            keys: keys().to_string(),
            env: vec![("BAO_TOKEN".to_owned(), bao.token().to_owned())],
            allow_on_headers_stop_iteration: false,
        };
        EnvoyGateway::start_with_clusters(server, Some(filter), &[("openbao".to_owned(), bao.addr())])
    };
    let gateway = start(NatsServer::start());
    let connect = |gateway: &EnvoyGateway, identity: &str| {
        let tls = gateway.identity(identity).rustls_config().expect("a client TLS config");
        let (errors, received) = mpsc::unbounded_channel::<String>();
        let options = async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .event_callback(move |event| {
                let errors = errors.clone();
                async move {
                    if let Event::ServerError(error) = event {
                        let _ = errors.send(error.to_string());
                    }
                }
            })
            .tls_first()
            .tls_client_config(tls)
            .connect(format!("tls://{}", gateway.addr()));
        async move { (options.await.expect("connect through the gateway"), received) }
    };
    let tap = connect_plain(gateway.server.addr()).await.expect("connect to nats-server");
    let mut at_rest = tap.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&tap).await;
    let (producer, mut refusals) = connect(&gateway, PRODUCER).await;
    let published = event(10, 400);
    // The data key is asked for when the VM starts; until it is there, a publish is refused
    // with kms-unavailable and the client publishes again.
    let stored = loop {
        producer.publish(SUBJECT, published.clone().into()).await.expect("publish");
        producer.flush().await.expect("flush");
        tokio::select! {
            message = next(&mut at_rest, "the tap") => break message.payload,
            refusal = refusals.recv() => {
                let refusal = refusal.expect("the error channel");
                assert!(refusal.contains("kms-unavailable"), "{refusal}\n{}", gateway.envoy.log());
            }
        }
    };
    let stored_json: Value = serde_json::from_slice(&stored).expect("JSON at rest");
    let card = stored_json["data"]["card"]["number"].as_str().expect("sealed");
    assert_eq!(
        decrypt_field(&openbao_decrypt(&bao, &wrapped_of(card)), card),
        json!("4111111111111111"),
        "the envelope opens with the data key OpenBao unwraps"
    );
    let (reader, _) = connect(&gateway, READER).await;
    let mut opened = reader.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&reader).await;
    tap.publish(SUBJECT, stored.clone()).await.expect("publish at rest");
    tap.flush().await.expect("flush");
    assert_eq!(next(&mut opened, "the reader").await.payload.as_ref(), published.as_slice());
    drop(gateway);

    // A new gateway (a new VM: no data key cached) in front of the same stored event.
    let fresh = start(NatsServer::start());
    let tap = connect_plain(fresh.server.addr()).await.expect("connect to nats-server");
    let (reader, mut refusals) = connect(&fresh, READER).await;
    let mut opened = reader.subscribe(SUBJECT).await.expect("subscribe");
    round_trip(&reader).await;
    tap.publish(SUBJECT, stored.clone()).await.expect("publish at rest");
    tap.flush().await.expect("flush");
    let refusal = tokio::time::timeout(WAIT, refusals.recv())
        .await
        .expect("a refusal in time")
        .expect("a refusal");
    assert!(
        refusal.contains("Subscription to \"orders.acme.created\"") && refusal.contains("kms-unavailable"),
        "{refusal}"
    );
    // Delivered again (as JetStream would) until the unwrap the refusal started has landed.
    let delivered = loop {
        tap.publish(SUBJECT, stored.clone()).await.expect("publish at rest");
        tap.flush().await.expect("flush");
        tokio::select! {
            message = next(&mut opened, "the reader") => break message.payload,
            refusal = refusals.recv() => assert!(refusal.expect("the error channel").contains("kms-unavailable")),
        }
    };
    assert_eq!(delivered.as_ref(), published.as_slice(), "opened once the data key was unwrapped");
    assert!(!fresh.envoy.log().contains(bao.token()), "the KMS token is in Envoy's log");
}
