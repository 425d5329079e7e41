//! What every stream of one VM shares: the engine, the counters, the audit trail and the
//! KMS key source. Built once per VM by the root context, cloned into each stream.

use crate::host::{Metrics, log, now_ms};
use crate::kms::Kms;
use crate::metrics::Counter;
use crate::outbox::{Effect, Outbox};
use eventseal_core::{AuditChain, AuditFacts, Engine};
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::rc::Rc;

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
pub fn account(metrics: &Metrics, outbox: &Outbox, effect: &Effect) {
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

/// A random id for this VM's audit chain, so chains of several workers stay apart.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the id is still unique enough to read; the chain stays verifiable.
    let _ = getrandom::fill(&mut bytes);
    format!("eventseal-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
