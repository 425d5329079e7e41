//! The root context: loads the policy and keyring once per VM, defines the counters, and
//! hands every HTTP stream the shared engine.

use crate::filter::{Exchange, Unconfigured, kms_answered, wake};
use crate::kms::Kms;
use crate::metrics::Counter;
use crate::outbox::{Batch, Effect, Outbox};
use eventseal_core::{AuditChain, ConfigError, Engine, KeySource, Policy};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// Longest time between two checks of the collector buffer: a full batch waits at most this.
const MAX_TICK_MS: u64 = 100;

/// Longest time between two sends of refresh-ahead KMS calls and looks at paused streams.
const MAX_KMS_TICK_MS: u64 = 1_000;

/// Writes one line to the proxy log. Never pass key material or field values.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Metric ids, indexed by [`Counter::index`].
#[derive(Debug)]
pub struct Metrics(Vec<u32>);

impl Metrics {
    fn define() -> Self {
        Self(
            Counter::all()
                // A host that cannot define a metric gets an id that increments nothing.
                .map(|counter| hostcalls::define_metric(MetricType::Counter, &counter.name()).unwrap_or(u32::MAX))
                .collect(),
        )
    }

    /// Adds one to each counter listed, with one host call per distinct counter: a body
    /// with ten sealed fields adds ten to `fields_sealed` at once.
    pub fn add(&self, counters: &[Counter]) {
        let mut counts = vec![0usize; self.0.len()];
        for counter in counters {
            if let Some(count) = counts.get_mut(counter.index()) {
                *count += 1;
            }
        }
        for (&id, &n) in self.0.iter().zip(&counts).filter(|(_, n)| **n > 0) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Adds `n` to one counter.
    pub fn add_n(&self, counter: Counter, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(&id) = self.0.get(counter.index()) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The host clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// This VM's audit trail: the chain, and the records waiting for the collector.
#[derive(Debug)]
pub struct Audit {
    chain: AuditChain,
    outbox: Option<Outbox>,
}

impl Audit {
    /// Appends a record: writes it to the proxy log as one JSON line and, with a collector,
    /// buffers it for delivery.
    pub fn record(&mut self, engine: &Engine, metrics: &Metrics, facts: &eventseal_core::AuditFacts<'_>) {
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
fn account(metrics: &Metrics, outbox: &Outbox, effect: &Effect) {
    metrics.add_n(Counter::AuditDelivered, effect.delivered);
    metrics.add_n(Counter::AuditUndelivered, effect.dropped);
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

/// What every stream shares: the decisions and the counters.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The engine built from the plugin configuration.
    pub engine: Rc<Engine>,
    /// The counters.
    pub metrics: Rc<Metrics>,
    /// This VM's audit trail (one chain instance per worker VM).
    pub audit: Rc<RefCell<Audit>>,
    /// The KMS key source (`keys.vault_transit`), if configured: its data-key cache, calls in
    /// flight and the streams waiting for them.
    pub kms: Option<Rc<RefCell<Kms>>>,
}

/// A random id for this VM's audit chain, so chains of several workers stay apart.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the id is still unique enough to read; the chain stays verifiable.
    let _ = getrandom::fill(&mut bytes);
    format!("eventseal-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The root context of one VM.
#[derive(Default)]
pub struct Root {
    /// The root context's id.
    id: u32,
    shared: Option<Shared>,
    /// The token of the collector call in flight.
    delivery: Option<u32>,
    /// Envoy is removing this VM: the audit buffer is being drained.
    closing: bool,
}

impl Root {
    /// The root context `id`.
    pub fn new(id: u32) -> Self {
        Self { id, ..Self::default() }
    }

    /// The engine, and the KMS key source with its token if the policy has one.
    fn load(&self, metrics: &Rc<Metrics>) -> Result<(Engine, Option<Kms>), ConfigError> {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let policy = Policy::from_json(&text)?;
        refuse_what_envoy_cannot_do(&policy)?;
        if matches!(policy.keys, KeySource::Inline(_)) {
            log(
                LogLevel::Warn,
                "eventseal: keys are inline in the plugin configuration: for development only; use \"keys\": {\"env\": ...}",
            );
        }
        // Envoy passes `vm_config.environment_variables` to the VM as WASI environ.
        let keyring = policy.load_keyring(|name| std::env::var(name).ok())?;
        let token = policy.load_kms_token(|name| std::env::var(name).ok())?;
        let kms = match (&policy.vault_transit, token) {
            (Some(transit), Some(token)) => Some(Kms::new(transit.clone(), token, random_seed(), Rc::clone(metrics))),
            _ => None,
        };
        Ok((Engine::new(policy, keyring), kms))
    }
}

/// Refuses, at load time, rules that this host cannot carry out.
///
/// Signing sets `webhook-*` headers computed over the body. In proxy-wasm ABI 0.2.1 Envoy
/// forwards request and response headers before the filter sees any body: a headers
/// callback that pauses also holds the body back from the filter (proxy-wasm-cpp-host turns
/// `StopIteration` into `StopAllIterationAndWatermark`), and header maps are read-only once
/// forwarded. Refusing here keeps the failure out of the request path.
fn refuse_what_envoy_cannot_do(policy: &Policy) -> Result<(), ConfigError> {
    match policy.rules.iter().position(|rule| rule.sign) {
        Some(i) => Err(ConfigError::Invalid {
            at: format!("/rules/{i}/sign"),
            expected: "false: the Envoy filter cannot add signature headers after reading the body \
                       (proxy-wasm ABI 0.2.1 forwards headers first); sign with the component or the CLI"
                .to_owned(),
        }),
        None => Ok(()),
    }
}

impl Root {
    /// Sends the next batch to the collector if one is due and none is in flight.
    fn flush(&mut self) {
        if self.closing {
            return;
        }
        let Some(shared) = self.shared.clone() else { return };
        let mut audit = shared.audit.borrow_mut();
        let Some(outbox) = audit.outbox.as_mut() else { return };
        let now = now_ms();
        if self.delivery.is_some() && outbox.answer_lost(now) {
            // The host never answered (it always should): send the batch again.
            self.delivery = None;
            let effect = outbox.failed(now, jitter_permille());
            account(&shared.metrics, outbox, &effect);
        }
        if self.delivery.is_some() {
            return;
        }
        let Some(batch) = outbox.due(now) else { return };
        if !self.deliver(outbox, &batch) {
            let effect = outbox.failed(now, jitter_permille());
            account(&shared.metrics, outbox, &effect);
        }
    }

    /// At shutdown: sends the next batch of what the collector has not received yet.
    /// Returns true when nothing is left to wait for (the VM may end).
    fn drain(&mut self) -> bool {
        let Some(shared) = self.shared.clone() else { return true };
        let mut audit = shared.audit.borrow_mut();
        let Some(outbox) = audit.outbox.as_mut() else { return true };
        if self.delivery.is_some() {
            return false;
        }
        let Some(batch) = outbox.final_batch(now_ms()) else { return true };
        if self.deliver(outbox, &batch) {
            return false;
        }
        give_up(&shared.metrics, outbox);
        true
    }

    /// POSTs `batch` to the collector; false if the host refused to send it.
    fn deliver(&mut self, outbox: &Outbox, batch: &Batch) -> bool {
        let config = outbox.config();
        let headers = vec![
            (":method", "POST"),
            (":path", config.path.as_str()),
            (":authority", config.authority.as_str()),
            ("content-type", "application/x-ndjson"),
        ];
        let sent = self.dispatch_http_call(
            &config.cluster,
            headers,
            Some(batch.body.as_bytes()),
            Vec::new(),
            Duration::from_millis(config.timeout_ms),
        );
        match sent {
            Ok(token) => self.delivery = Some(token),
            Err(status) => log(
                LogLevel::Warn,
                &format!(
                    "eventseal: cannot call the audit collector (cluster {:?}): {status:?}",
                    config.cluster
                ),
            ),
        }
        sent.is_ok()
    }
}

/// At shutdown, after the collector failed: the rest of the buffer is dropped and counted.
fn give_up(metrics: &Metrics, outbox: &mut Outbox) {
    let effect = outbox.give_up();
    account(metrics, outbox, &effect);
    log(
        LogLevel::Warn,
        &format!(
            "eventseal: shutting down with {} audit record(s) the collector (cluster {:?}) did not take \
             (they stay in this log; counted in eventseal_audit_undelivered)",
            effect.dropped,
            outbox.config().cluster
        ),
    );
}

/// A random seed for the KMS backoff jitter, so that workers retrying the KMS spread out.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// A random fraction in thousandths, so that workers retrying a collector spread out.
fn jitter_permille() -> u64 {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    u64::from(u16::from_le_bytes(byte)) % 1001
}

impl Context for Root {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.delivery != Some(token_id) {
            if let Some(shared) = &self.shared {
                kms_answered(shared, self.id, token_id, body_size);
            }
            return;
        }
        self.delivery = None;
        let status = self.get_http_call_response_header(":status").and_then(|s| s.parse::<u16>().ok());
        let Some(shared) = self.shared.clone() else { return };
        {
            let mut audit = shared.audit.borrow_mut();
            let Some(outbox) = audit.outbox.as_mut() else { return };
            let effect = match status {
                Some(200..=299) => outbox.delivered(),
                _ if self.closing => {
                    give_up(&shared.metrics, outbox);
                    drop(audit);
                    self.done();
                    return;
                }
                _ => {
                    let cluster = &outbox.config().cluster;
                    let what = status.map_or_else(|| "no response".to_owned(), |s| format!("status {s}"));
                    log(
                        LogLevel::Info,
                        &format!("eventseal: audit collector (cluster {cluster:?}) answered {what}: records kept for a retry"),
                    );
                    outbox.failed(now_ms(), jitter_permille())
                }
            };
            account(&shared.metrics, outbox, &effect);
        }
        // A backlog goes on at once, a batch at a time.
        if !self.closing {
            self.flush();
        } else if self.drain() {
            self.done();
        }
    }

    fn on_done(&mut self) -> bool {
        // Envoy is removing this VM: the records the collector has not received go now
        // (answering false keeps the VM until `done`, after the last answer).
        self.closing = true;
        self.drain()
    }
}

impl RootContext for Root {
    fn on_tick(&mut self) {
        if let Some(kms) = self.shared.as_ref().and_then(|s| s.kms.clone()) {
            // Queued calls go from here, so they outlive the stream that asked (module docs
            // of kms.rs); and paused streams are looked at again, in case a call was lost.
            let now = now_ms();
            kms.borrow_mut().forget_lost(now);
            kms.borrow_mut().send_queued(now, self.id);
            let waiters = kms.borrow_mut().take_waiters();
            wake(waiters, None, self.id);
        }
        self.flush();
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let metrics = Rc::new(Metrics::define());
        match self.load(&metrics) {
            Ok((engine, kms)) => {
                let rules = engine.policy().rules.len();
                let outbox = engine.policy().audit.clone().map(|config| Outbox::new(config, now_ms()));
                let periods = [
                    outbox.as_ref().map(|o| o.config().flush_interval_ms.min(MAX_TICK_MS)),
                    kms.as_ref().map(|k| k.transit().limits.timeout_ms.clamp(1, MAX_KMS_TICK_MS)),
                ];
                if let Some(period) = periods.into_iter().flatten().min() {
                    self.set_tick_period(Duration::from_millis(period));
                }
                self.shared = Some(Shared {
                    engine: Rc::new(engine),
                    metrics,
                    audit: Rc::new(RefCell::new(Audit {
                        chain: AuditChain::new(instance_id()),
                        outbox,
                    })),
                    kms: kms.map(|kms| Rc::new(RefCell::new(kms))),
                });
                self.delivery = None;
                log(LogLevel::Info, &format!("eventseal: configured with {rules} rule(s)"));
                true
            }
            Err(error) => {
                // ConfigError and KeyringError never carry key material.
                log(LogLevel::Error, &format!("eventseal: configuration refused: {error}"));
                self.shared = None;
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.shared {
            Some(shared) => Box::new(Exchange::new(shared.clone(), context_id)),
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
