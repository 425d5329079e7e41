//! The soak: the shipped filter in real Envoy (`--concurrency 2`, two VMs) under steady
//! load, with faults, for as long as the caller says (`EVENTSEAL_SOAK_SECONDS`; 60 s in the
//! suite, 600 s or more from `benches/soak.sh`, whose runs docs/RELIABILITY.md records).
//!
//! - **Load.** wrk (`tests/e2e/soak.lua`) sends 1 KiB events to seal (three fields, data
//!   keys from OpenBao Transit), sealed events to open for an allowed reader, and sealed
//!   events with a tampered ciphertext. Beside it, a signer sends Standard Webhooks
//!   deliveries to verify, each with a fresh id, plus replays of earlier ones and tampered
//!   bodies, and checks each answer.
//! - **The upstream checks every body it receives**, with its own parser and its own
//!   AES-GCM, data keys unwrapped by OpenBao directly: no plaintext where a rule seals, no
//!   half-sealed body, every envelope opens to the value the client sent, every opened
//!   body holds the original values, no webhook id arrives twice, nothing tampered arrives.
//! - **Faults.** OpenBao is killed and restarted twice (a persistent server that unseals
//!   itself, as in production): while it is down, requests that need it must get 503 with
//!   `Retry-After` and nothing else; after it is back the filter must recover by itself.
//!   The audit collector is down for a while: the records must stay buffered, be counted,
//!   and arrive afterwards, every chain whole (sequence, links and HMACs checked).
//! - **Memory.** Envoy's RSS and the replay cache in shared data are sampled every second;
//!   from the middle of the run to its end they must stay flat within a stated bound.
//!
//! It prints a report (and writes it to `EVENTSEAL_SOAK_REPORT` if set) and fails on any
//! leak, half-sealed body, accepted replay or tampered event, wrong refusal, lost audit
//! record, missed recovery or growth past the bound.

use crate::client;
use crate::envoy::{self, Envoy, Filter, Listener, Protocol};
use crate::upstream::Wire;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventseal_testkit::jose::{hmac_sha256, webhook_signature};
use eventseal_testkit::openbao::{OpenBao, ROOT_TOKEN, open_field, wrapped_key};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The fields every event carries and every rule seals or opens.
const FIELDS: [&str; 3] = ["/data/card", "/data/customer/email", "/data/ssn"];

/// Every sealed value holds this marker: found anywhere it should not be, it is a leak.
const MARKER: &str = "soak-plaintext-";

/// Envoy worker threads, each with its own filter VM.
const WORKERS: usize = 2;

/// The signer's deliveries per second.
const SIGNED_PER_SECOND: u64 = 40;

/// Signature tolerance (and so replay window) of the soak's policy: short, so the replay
/// cache fills and drains several times in a run.
const TOLERANCE_SECONDS: u64 = 30;

/// The replay cache's capacity: well above the signer's rate times the window, as
/// docs/CONFIG.md says to size it.
const REPLAY_CAPACITY: u64 = 65_536;

/// Audit records each VM keeps while the collector is down: more than a minute's worth at
/// the soak's rate, so none is dropped.
const AUDIT_BUFFER_RECORDS: u64 = 200_000;

/// How long after OpenBao is back the filter may still refuse.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// How much Envoy's RSS may grow from the middle of the run to its end.
const RSS_GROWTH_BOUND: f64 = 0.10;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

/// The event with id `id` (`s-…`): about 1 KiB, with a marked secret in each sealed field.
fn event(id: &str) -> Value {
    json!({
        "specversion": "1.0", "type": "order.created", "source": "/shop/checkout", "id": id,
        "data": {
            "card": {"number": format!("{MARKER}{id}-4111111111111111"), "expiry": "12/29", "holder": format!("{MARKER}{id}-holder")},
            "customer": {"email": format!("{MARKER}{id}@example.com"), "tier": "gold"},
            "ssn": format!("{MARKER}{id}-078-05-1120"),
            "lines": (0..8).map(|n| json!({"sku": format!("SKU-{n:04}"), "qty": n + 1, "price": "19.99", "note": "gift wrap, leave at the door"})).collect::<Vec<_>>(),
        },
    })
}

/// The value the client sent at `pointer` of event `id`.
fn original(id: &str, pointer: &str) -> Value {
    event(id).pointer(pointer).cloned().expect("every field exists")
}

/// A random 32-byte key, base64url.
fn random_key() -> (Vec<u8>, String) {
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).expect("randomness");
    let encoded = URL_SAFE_NO_PAD.encode(&key);
    (key, encoded)
}

