//! `eventseal-bench nats-load`: one measurement of `benches/nats-load.sh` against one target
//! (nats-server itself, or Envoy in front of it), with real `async-nats` clients.
//!
//! - `publish`: a publisher connected to the target sends the 1 KiB workload event N times;
//!   a subscriber connected straight to nats-server receives them (sealed, if the target
//!   is the filter).
//! - `delivery`: a publisher connected straight to nats-server sends the event N times
//!   already sealed (by core, with the policy's key and context); a subscriber connected to
//!   the target receives them (opened, if the target is the filter and the subscriber a
//!   reader).
//!
//! Each message's `id` (a field the policy does not seal) carries its sequence number, so
//! the receiver knows when it was published. Latency is publish to receipt: from just before
//! `Client::publish` to the subscriber's stream handing the message over, both in this
//! process. The publisher sends as fast as it can, flushing every `--flush-every` messages,
//! with at most `--window` messages published and not yet received (a closed loop, like
//! wrk's connections: without it, latency would only measure how much the fastest side
//! could queue). Messages/s is the messages received over the time from the first publish
//! to the last receipt.
//!
//! Prints one line: `messages/s p50-ms p99-ms errors`, where errors are messages lost, not
//! in the expected form (`--expect plain|sealed`), or not from this run; details go to
//! stderr.

use async_nats::{Client, ConnectOptions, Event, Subscriber};
use eventseal_benches::workloads::{self, NATS_PRODUCER, NATS_SUBJECT};
use eventseal_core::{BodyJob, Decision, Direction, Engine, MemoryReplayCache, Policy, Principal, RequestHead};
use futures_util::StreamExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::time::timeout;

/// An unmatched subject on which the publisher pings the subscriber until it answers: then
/// both connections are up and the subscription on [`NATS_SUBJECT`] (made before it, on the
/// same connection) is in place at nats-server.
const READY_SUBJECT: &str = "eventseal.bench.ready";
/// How long the run waits for a message (or a free slot in the window) before it counts
/// what is missing as lost.
const IDLE: Duration = Duration::from_secs(10);
/// Where each message's sequence number is: its `id`, `evt-` and ten digits.
const ID_PREFIX: &str = "\"id\":\"evt-";
const SEQUENCE_DIGITS: usize = 10;
/// A plain workload event carries these; a sealed one carries none of them.
const PLAIN_MARKER: &str = "sensitive-value-";
const SEALED_MARKER: &str = "\"f0\":\"eyJ";

/// Which way the messages go through the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// Published through the target, received straight from nats-server.
    Publish,
    /// Published straight to nats-server, received through the target.
    Delivery,
}

/// How the sensitive fields of a received message look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// In plaintext.
    Plain,
    /// Sealed (JWE strings).
    Sealed,
}

