//! What every stream of one VM shares: the engine, the counters, the audit trail and the
//! KMS key source. Built once per VM by the root context, cloned into each stream.

use crate::host::{Metrics, log, now_ms};
use crate::kms::Kms;
use crate::metrics::Counter;
use crate::outbox::{Effect, Outbox};
use eventseal_core::{AuditChain, AuditFacts, Engine};
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

/// What every stream of one VM shares.
#[derive(Debug, Clone)]
pub struct Vm {
    /// The engine built from the plugin configuration.
    pub engine: Rc<Engine>,
    /// The counters.
    pub metrics: Rc<Metrics>,
    /// This VM's audit trail (one chain instance per worker VM).
    pub audit: Rc<RefCell<Audit>>,
    /// The KMS key source (`keys.vault_transit`), if configured: its data-key cache, calls in
    /// flight and the streams waiting for them.
    pub kms: Option<Rc<RefCell<Kms>>>,
    /// With `envoy.headers: hold`, whether Envoy passes bodies while the headers wait.
    pub hold: Rc<RefCell<HoldCheck>>,
    /// NATS connections to close at the root's next tick, once the `-ERR` that says why has
    /// left with the callback that wrote it.
    pub closes: Rc<RefCell<Closes>>,
}

impl Vm {
    /// The VM of `engine`, its counters and its KMS key source.
    pub fn new(engine: Engine, metrics: Rc<Metrics>, kms: Option<Kms>) -> Self {
        let outbox = engine.policy().audit.clone().map(|config| Outbox::new(config, now_ms()));
        Self {
            engine: Rc::new(engine),
            metrics,
            audit: Rc::new(RefCell::new(Audit {
                chain: AuditChain::new(instance_id()),
                outbox,
            })),
            kms: kms.map(|kms| Rc::new(RefCell::new(kms))),
            hold: Rc::default(),
            closes: Rc::default(),
        }
    }

    /// Appends an audit record of `facts` to this VM's trail.
    pub fn audit(&self, facts: &AuditFacts<'_>) {
        self.audit.borrow_mut().record(&self.engine, &self.metrics, facts);
    }
}

/// This VM's audit trail: the chain, and the records waiting for the collector.
#[derive(Debug)]
pub struct Audit {
    chain: AuditChain,
    /// The records waiting for the collector, if the policy has one.
    pub outbox: Option<Outbox>,
}

impl Audit {
    /// Appends a record: writes it to the proxy log as one JSON line and, with a collector,
    /// buffers it for delivery.
    fn record(&mut self, engine: &Engine, metrics: &Metrics, facts: &AuditFacts<'_>) {
        let record = self.chain.append(engine.keyring(), facts);
        log(LogLevel::Info, &record);
        metrics.add(&[Counter::AuditRecords]);
        if let Some(outbox) = self.outbox.as_mut() {
            let effect = outbox.push(record);
            account(metrics, outbox, &effect);
        }
    }
}

/// Counts what a change to the outbox delivered or dropped, and warns once per episode.
pub fn account(metrics: &Metrics, outbox: &mut Outbox, effect: &Effect) {
    metrics.add_n(Counter::AuditDelivered, effect.delivered);
    metrics.add_n(Counter::AuditUndelivered, effect.dropped);
    let buffered = outbox.len();
    metrics.shift(Counter::AuditBuffered, outbox.reported.change(buffered));
    if effect.warn {
        log(
            LogLevel::Warn,
            &format!(
                "eventseal: audit collector (cluster {:?}) is not taking records: the buffer of {} is full, \
                 dropping the oldest undelivered (they stay in this log; counted in eventseal_audit_undelivered)",
                outbox.config().cluster,
                outbox.config().buffer_records
            ),
        );
    }
}