/// The soak's policy: seal on `/events/orders`, open on `/deliver/orders` for `billing`,
/// verify on `/webhooks/orders`; data keys from OpenBao with short lives, so an outage is
/// felt within seconds; audit records shipped to the collector.
fn policy(bao: SocketAddr) -> Value {
    let context = json!({"type": {"body": "/type"}, "route": {"literal": "orders"}});
    json!({
        "keys": {
            "env": "EVENTSEAL_KEYS",
            "vault_transit": {
                "cluster": "openbao", "authority": bao.to_string(), "key": "orders", "token_env": "BAO_TOKEN",
                "max_key_age_ms": 2000, "refresh_ahead_ms": 500, "cache_ttl_ms": 2000,
                "timeout_ms": 3000, "backoff_initial_ms": 100, "backoff_max_ms": 1000,
            },
        },
        "principal": {"source": "header", "header": "x-client-id"},
        "signatures": {"tolerance_seconds": TOLERANCE_SECONDS, "replay_capacity": REPLAY_CAPACITY},
        "audit": {
            "collector": {"cluster": "audit_collector", "path": "/audit"},
            "batch_records": 500, "buffer_records": AUDIT_BUFFER_RECORDS, "flush_interval_ms": 200,
        },
        "rules": [
            {"name": "orders-seal", "match": {"methods": ["POST"], "path": "/events/orders"},
             "context": context, "seal": {"fields": FIELDS}},
            {"name": "orders-open", "match": {"methods": ["POST"], "path": "/deliver/orders"},
             "context": context, "open": {"fields": FIELDS, "readers": ["billing"]}},
            {"name": "hooks-verify", "match": {"methods": ["POST"], "path": "/webhooks/orders"}, "verify": true},
        ],
    })
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 server: the checking upstream and the audit collector.

type Handler = Arc<dyn Fn(&str, &[u8]) -> u16 + Send + Sync>;

/// Serves `handler` on a loopback port until stopped; [`Server::stop`] also cuts the
/// connections it has, so a stopped collector is really down (connections refused).
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Server {
    fn start(addr: SocketAddr, handler: Handler) -> Server {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("a local address");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (stopped, open) = (Arc::clone(&stop), Arc::clone(&connections));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(handle) = stream.try_clone() {
                    let mut open = lock(&open);
                    open.retain(|s: &TcpStream| s.peer_addr().is_ok());
                    open.push(handle);
                }
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || serve(stream, &handler));
            }
        });
        Server { addr, stop, connections }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for connection in lock(&self.connections).drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, handler: &Handler) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut wire = Wire::new(stream);
    loop {
        let Some(line) = wire.line() else { return };
        if line.is_empty() {
            continue;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
        let Some(headers) = wire.headers() else { return };
        let mut body = Vec::new();
        if !wire.body(&headers, &mut body, false) {
            return;
        }
        let status = handler(&path, &body);
        if writer
            .write_all(format!("HTTP/1.1 {status} Status\r\ncontent-length: 2\r\n\r\n{{}}").as_bytes())
            .is_err()
        {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checking upstream.

/// What the upstream found.
#[derive(Default, Debug)]
struct Findings {
    sealed_bodies: u64,
    opened_bodies: u64,
    verified_bodies: u64,
    envelopes_opened: u64,
    plaintext_leaks: u64,
    half_sealed: u64,
    unopenable: u64,
    not_opened: u64,
    replays_accepted: u64,
    tampered_accepted: u64,
    /// The first few things that went wrong, for the failure message (no plaintext: ids
    /// and pointers only).
    samples: Vec<String>,
}

impl Findings {
    fn note(&mut self, what: String) {
        if self.samples.len() < 20 {
            self.samples.push(what);
        }
    }
}

/// An envelope whose data key OpenBao could not unwrap when it arrived (OpenBao was
/// down): opened once it is back.
struct Pending {
    id: String,
    pointer: &'static str,
    envelope: String,
}

struct Checker {
    bao: SocketAddr,
    /// Data keys by the wrapped key (Transit ciphertext) they came in: one per data key the
    /// filter used, a few per minute.
    data_keys: Mutex<HashMap<String, Vec<u8>>>,
    findings: Mutex<Findings>,
    pending: Mutex<Vec<Pending>>,
    /// Webhook ids that reached the upstream.
    delivered_ids: Mutex<HashSet<String>>,
    /// The first sealed bodies, kept for the pool of events to open.
    captured: Mutex<Vec<Vec<u8>>>,
}

/// How many sealed bodies the checker keeps for the pool.
const CAPTURE: usize = 60;

impl Checker {
    fn new(bao: SocketAddr) -> Checker {
        Checker {
            bao,
            data_keys: Mutex::new(HashMap::new()),
            findings: Mutex::new(Findings::default()),
            pending: Mutex::new(Vec::new()),
            delivered_ids: Mutex::new(HashSet::new()),
            captured: Mutex::new(Vec::new()),
        }
    }

    fn receive(&self, path: &str, body: &[u8]) -> u16 {
        match path {
            "/events/orders" => self.sealed(body),
            "/deliver/orders" => self.opened(body),
            "/webhooks/orders" => self.verified(body),
            other => lock(&self.findings).note(format!("a request to {other}")),
        }
        200
    }

    /// The data key of a wrapped key, from OpenBao's own decrypt; `None` while it is down.
    fn data_key(&self, wrapped: &str) -> Option<Vec<u8>> {
        if let Some(key) = lock(&self.data_keys).get(wrapped) {
            return Some(key.clone());
        }
        let request = json!({"ciphertext": wrapped}).to_string();
        let headers = [
            ("x-vault-token", ROOT_TOKEN),
            ("content-type", "application/json"),
            ("connection", "close"),
        ];
        let (status, reply) = client::call(self.bao, "POST", "/v1/transit/decrypt/orders", &headers, request.as_bytes()).ok()?;
        if status != 200 {
            return None;
        }
        let reply: Value = serde_json::from_slice(&reply).ok()?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(reply["data"]["plaintext"].as_str()?)
            .ok()?;
        lock(&self.data_keys).insert(wrapped.to_owned(), key.clone());
        Some(key)
    }

    /// Opens one envelope with the checker's own AES-GCM; `false` if its key cannot be
    /// unwrapped now.
    fn open_envelope(&self, id: &str, pointer: &'static str, envelope: &str) -> bool {
        let Some(wrapped) = wrapped_key(envelope) else {
            let mut findings = lock(&self.findings);
            findings.unopenable += 1;
            findings.note(format!("{id} {pointer}: no wrapped key"));
            return true;
        };
        let Some(key) = self.data_key(&wrapped) else { return false };
        let mut findings = lock(&self.findings);
        match open_field(&key, envelope) {
            Ok(value) if value == original(id, pointer) => findings.envelopes_opened += 1,
            Ok(_) => {
                findings.unopenable += 1;
                findings.note(format!("{id} {pointer}: opens to another value"));
            }
            Err(e) => {
                findings.unopenable += 1;
                findings.note(format!("{id} {pointer}: {e}"));
            }
        }
        true
    }

    fn sealed(&self, body: &[u8]) {
        let leaked = body.windows(MARKER.len()).any(|w| w == MARKER.as_bytes());
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let id = parsed.as_ref().and_then(|v| v["id"].as_str()).unwrap_or("?").to_owned();
        let envelopes: Vec<(&'static str, String)> = FIELDS
            .iter()
            .filter_map(|&p| {
                let value = parsed.as_ref()?.pointer(p)?.as_str()?;
                (value.split('.').count() == 5).then(|| (p, value.to_owned()))
            })
            .collect();
        {
            let mut findings = lock(&self.findings);
            findings.sealed_bodies += 1;
            if leaked {
                findings.plaintext_leaks += 1;
                findings.note(format!("{id}: plaintext forwarded where the rule seals"));
            }
            if envelopes.len() != FIELDS.len() {
                findings.half_sealed += u64::from(!envelopes.is_empty());
                findings.note(format!("{id}: {} of {} fields sealed", envelopes.len(), FIELDS.len()));
            }
        }
        for (pointer, envelope) in envelopes {
            if !self.open_envelope(&id, pointer, &envelope) {
                lock(&self.pending).push(Pending {
                    id: id.clone(),
                    pointer,
                    envelope,
                });
            }
        }
        let mut captured = lock(&self.captured);
        if captured.len() < CAPTURE {
            captured.push(body.to_vec());
        }
    }

    fn opened(&self, body: &[u8]) {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let id = parsed["id"].as_str().unwrap_or("?");
        let mut findings = lock(&self.findings);
        findings.opened_bodies += 1;
        if id.starts_with("t-") {
            findings.tampered_accepted += 1;
            findings.note(format!("{id}: a tampered envelope was opened and forwarded"));
        } else if FIELDS.iter().any(|p| parsed.pointer(p) != Some(&original(id, p))) {
            findings.not_opened += 1;
            findings.note(format!("{id}: forwarded to the reader without every original value"));
        }
    }

    fn verified(&self, body: &[u8]) {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let id = parsed["id"].as_str().unwrap_or("?").to_owned();
        let first = lock(&self.delivered_ids).insert(id.clone());
        let mut findings = lock(&self.findings);
        findings.verified_bodies += 1;
        if parsed["tampered"] == json!(true) {
            findings.tampered_accepted += 1;
            findings.note(format!("{id}: a tampered delivery was forwarded"));
        }
        if !first {
            findings.replays_accepted += 1;
            findings.note(format!("{id}: a replay was forwarded"));
        }
    }

    /// Opens what waited for OpenBao; what still cannot be unwrapped counts as unopenable.
    fn finish(&self) -> usize {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let count = pending.len();
        for p in pending {
            if !self.open_envelope(&p.id, p.pointer, &p.envelope) {
                let mut findings = lock(&self.findings);
                findings.unopenable += 1;
                findings.note(format!("{} {}: OpenBao cannot unwrap its data key", p.id, p.pointer));
            }
        }
        count
    }
}

// ---------------------------------------------------------------------------------------
// The audit collector.

#[derive(Default)]
struct Chain {
    next_seq: u64,
    last_mac: String,
}

#[derive(Default)]
struct Collected {
    chains: BTreeMap<String, Chain>,
    records: u64,
    /// Records that came again after a batch whose answer was cut (the collector stopped
    /// mid-request): delivered at least once is the promise.
    again: u64,
    gaps: u64,
    bad_links: u64,
    bad_macs: u64,
    plaintext: u64,
    samples: Vec<String>,
}

struct Collector {
    key: Vec<u8>,
    collected: Mutex<Collected>,
}

impl Collector {
    /// Checks each record of a batch against its chain: the next sequence number, linked to
    /// the previous MAC, keyed by the audit key (docs/OPERATIONS.md, "Audit trail").
    fn receive(&self, body: &[u8]) -> u16 {
        let mut collected = lock(&self.collected);
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            let record: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let (instance, seq) = (
                record["instance"].as_str().unwrap_or("?").to_owned(),
                record["seq"].as_u64().unwrap_or(u64::MAX),
            );
            let mac = record["mac"].as_str().unwrap_or_default().to_owned();
            if text.contains(MARKER) {
                collected.plaintext += 1;
            }
            let expected = text
                .rfind(",\"mac\":\"")
                .map(|at| hex(&hmac_sha256(&self.key, format!("{}}}", &text[..at]).as_bytes())));
            let chain = collected.chains.entry(instance.clone()).or_default();
            let (next, last) = (chain.next_seq, chain.last_mac.clone());
            if seq < next {
                collected.again += 1;
                continue;
            }
            let problem = if seq > next {
                collected.gaps += 1;
                Some(format!("{instance}: seq {seq} where {next} was expected"))
            } else if record["prev"].as_str() != Some(last.as_str()) {
                collected.bad_links += 1;
                Some(format!("{instance}: seq {seq} does not link to the previous record"))
            } else if expected.as_deref() != Some(mac.as_str()) {
                collected.bad_macs += 1;
                Some(format!("{instance}: seq {seq} has a MAC the audit key did not make"))
            } else {
                None
            };
            if let Some(problem) = problem
                && collected.samples.len() < 20
            {
                collected.samples.push(problem);
            }
            let chain = collected.chains.entry(instance).or_default();
            chain.next_seq = seq.saturating_add(1);
            chain.last_mac = mac;
            collected.records += 1;
        }
        200
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ---------------------------------------------------------------------------------------
// The signer: webhook deliveries with fresh ids, replays and tampered bodies.

#[derive(Default, Debug)]
struct Signed {
    fresh: u64,
    fresh_accepted: u64,
    replays: u64,
    replays_refused: u64,
    /// Replays refused as expired: the delivery they repeat was older than the tolerance.
    replays_expired: u64,
    tampered: u64,
    tampered_refused: u64,
    /// Answers that were not what the delivery deserved (status and problem type).
    wrong: BTreeMap<String, u64>,
    /// The slowest answer.
    slowest: Duration,
}

fn problem_type(response: &client::Response) -> String {
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn run_signer(listener: SocketAddr, secret: &[u8], stop: &AtomicBool) -> Signed {
    let mut signed = Signed::default();
    let mut recent: Vec<Delivery> = Vec::new();
    let period = Duration::from_micros(1_000_000 / SIGNED_PER_SECOND);
    let mut next = Instant::now();
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let (kind, headers, body) = match n % 10 {
            // A replay of a delivery from the last few seconds, inside the window.
            9 if !recent.is_empty() => {
                let (headers, body) = recent[usize::try_from(n).unwrap_or(0) % recent.len()].clone();
                ("replay", headers, body)
            }
            // Signed, then changed on the way.
            4 => {
                let (headers, body) = delivery(&format!("w-{n}"), secret);
                let mut tampered: Value = serde_json::from_slice(&body).expect("JSON");
                tampered["tampered"] = json!(true);
                ("tampered", headers, serde_json::to_vec(&tampered).expect("JSON"))
            }
            _ => {
                let (headers, body) = delivery(&format!("w-{n}"), secret);
                if recent.len() == 20 {
                    recent.remove(0);
                }
                recent.push((headers.clone(), body.clone()));
                ("fresh", headers, body)
            }
        };
        let mut all = vec![
            (":method".to_owned(), "POST".to_owned()),
            (":path".to_owned(), "/webhooks/orders".to_owned()),
            (":authority".to_owned(), "soak".to_owned()),
            ("content-length".to_owned(), body.len().to_string()),
        ];
        all.extend(headers);
        let sent = Instant::now();
        let response = client::send(
            listener,
            None,
            &client::Request {
                headers: &all,
                body: Some(&body),
                chunks: 1,
            },
        );
        signed.slowest = signed.slowest.max(sent.elapsed());
        let (status, kind_of_problem) = match &response {
            Ok(r) => (r.status.unwrap_or(0), problem_type(r)),
            Err(_) => (0, String::new()),
        };
        let deserved = match kind {
            "fresh" => {
                signed.fresh += 1;
                status == 200
            }
            "replay" => {
                signed.replays += 1;
                // A replay of a delivery older than the tolerance is refused as expired
                // first: refused either way.
                let expired = kind_of_problem == "urn:eventseal:problem:signature-expired";
                signed.replays_expired += u64::from(status == 401 && expired);
                status == 401 && (expired || kind_of_problem == "urn:eventseal:problem:signature-replayed")
            }
            _ => {
                signed.tampered += 1;
                status == 401 && kind_of_problem == "urn:eventseal:problem:signature-invalid"
            }
        };
        match (deserved, kind) {
            (true, "fresh") => signed.fresh_accepted += 1,
            (true, "replay") => signed.replays_refused += 1,
            (true, _) => signed.tampered_refused += 1,
            (false, _) => *signed.wrong.entry(format!("{kind}: {status} {kind_of_problem}")).or_default() += 1,
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            // Pacing a load generator, not waiting for a condition.
            std::thread::sleep(wait);
        }
    }
    signed
}

/// A webhook delivery: its headers and body.
type Delivery = (Vec<(String, String)>, Vec<u8>);

/// A delivery signed now with a fresh id.
fn delivery(id: &str, secret: &[u8]) -> Delivery {
    let body = serde_json::to_vec(&json!({"type": "invoice.paid", "id": id, "data": {"amount": 1999, "currency": "EUR"}})).expect("JSON");
    let timestamp = unix_now();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ("webhook-signature".to_owned(), webhook_signature(secret, id, timestamp, &body)),
    ];
    (headers, body)
}

// ---------------------------------------------------------------------------------------
// Sampling Envoy.

/// One look at Envoy: seconds into the run, its RSS, and the stats the soak follows.
#[derive(Clone, Debug)]
struct Sample {
    at: f64,
    rss_kib: u64,
    stats: BTreeMap<String, u64>,
}

impl Sample {
    fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A look at Envoy through its admin API; `None` if it does not answer.
fn sample(admin: SocketAddr, pid: u32, started: Instant) -> Option<Sample> {
    let response = client::get(admin, "/stats?filter=(http.soak.downstream_rq_|wasmcustom.eventseal_)").ok()?;
    let stats = String::from_utf8_lossy(&response.body)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            let name = name.strip_prefix("wasmcustom.").unwrap_or(name);
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    Some(Sample {
        at: started.elapsed().as_secs_f64(),
        rss_kib: rss_kib(pid),
        stats,
    })
}

const RQ_5XX: &str = "http.soak.downstream_rq_5xx";

// ---------------------------------------------------------------------------------------
// The run.

/// wrk, from Debian's package (`scripts/setup` installs it).
fn wrk() -> PathBuf {
    let path = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("wrk")).find(|p| p.is_file()));
    path.unwrap_or_else(|| panic!("wrk is not installed: run scripts/setup (it installs Debian's wrk)"))
}

/// The pool of requests wrk cycles through, as a Lua file: six events to seal, three to
/// open, one tampered, in turn.
fn write_pool(path: &std::path::Path, captured: &[Vec<u8>]) {
    let mut lua = String::from("return {\n");
    let mut entry = |path: &str, reader: bool, body: &str| {
        assert!(!body.contains("]==]"), "a body that ends the Lua string");
        let identity = if reader { ", [\"x-client-id\"] = \"billing\"" } else { "" };
        let _ = writeln!(
            lua,
            "{{path = \"{path}\", headers = {{[\"content-type\"] = \"application/json\"{identity}}}, body = [==[{body}]==]}},"
        );
    };
    for (n, sealed) in captured.iter().enumerate() {
        for k in 0..6 {
            entry("/events/orders", false, &event(&format!("s-{}", n * 6 + k)).to_string());
        }
        let text = String::from_utf8_lossy(sealed).into_owned();
        for _ in 0..3 {
            entry("/deliver/orders", true, &text);
        }
        // The card's ciphertext with one character changed, under the id `t-…`.
        let mut tampered: Value = serde_json::from_str(&text).expect("a sealed event");
        let id = tampered["id"].as_str().expect("an id").replacen("s-", "t-", 1);
        tampered["id"] = json!(id);
        let envelope = tampered["data"]["card"].as_str().expect("a sealed card").to_owned();
        let mut parts: Vec<String> = envelope.split('.').map(str::to_owned).collect();
        let flipped = if parts[3].starts_with('A') { "B" } else { "A" };
        parts[3].replace_range(0..1, flipped);
        tampered["data"]["card"] = json!(parts.join("."));
        entry("/deliver/orders", true, &tampered.to_string());
    }
    lua.push_str("}\n");
    std::fs::write(path, lua).expect("write the request pool");
}

fn seconds_from_env() -> u64 {
    std::env::var("EVENTSEAL_SOAK_SECONDS")
        .ok()
        .map(|s| s.parse().expect("EVENTSEAL_SOAK_SECONDS: whole seconds"))
        .unwrap_or(60)
        .max(40)
}

/// When a fault starts and ends, in seconds into the load.
struct Window {
    what: &'static str,
    from: f64,
    to: f64,
}

#[test]
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
fn soak_under_load_with_kms_restarts_and_the_audit_collector_down() {
    let seconds = seconds_from_env();
    let total = seconds as f64;
    let wrk = wrk();

    // OpenBao as operators run it, so that its keys outlive a restart.
    let mut bao = OpenBao::start_persistent();
    bao.create_transit_key("transit", "orders");

    let checker = Arc::new(Checker::new(bao.addr()));
    let receiving = Arc::clone(&checker);
    let upstream = Server::start(
        "127.0.0.1:0".parse().expect("an address"),
        Arc::new(move |path, body| receiving.receive(path, body)),
    );

    let (signing_key, signing_k) = random_key();
    let (audit_key, audit_k) = random_key();
    let keys = json!({"keys": [
        {"kty": "oct", "kid": "soak-hooks", "alg": "HS256", "use": "sig", "k": signing_k, "status": "primary"},
        {"kty": "oct", "kid": "soak-audit", "alg": "HS256", "use": "audit", "k": audit_k, "status": "primary"},
    ]});
    let collector = Arc::new(Collector {
        key: audit_key,
        collected: Mutex::new(Collected::default()),
    });
    let collecting = Arc::clone(&collector);
    let collector_handler: Handler = Arc::new(move |_, body| collecting.receive(body));
    let mut collector_server = Server::start("127.0.0.1:0".parse().expect("an address"), Arc::clone(&collector_handler));
    let collector_addr = collector_server.addr;

    let listener = Listener {
        name: "soak".to_owned(),
        protocol: Protocol::Http { jwt: None },
        filter: Some(Filter {
            policy: policy(bao.addr()).to_string(),
            keys: keys.to_string(),
            env: vec![("BAO_TOKEN".to_owned(), ROOT_TOKEN.to_owned())],
            allow_on_headers_stop_iteration: false,
        }),
        tls: None,
        cluster: "upstream".to_owned(),
    };
    let clusters = [
        ("upstream".to_owned(), upstream.addr),
        ("openbao".to_owned(), bao.addr()),
        ("audit_collector".to_owned(), collector_addr),
    ];
    let envoy = Envoy::start_with(&envoy::bootstrap(&[listener], &clusters), WORKERS)
        .unwrap_or_else(|r| panic!("Envoy refused the soak's configuration:\n{}", r.log));
    let address = envoy.listener("soak");

    // Events sealed by the filter itself, to open under load.
    for n in 0..CAPTURE {
        let body = event(&format!("s-{n}")).to_string();
        let (status, reply) = client::call(
            address,
            "POST",
            "/events/orders",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .expect("Envoy answers");
        assert_eq!(status, 200, "sealing before the load: {}", String::from_utf8_lossy(&reply));
    }
    envoy.wait_until_cluster_idle("upstream");
    let captured = lock(&checker.captured).clone();
    assert_eq!(captured.len(), CAPTURE, "the upstream received every sealed event");
    let scratch = envoy.log_path().with_file_name("soak-pool.lua");
    write_pool(&scratch, &captured);

    // The load.
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let look = || sample(envoy.admin, envoy.pid(), started).expect("the admin API answers");
    let samples = Arc::new(Mutex::new(vec![look()]));
    let load = Command::new(&wrk)
        .args(["-t", "1", "-c", "16", "-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(envoy::workspace().join("tests/e2e/soak.lua"))
        .arg(format!("http://{address}"))
        .env("EVENTSEAL_SOAK_POOL", &scratch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", wrk.display()));
    let signer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || run_signer(address, &signing_key, &stop))
    };
    let sampler = {
        let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
        let admin = envoy.admin;
        let pid = envoy.pid();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                lock(&samples).extend(sample(admin, pid, started));
            }
        })
    };

    // The faults, on a schedule scaled to the run.
    let outage = (total * 0.05).clamp(5.0, 30.0);
    let collector_down = (total * 0.1).clamp(5.0, 60.0);
    let at = |fraction: f64| started + Duration::from_secs_f64(total * fraction);
    let wait_until = |when: Instant| {
        if let Some(wait) = when.checked_duration_since(Instant::now()) {
            // The schedule of the faults: a time, not a condition.
            std::thread::sleep(wait);
        }
    };
    let since = |i: Instant| i.duration_since(started).as_secs_f64();
    let mut windows = Vec::new();
    // The collector first, so that the buffer it fills has drained before the middle of
    // the run, from where memory must stay flat: wasm memory grows to its high-water mark
    // and never shrinks.
    wait_until(at(0.1));
    let from = since(Instant::now());
    collector_server.stop();
    wait_until(Instant::now() + Duration::from_secs_f64(collector_down));
    collector_server = Server::start(collector_addr, Arc::clone(&collector_handler));
    windows.push(Window {
        what: "audit collector down",
        from,
        to: since(Instant::now()),
    });
    for (what, fraction) in [("OpenBao down (1)", 0.3), ("OpenBao down (2)", 0.65)] {
        wait_until(at(fraction));
        let from = since(Instant::now());
        bao.kill();
        wait_until(Instant::now() + Duration::from_secs_f64(outage));
        bao.restart();
        windows.push(Window {
            what,
            from,
            to: since(Instant::now()),
        });
    }

    let output = load.wait_with_output().expect("wrk runs");
    stop.store(true, Ordering::SeqCst);
    let signed = signer.join().expect("the signer finishes");
    sampler.join().expect("the sampler finishes");
    let wrk_stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wrk failed:\n{wrk_stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let load: Value = wrk_stdout
        .lines()
        .find_map(|l| l.strip_prefix("SOAK-WRK "))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| panic!("no SOAK-WRK line from wrk:\n{wrk_stdout}"));

    // Every record delivered after the load: the filter's own count of records made, and
    // nothing left in its buffers.
    envoy.wait_until_cluster_idle("upstream");
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        let now = look();
        let delivered = lock(&collector.collected).records;
        if now.stat("eventseal_audit_buffered") == 0 && delivered >= now.stat("eventseal_audit_records") {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "audit records still undelivered 120 s after the load: {} made, {delivered} received, {} buffered",
            now.stat("eventseal_audit_records"),
            now.stat("eventseal_audit_buffered")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let waited_for_openbao = checker.finish();
    let samples = std::mem::take(&mut *lock(&samples));
    let log = envoy.log_path();
    let log_plaintext = std::io::BufReader::new(std::fs::File::open(&log).expect("Envoy's log"))
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(MARKER))
        .count();
    let log_panics = std::io::BufReader::new(std::fs::File::open(&log).expect("Envoy's log"))
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains("panicked") || l.contains("Wasm VM failed"))
        .count();

    // When the filter refused with 5xx, against the windows OpenBao was down.
    let kms_windows: Vec<&Window> = windows.iter().filter(|w| w.what.starts_with("OpenBao")).collect();
    let mut refusals_outside = 0;
    let mut recoveries = Vec::new();
    for (i, window) in kms_windows.iter().enumerate() {
        let until = kms_windows.get(i + 1).map_or(f64::MAX, |w| w.from);
        let last_5xx = samples
            .windows(2)
            .filter(|p| p[1].at > window.from && p[1].at <= until && p[1].stat(RQ_5XX) > p[0].stat(RQ_5XX))
            .map(|p| p[1].at)
            .fold(window.to, f64::max);
        let in_window = samples
            .windows(2)
            .filter(|p| p[1].at > window.from && p[1].at <= until)
            .map(|p| p[1].stat(RQ_5XX) - p[0].stat(RQ_5XX))
            .sum::<u64>();
        recoveries.push((window.what, in_window, last_5xx - window.to));
    }
    let first_fault = kms_windows[0].from;
    refusals_outside += samples
        .windows(2)
        .filter(|p| p[1].at < first_fault)
        .map(|p| p[1].stat(RQ_5XX) - p[0].stat(RQ_5XX))
        .sum::<u64>();

    // Memory: start, middle, end, and the largest after the middle.
    let at_fraction = |fraction: f64| {
        samples
            .iter()
            .min_by(|a, b| (a.at - total * fraction).abs().total_cmp(&(b.at - total * fraction).abs()))
            .cloned()
            .expect("samples")
    };
    let (start, middle, end) = (at_fraction(0.0), at_fraction(0.5), at_fraction(1.0));
    let peak_after_middle = samples.iter().filter(|s| s.at >= middle.at).map(|s| s.rss_kib).max().unwrap_or(0);
    let buffered_peak = samples.iter().map(|s| s.stat("eventseal_audit_buffered")).max().unwrap_or(0);
    let replay_peak = samples.iter().map(|s| s.stat("eventseal_replay_ids")).max().unwrap_or(0);

    let findings = lock(&checker.findings);
    let collected = lock(&collector.collected);
    let mut report = String::new();
    let _ = writeln!(report, "## Soak: {seconds} s of load, Envoy --concurrency {WORKERS}\n");
    let _ = writeln!(report, "Faults (seconds into the load):\n");
    for w in &windows {
        let _ = writeln!(report, "- {}: {:.1} → {:.1}", w.what, w.from, w.to);
    }
    let _ = writeln!(
        report,
        "\nwrk (seal, open, tampered; 16 connections): {} requests in {:.1} s ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms; by status {}; 503 without Retry-After: {}; socket errors: connect {}, read {}, write {}, timeout {}",
        load["requests"],
        load["seconds"].as_f64().unwrap_or(0.0),
        load["requests"].as_f64().unwrap_or(0.0) / load["seconds"].as_f64().unwrap_or(1.0),
        load["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        load["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        load["statuses"],
        load["without_retry_after"],
        load["connect_errors"],
        load["read_errors"],
        load["write_errors"],
        load["timeouts"],
    );
    let _ = writeln!(
        report,
        "\nSigner (verify, {SIGNED_PER_SECOND}/s): fresh {} ({} accepted), replays {} ({} refused, {} of them as expired), tampered {} ({} refused as invalid); wrong answers {:?}; slowest answer {:.0} ms",
        signed.fresh,
        signed.fresh_accepted,
        signed.replays,
        signed.replays_refused,
        signed.replays_expired,
        signed.tampered,
        signed.tampered_refused,
        signed.wrong,
        signed.slowest.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        report,
        "\n| what the upstream and the collector found | count | must be |\n|---|---:|---|"
    );
    for (what, count, must) in [
        ("sealed bodies checked", findings.sealed_bodies, "> 0"),
        (
            "envelopes opened by the independent checker",
            findings.envelopes_opened,
            "3 per sealed body",
        ),
        ("of them waiting for OpenBao to come back first", waited_for_openbao as u64, "any"),
        ("opened bodies checked", findings.opened_bodies, "> 0"),
        ("verified deliveries checked", findings.verified_bodies, "= fresh accepted"),
        ("plaintext leaks", findings.plaintext_leaks, "0"),
        ("half-sealed bodies", findings.half_sealed, "0"),
        ("envelopes that do not open to the original", findings.unopenable, "0"),
        ("opened bodies without the original values", findings.not_opened, "0"),
        ("replays accepted", findings.replays_accepted, "0"),
        ("tampered events or deliveries forwarded", findings.tampered_accepted, "0"),
        ("5xx before the first fault", refusals_outside, "0"),
        ("plaintext lines in Envoy's log", log_plaintext as u64, "0"),
        ("VM panics or failures in Envoy's log", log_panics as u64, "0"),
        ("audit records made by the filter", last.stat("eventseal_audit_records"), "> 0"),
        ("audit records received, chains checked", collected.records, "= made"),
        ("audit records received again (retried batch)", collected.again, "any"),
        (
            "audit chain gaps, bad links, bad MACs",
            collected.gaps + collected.bad_links + collected.bad_macs,
            "0",
        ),
        ("audit records holding plaintext", collected.plaintext, "0"),
        (
            "audit records dropped (eventseal_audit_undelivered)",
            last.stat("eventseal_audit_undelivered"),
            "0",
        ),
        ("audit records buffered at the peak", buffered_peak, "> 0 (the collector was down)"),
    ] {
        let _ = writeln!(report, "| {what} | {count} | {must} |");
    }
    let _ = writeln!(
        report,
        "\n| OpenBao outage | 5xx answers meanwhile | last 5xx after it was back |\n|---|---:|---:|"
    );
    for (what, count, after) in &recoveries {
        let _ = writeln!(report, "| {what} | {count} | {:.1} s |", after.max(0.0));
    }
    let _ = writeln!(report, "\n| memory | start | middle | end |\n|---|---:|---:|---:|");
    let _ = writeln!(
        report,
        "| Envoy RSS (MiB) | {:.1} | {:.1} | {:.1} (peak after the middle {:.1}) |",
        start.rss_kib as f64 / 1024.0,
        middle.rss_kib as f64 / 1024.0,
        end.rss_kib as f64 / 1024.0,
        peak_after_middle as f64 / 1024.0
    );
    let _ = writeln!(
        report,
        "| replay ids in shared data (16 B each; bound {REPLAY_CAPACITY}, peak {replay_peak}) | {} | {} | {} |",
        start.stat("eventseal_replay_ids"),
        middle.stat("eventseal_replay_ids"),
        end.stat("eventseal_replay_ids")
    );
    let _ = writeln!(
        report,
        "| audit records buffered | {} | {} | {} |",
        start.stat("eventseal_audit_buffered"),
        middle.stat("eventseal_audit_buffered"),
        end.stat("eventseal_audit_buffered")
    );
    let tenths: Vec<Sample> = (0..=10).map(|tenth| at_fraction(f64::from(tenth) / 10.0)).collect();
    let series = |f: &dyn Fn(&Sample) -> String| tenths.iter().map(f).collect::<Vec<_>>().join(" ");
    let _ = writeln!(report, "\nOver the run, every tenth of it:\n");
    let _ = writeln!(
        report,
        "- Envoy RSS (MiB): {}",
        series(&|s| format!("{:.0}", s.rss_kib as f64 / 1024.0))
    );
    let _ = writeln!(report, "- replay ids: {}", series(&|s| s.stat("eventseal_replay_ids").to_string()));
    let _ = writeln!(
        report,
        "- audit records buffered: {}",
        series(&|s| s.stat("eventseal_audit_buffered").to_string())
    );
    let _ = writeln!(report, "- 5xx so far: {}", series(&|s| s.stat(RQ_5XX).to_string()));
    println!("{report}");
    if let Some(path) = std::env::var_os("EVENTSEAL_SOAK_REPORT") {
        std::fs::write(&path, &report).expect("write the soak report");
    }

    let problems = format!("{report}\nfirst findings: {:?}\naudit: {:?}", findings.samples, collected.samples);
    assert!(findings.sealed_bodies > 0 && findings.opened_bodies > 0, "{problems}");
    assert_eq!(findings.envelopes_opened, findings.sealed_bodies * 3, "{problems}");
    assert_eq!(
        findings.plaintext_leaks + findings.half_sealed + findings.unopenable + findings.not_opened,
        0,
        "{problems}"
    );
    assert_eq!(findings.replays_accepted + findings.tampered_accepted, 0, "{problems}");
    assert_eq!(findings.verified_bodies, signed.fresh_accepted, "{problems}");
    assert!(signed.wrong.is_empty() && signed.replays > 0 && signed.tampered > 0, "{problems}");
    assert_eq!(load["without_retry_after"], json!(0), "{problems}");
    let statuses = load["statuses"].as_object().expect("statuses");
    assert!(
        statuses.keys().all(|s| ["200", "422", "503"].contains(&s.as_str())),
        "wrk saw answers other than 200, 422 (tampered) and 503 (OpenBao down): {problems}"
    );
    assert_eq!(refusals_outside, 0, "{problems}");
    for (what, count, after) in &recoveries {
        assert!(*count > 0, "{what}: no request was refused, so the outage was not felt: {problems}");
        assert!(
            *after <= RECOVERY_BOUND.as_secs_f64(),
            "{what}: still refusing {after:.1} s after OpenBao was back: {problems}"
        );
    }
    assert_eq!((log_plaintext, log_panics), (0, 0), "{problems}");
    assert_eq!(collected.records, last.stat("eventseal_audit_records"), "{problems}");
    assert_eq!(
        collected.gaps + collected.bad_links + collected.bad_macs + collected.plaintext,
        0,
        "{problems}"
    );
    assert_eq!(last.stat("eventseal_audit_undelivered"), 0, "{problems}");
    assert!(buffered_peak > 0, "the collector's outage left nothing buffered: {problems}");
    assert!(replay_peak <= REPLAY_CAPACITY, "{problems}");
    assert!(
        peak_after_middle as f64 <= middle.rss_kib as f64 * (1.0 + RSS_GROWTH_BOUND),
        "Envoy's RSS grew more than {:.0} % after the middle of the run: {problems}",
        RSS_GROWTH_BOUND * 100.0
    );
    drop(collector_server);
}