/// A client certificate, its key and the CA that signed the target's certificate (PEM files).
#[derive(Debug, Clone)]
pub struct Identity {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// One run's settings (see the module docs and [`Options::parse`]).
#[derive(Debug, Clone)]
pub struct Options {
    leg: Leg,
    target: String,
    direct: String,
    messages: usize,
    window: usize,
    flush_every: usize,
    identity: Option<Identity>,
    expect: Form,
    policy: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Messages received per second, first publish to last receipt.
    pub rate: f64,
    /// Median publish-to-receipt latency, ms.
    pub p50_ms: f64,
    /// 99th percentile publish-to-receipt latency, ms.
    pub p99_ms: f64,
    /// Messages lost, in the wrong form, or not from this run.
    pub errors: usize,
}

impl Options {
    /// Reads `<publish|delivery> --target URL --direct URL [--messages N] [--window N]
    /// [--flush-every N] [--cert PEM --key PEM --ca PEM] [--expect plain|sealed]
    /// [--policy FILE]`. A `tls://` target is reached with TLS first and the client
    /// certificate; `--policy` (keys from its key source) seals the delivery leg's messages.
    ///
    /// # Errors
    /// What is missing or wrong, for the usage line.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let leg = match args.first().map(String::as_str) {
            Some("publish") => Leg::Publish,
            Some("delivery") => Leg::Delivery,
            other => return Err(format!("the leg is publish or delivery, not {other:?}")),
        };
        let mut flags = std::collections::HashMap::new();
        let mut rest = args[1..].iter();
        while let Some(flag) = rest.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument {flag:?}"))?;
            let value = rest.next().ok_or_else(|| format!("--{name} needs a value"))?;
            flags.insert(name.to_owned(), value.clone());
        }
        let mut take = |name: &str| flags.remove(name);
        let number = |value: Option<String>, default: usize, name: &str| -> Result<usize, String> {
            value.map_or(Ok(default), |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--{name} is a positive number, not {v:?}"))
            })
        };
        let target = take("target").ok_or("--target URL is needed")?;
        let direct = take("direct").ok_or("--direct URL (nats-server itself) is needed")?;
        let messages = number(take("messages"), 10_000, "messages")?;
        if messages >= 10usize.pow(SEQUENCE_DIGITS as u32) {
            return Err("--messages must fit in ten digits".into());
        }
        let window = number(take("window"), 256, "window")?;
        let flush_every = number(take("flush-every"), 64, "flush-every")?;
        let identity = match (take("cert"), take("key"), take("ca")) {
            (Some(cert), Some(key), Some(ca)) => Some(Identity {
                cert: cert.into(),
                key: key.into(),
                ca: ca.into(),
            }),
            (None, None, None) => None,
            _ => return Err("--cert, --key and --ca go together".into()),
        };
        if target.starts_with("tls://") && identity.is_none() {
            return Err("a tls:// target needs --cert, --key and --ca".into());
        }
        let expect = match take("expect").as_deref() {
            Some("plain") => Form::Plain,
            Some("sealed") => Form::Sealed,
            None if leg == Leg::Publish => Form::Plain,
            None => Form::Sealed,
            Some(other) => return Err(format!("--expect is plain or sealed, not {other:?}")),
        };
        let policy = take("policy").map(PathBuf::from);
        if leg == Leg::Delivery && policy.is_none() {
            return Err("the delivery leg seals its messages: --policy FILE is needed".into());
        }
        if let Some(name) = flags.keys().next() {
            return Err(format!("unknown option --{name}"));
        }
        Ok(Self {
            leg,
            target,
            direct,
            messages,
            window,
            flush_every,
            identity,
            expect,
            policy,
        })
    }
}

/// Runs one measurement on a single-threaded runtime (one core, like wrk `-t1`).
///
/// # Errors
/// When the payloads cannot be made, a client cannot connect, or a publish fails.
pub fn run(options: &Options) -> Result<Outcome, String> {
    let payloads = payloads(options)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(measure(options, payloads))
}

/// The workload event with sequence number `seq` in its `id`.
fn event(template: &[u8], seq: usize) -> Vec<u8> {
    let text = std::str::from_utf8(template).expect("the workload event is UTF-8");
    let id = format!("{ID_PREFIX}{seq:0width$}", width = SEQUENCE_DIGITS);
    let replaced = text.replacen("\"id\":\"evt-0001", &id, 1);
    assert_ne!(replaced, text, "the workload event has the id evt-0001");
    replaced.into_bytes()
}