/// A random id for this VM's audit chain, so chains of several workers stay apart.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the id is still unique enough to read; the chain stays verifiable.
    let _ = getrandom::fill(&mut bytes);
    format!("eventseal-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A stream whose headers the filter holds (`envoy.headers: hold`), watched until Envoy
/// shows it passes bodies while headers wait.
pub trait Held {
    /// Envoy does not: answer the client (the stream is stopped at its headers).
    fn fail_unheld(&mut self);
}

/// How to reach a held stream's state from the root context.
pub type HeldStream = Weak<RefCell<dyn Held>>;

/// Connections waiting for the tick to close them.
const MAX_CLOSES: usize = 4096;

/// NATS connections to close once their `-ERR` is out. Envoy closes a connection asked to
/// close inside a data callback before the bytes that callback writes (`FlushWrite` sees an
/// empty write buffer), so the close waits for the root's next tick.
#[derive(Default, Debug)]
pub struct Closes(Vec<u32>);

impl Closes {
    /// Closes connection `id` at the next tick; `false` if [`MAX_CLOSES`] already wait (the
    /// caller then closes at once, and the client may miss the `-ERR`).
    pub fn defer(&mut self, id: u32) -> bool {
        let room = self.0.len() < MAX_CLOSES;
        if room {
            self.0.push(id);
        }
        room
    }

    /// The connections to close now.
    pub fn take(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.0)
    }
}

/// Streams watched at once; more wait unwatched (the first one overdue decides for all).
const MAX_WATCHED: usize = 64;

/// How long a held stream may wait for its first body callback, until one stream of this
/// VM has shown that Envoy passes bodies while headers wait.
pub const HOLD_WAIT_MS: u64 = 1_000;

/// Hold mode needs Envoy's `allow_on_headers_stop_iteration`. No host call tells the filter
/// whether it is set: without it, a paused headers callback also stops every body callback
/// (`StopAllIterationAndWatermark`) and the stream would wait for ever. So the first held
/// streams are watched: a body callback confirms the knob for good; a stream that waits
/// [`HOLD_WAIT_MS`] first shows it missing, and from then on every held stream fails at
/// once, closed, with a log line that names the fix.
#[derive(Default)]
pub struct HoldCheck {
    confirmed: bool,
    missing: bool,
    watched: VecDeque<(u32, u64, HeldStream)>,
}

impl std::fmt::Debug for HoldCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldCheck")
            .field("confirmed", &self.confirmed)
            .field("missing", &self.missing)
            .field("watched", &self.watched.len())
            .finish()
    }
}

impl HoldCheck {
    /// Envoy was shown not to pass bodies while headers wait.
    pub fn missing(&self) -> bool {
        self.missing
    }

    /// Stream `id` holds its headers since `now_ms`.
    pub fn watch(&mut self, id: u32, now_ms: u64, stream: HeldStream) {
        if !self.confirmed && self.watched.len() < MAX_WATCHED {
            self.watched.push_back((id, now_ms, stream));
        }
    }

    /// A body callback ran while headers were held: Envoy has the knob.
    pub fn confirm(&mut self) {
        self.confirmed = true;
        self.watched.clear();
    }

    /// Stream `id` ended.
    pub fn forget(&mut self, id: u32) {
        self.watched.retain(|(watched, _, _)| *watched != id);
    }

    /// The watched streams that waited too long: Envoy lacks the knob (logged once).
    pub fn overdue(&mut self, now_ms: u64) -> Vec<(u32, HeldStream)> {
        let late = |(_, since, _): &(u32, u64, HeldStream)| now_ms.saturating_sub(*since) >= HOLD_WAIT_MS;
        if self.confirmed || !self.watched.iter().any(late) {
            return Vec::new();
        }
        if !self.missing {
            self.missing = true;
            log(
                LogLevel::Error,
                "eventseal: the policy says \"envoy\": {\"headers\": \"hold\"} but Envoy does not pass the body \
                 to the filter while the headers wait: set allow_on_headers_stop_iteration: true in the wasm \
                 filter's PluginConfig (Envoy >= 1.35), or use \"headers\": \"forward\"; held streams are refused",
            );
        }
        // Every held stream now fails: none would ever get its body.
        self.watched.drain(..).map(|(id, _, stream)| (id, stream)).collect()
    }
}