/// The messages to publish: plain events for the publish leg, the same sealed by core under
/// the policy for the delivery leg.
fn payloads(options: &Options) -> Result<Vec<bytes::Bytes>, String> {
    let template = workloads::event(1024, 3);
    let plain = (0..options.messages).map(|seq| event(&template, seq));
    let Some(path) = options.policy.as_ref().filter(|_| options.leg == Leg::Delivery) else {
        return Ok(plain.map(bytes::Bytes::from).collect());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let policy = Policy::from_json(&text).map_err(|e| format!("the policy {}: {e}", path.display()))?;
    let keyring = policy
        .load_keyring(|name| std::env::var(name).ok())
        .map_err(|e| format!("the policy's keyring: {e}"))?;
    let engine = Engine::new(policy, keyring);
    plain.map(|body| seal(&engine, &body).map(bytes::Bytes::from)).collect()
}

/// `body` as the filter seals it when the producer publishes it on [`NATS_SUBJECT`].
fn seal(engine: &Engine, body: &[u8]) -> Result<Vec<u8>, String> {
    let request = RequestHead::nats(NATS_SUBJECT, &[]);
    let rule = engine
        .route_in(&request, Direction::Request)
        .ok_or("no publish rule of the policy matches the subject")?;
    let principal = Principal {
        id: NATS_PRODUCER.into(),
        claims: serde_json::Value::Null,
    };
    let job = BodyJob {
        rule: engine.rule(rule),
        direction: Direction::Request,
        request,
        headers: &[],
        principal: Some(&principal),
        body,
        now: 0,
    };
    match engine.decide(&job, &mut MemoryReplayCache::default()) {
        Decision::Forward { body: Some(body), .. } => Ok(body),
        Decision::Forward { body: None, .. } => Err("the publish rule sealed nothing".into()),
        Decision::Refuse { problem, .. } => Err(format!("core refused to seal: {problem:?}")),
    }
}

/// A client at `url`: with TLS first and `identity`'s certificate for `tls://`, plain
/// otherwise; it never follows servers an `INFO` advertises, and its subscriptions hold a
/// whole run.
async fn connect(url: &str, identity: Option<&Identity>, capacity: usize) -> Result<Client, String> {
    let label = url.to_owned();
    let mut options = ConnectOptions::new()
        .ignore_discovered_servers()
        .subscription_capacity(capacity)
        .connection_timeout(IDLE)
        .event_callback(move |event| {
            let label = label.clone();
            async move {
                if !matches!(event, Event::Connected) {
                    eprintln!("nats-load: {label}: {event}");
                }
            }
        });
    if url.starts_with("tls://") {
        let identity = identity.ok_or("a tls:// URL needs a client certificate")?;
        options = options
            .tls_first()
            .require_tls(true)
            .add_root_certificates(identity.ca.clone())
            .add_client_certificate(identity.cert.clone(), identity.key.clone());
    }
    options.connect(url).await.map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// Publishes on [`READY_SUBJECT`] until the subscriber receives one.
async fn wait_ready(publisher: &Client, ready: &mut Subscriber) -> Result<(), String> {
    let deadline = Instant::now() + IDLE;
    while Instant::now() < deadline {
        publisher
            .publish(READY_SUBJECT, "ready".into())
            .await
            .map_err(|e| format!("publish: {e}"))?;
        publisher.flush().await.map_err(|e| format!("flush: {e}"))?;
        if let Ok(Some(_)) = timeout(Duration::from_millis(50), ready.next()).await {
            return Ok(());
        }
    }
    Err(format!("the subscriber saw nothing published on {READY_SUBJECT} within {IDLE:?}"))
}

async fn measure(options: &Options, payloads: Vec<bytes::Bytes>) -> Result<Outcome, String> {
    let (publish_at, subscribe_at) = match options.leg {
        Leg::Publish => (&options.target, &options.direct),
        Leg::Delivery => (&options.direct, &options.target),
    };
    let capacity = options.messages + 1024;
    let publisher = connect(publish_at, options.identity.as_ref(), capacity).await?;
    let subscriber = connect(subscribe_at, options.identity.as_ref(), capacity).await?;
    let messages = subscriber.subscribe(NATS_SUBJECT).await.map_err(|e| format!("subscribe: {e}"))?;
    let mut ready = subscriber.subscribe(READY_SUBJECT).await.map_err(|e| format!("subscribe: {e}"))?;
    wait_ready(&publisher, &mut ready).await?;
    drop(ready);

    let total = payloads.len();
    let start = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let window = Arc::new(Semaphore::new(options.window));
    let receiver = tokio::spawn(receive(messages, Arc::clone(&sent), Arc::clone(&window), start, options.expect));
    let mut published = 0;
    for (seq, payload) in payloads.into_iter().enumerate() {
        match timeout(IDLE, window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            // Nothing came back for a while: the receiver counts the rest as lost.
            _ => break,
        }
        sent[seq].store(nanos(start.elapsed()), Ordering::Release);
        publisher
            .publish(NATS_SUBJECT, payload)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        published += 1;
        if published % options.flush_every == 0 {
            publisher.flush().await.map_err(|e| format!("flush: {e}"))?;
        }
    }
    publisher.flush().await.map_err(|e| format!("flush: {e}"))?;
    let received = receiver.await.map_err(|e| format!("the receiver failed: {e}"))?;

    let mut latencies = received.latencies;
    latencies.sort_unstable();
    let lost = total - latencies.len();
    let errors = lost + received.wrong_form + received.strays;
    if errors > 0 {
        eprintln!(
            "nats-load: {total} messages, {published} published, {} received: {lost} lost, {} not {:?}, {} not from this run",
            latencies.len(),
            received.wrong_form,
            options.expect,
            received.strays
        );
    }
    let first = sent.first().map_or(0, |t| t.load(Ordering::Acquire));
    let elapsed = received.last.saturating_sub(first).max(1) as f64 / 1e9;
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |ns| *ns as f64 / 1e6)
    };
    Ok(Outcome {
        rate: latencies.len() as f64 / elapsed,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        errors,
    })
}

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// What the subscriber saw.
struct Received {
    /// Publish-to-receipt latency of each message received once, ns.
    latencies: Vec<u64>,
    /// When the last of them arrived, ns after the start.
    last: u64,
    wrong_form: usize,
    strays: usize,
}

/// Receives until every message came or none came for [`IDLE`]; each one frees a slot in
/// the publisher's window.
async fn receive(mut messages: Subscriber, sent: Arc<Vec<AtomicU64>>, window: Arc<Semaphore>, start: Instant, expect: Form) -> Received {
    let total = sent.len();
    let mut seen = vec![false; total];
    let mut received = Received {
        latencies: Vec::with_capacity(total),
        last: 0,
        wrong_form: 0,
        strays: 0,
    };
    while received.latencies.len() < total {
        let Ok(Some(message)) = timeout(IDLE, messages.next()).await else {
            break;
        };
        let now = nanos(start.elapsed());
        let text = std::str::from_utf8(&message.payload).unwrap_or("");
        match sequence(text).filter(|seq| *seq < total && !seen[*seq]) {
            Some(seq) => {
                seen[seq] = true;
                received.latencies.push(now.saturating_sub(sent[seq].load(Ordering::Acquire)));
                received.last = now;
                if form(text) != Some(expect) {
                    received.wrong_form += 1;
                }
                window.add_permits(1);
            }
            None => received.strays += 1,
        }
    }
    received
}

/// The sequence number in a workload event's `id`.
fn sequence(text: &str) -> Option<usize> {
    let at = text.find(ID_PREFIX)? + ID_PREFIX.len();
    text.get(at..at + SEQUENCE_DIGITS)?.parse().ok()
}

/// Whether the three sensitive fields are all in plaintext or all sealed.
fn form(text: &str) -> Option<Form> {
    if (0..3).all(|i| text.contains(&format!("{PLAIN_MARKER}{i:04}"))) {
        Some(Form::Plain)
    } else if !text.contains(PLAIN_MARKER) && text.contains(SEALED_MARKER) {
        Some(Form::Sealed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_carries_its_sequence_and_is_recognised_as_plain_or_sealed() {
        let template = workloads::event(1024, 3);
        let plain = String::from_utf8(event(&template, 4711)).unwrap();
        assert_eq!(sequence(&plain), Some(4711));
        assert_eq!(form(&plain), Some(Form::Plain));

        let keyring = r#"{"keys":[{"kty":"oct","kid":"bench","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#;
        let policy = Policy::from_json(&workloads::nats_policy(3)).unwrap();
        let keyring = policy.load_keyring(|_| Some(keyring.to_owned())).unwrap();
        let sealed = seal(&Engine::new(policy, keyring), plain.as_bytes()).unwrap();
        let sealed = String::from_utf8(sealed).unwrap();
        assert_eq!(sequence(&sealed), Some(4711), "the id is not sealed");
        assert_eq!(form(&sealed), Some(Form::Sealed));
        assert_eq!(form(&plain.replacen("sensitive-value-0001", "other", 1)), None);
    }
}
