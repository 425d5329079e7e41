//! The root context: loads the policy and keyring once per VM, defines the counters,
//! hands every HTTP stream the shared [`Vm`], delivers audit batches to the collector, and
//! on its tick sends the KMS calls no stream can send.

use crate::host::{self, Metrics, log, now_ms};
use crate::http::{HttpFilter, Unconfigured};
use crate::kms::{self, Kms};
use crate::nats::{NatsStream, UnconfiguredNats};
use crate::outbox::{Batch, Outbox};
use crate::vm::{Vm, account};
use eventseal_core::{ConfigError, Engine, EnvoyHeaders, KeySource, Operation, Policy, Protocol};
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

/// Longest time between two checks of the collector buffer: a full batch waits at most this.
const MAX_TICK_MS: u64 = 100;

/// Longest time between two sends of refresh-ahead KMS calls and looks at paused streams.
const MAX_KMS_TICK_MS: u64 = 1_000;

/// How often held streams are looked at until Envoy shows it passes their bodies.
const HOLD_TICK_MS: u64 = 250;

/// How soon a NATS connection told why it is closed is closed.
const NATS_CLOSE_TICK_MS: u64 = 100;

/// The root context of one VM.
#[derive(Default)]
pub struct Root {
    /// The root context's id.
    id: u32,
    vm: Option<Vm>,
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
        let bytes = host::plugin_configuration();
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
/// Signing sets `webhook-*` headers computed over the body. With `envoy.headers: forward`
/// Envoy forwards request and response headers before the filter sees any body: a headers
/// callback that pauses also holds the body back from the filter (without
/// `allow_on_headers_stop_iteration`, proxy-wasm-cpp-host turns `StopIteration` into
/// `StopAllIterationAndWatermark`), and header maps are read-only once forwarded. Only
/// `envoy.headers: hold` can sign. Refusing here keeps the failure out of the request path.
fn refuse_what_envoy_cannot_do(policy: &Policy) -> Result<(), ConfigError> {
    if policy.envoy_headers == EnvoyHeaders::Hold || policy.protocol == Protocol::Nats {
        return Ok(());
    }
    match policy.rules.iter().position(|rule| rule.carries(Operation::Sign)) {
        Some(i) => Err(ConfigError::Invalid {
            at: format!("/rules/{i}/sign"),
            expected: "false: with \"envoy\": {\"headers\": \"forward\"} the Envoy filter cannot add signature \
                       headers after reading the body (the headers went first); use \"headers\": \"hold\" \
                       (Envoy >= 1.35 with allow_on_headers_stop_iteration), or sign with the component or the CLI"
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
        let Some(vm) = self.vm.clone() else { return };
        let mut audit = vm.audit.borrow_mut();
        let Some(outbox) = audit.outbox.as_mut() else { return };
        let now = now_ms();
        if self.delivery.is_some() && outbox.answer_lost(now) {
            // The host never answered (it always should): send the batch again.
            self.delivery = None;
            let effect = outbox.failed(now, jitter_permille());
            account(&vm.metrics, outbox, &effect);
        }
        if self.delivery.is_some() {
            return;
        }
        let Some(batch) = outbox.due(now) else { return };
        if !self.deliver(outbox, &batch) {
            let effect = outbox.failed(now, jitter_permille());
            account(&vm.metrics, outbox, &effect);
        }
    }

    /// At shutdown: sends the next batch of what the collector has not received yet.
    /// Returns true when nothing is left to wait for (the VM may end).
    fn drain(&mut self) -> bool {
        let Some(vm) = self.vm.clone() else { return true };
        let mut audit = vm.audit.borrow_mut();
        let Some(outbox) = audit.outbox.as_mut() else { return true };
        if self.delivery.is_some() {
            return false;
        }
        let Some(batch) = outbox.final_batch(now_ms()) else { return true };
        if self.deliver(outbox, &batch) {
            return false;
        }
        give_up(&vm.metrics, outbox);
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
        let sent = host::dispatch_post(
            &config.cluster,
            &headers,
            batch.body.as_bytes(),
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

/// On NATS a message cannot wait for a KMS call (plugin/src/nats.rs): the data key that
/// seals is asked for when the VM starts, from the first tick, so that the first publishes
/// find it. Over HTTP a stream waits for it instead.
fn prefetch_data_key(vm: &Vm) {
    let policy = vm.engine.policy();
    let seals = policy
        .rules
        .iter()
        .any(|r| r.applies_to(eventseal_core::Direction::Request) && r.carries(Operation::Seal));
    if let (Protocol::Nats, true, Some(kms)) = (policy.protocol, seals, vm.kms.as_deref()) {
        let needs = eventseal_core::KmsNeeds {
            seals: 1,
            unwrap: Vec::new(),
        };
        let _ = kms.borrow_mut().prepare(now_ms(), &needs, None);
    }
}

/// The `protocol` a configuration names, read even when the rest of it is refused.
fn declared_protocol(configuration: &[u8]) -> Protocol {
    let named = serde_json::from_slice::<serde_json::Value>(configuration)
        .ok()
        .and_then(|doc| doc.get("protocol").and_then(|p| p.as_str()).map(|p| p == "nats"));
    if named == Some(true) { Protocol::Nats } else { Protocol::Http }
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
            if let Some(kms) = self.vm.as_ref().and_then(|vm| vm.kms.as_deref()) {
                kms::answered(kms, self.id, token_id, body_size);
            }
            return;
        }
        self.delivery = None;
        let status = host::call_status();
        let Some(vm) = self.vm.clone() else { return };
        {
            let mut audit = vm.audit.borrow_mut();
            let Some(outbox) = audit.outbox.as_mut() else { return };
            let effect = match status {
                Some(200..=299) => outbox.delivered(),
                _ if self.closing => {
                    give_up(&vm.metrics, outbox);
                    drop(audit);
                    host::done();
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
            account(&vm.metrics, outbox, &effect);
        }
        // A backlog goes on at once, a batch at a time.
        if !self.closing {
            self.flush();
        } else if self.drain() {
            host::done();
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
        if let Some(vm) = &self.vm {
            // Held streams that never got a body: Envoy lacks the knob (vm.rs, HoldCheck).
            let overdue = vm.hold.borrow_mut().overdue(now_ms());
            for (id, stream) in overdue {
                if let Some(stream) = stream.upgrade()
                    && host::set_effective_context(id)
                    && let Ok(mut stream) = stream.try_borrow_mut()
                {
                    stream.fail_unheld();
                }
            }
            // NATS connections whose -ERR went out in an earlier callback.
            for id in vm.closes.borrow_mut().take() {
                if host::set_effective_context(id) {
                    host::close_client();
                }
            }
            host::set_effective_context(self.id);
        }
        if let Some(kms) = self.vm.as_ref().and_then(|vm| vm.kms.clone()) {
            // Queued calls go from here, so they outlive the stream that asked (module docs
            // of kms.rs); and paused streams are looked at again, in case a call was lost.
            let now = now_ms();
            kms.borrow_mut().forget_lost(now);
            kms.borrow_mut().send_queued(now, self.id);
            let waiters = kms.borrow_mut().take_waiters();
            kms::wake(waiters, None, self.id);
        }
        self.flush();
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let metrics = Rc::new(Metrics::define());
        match self.load(&metrics) {
            Ok((engine, kms)) => {
                let rules = engine.policy().rules.len();
                let periods = [
                    engine.policy().audit.as_ref().map(|audit| audit.flush_interval_ms.min(MAX_TICK_MS)),
                    kms.as_ref().map(|k| k.transit().limits.timeout_ms.clamp(1, MAX_KMS_TICK_MS)),
                    (engine.policy().envoy_headers == EnvoyHeaders::Hold).then_some(HOLD_TICK_MS),
                    (engine.policy().protocol == Protocol::Nats).then_some(NATS_CLOSE_TICK_MS),
                ];
                if let Some(period) = periods.into_iter().flatten().min() {
                    host::set_tick_period(Duration::from_millis(period));
                }
                let vm = Vm::new(engine, metrics, kms);
                prefetch_data_key(&vm);
                self.vm = Some(vm);
                self.delivery = None;
                log(LogLevel::Info, &format!("eventseal: configured with {rules} rule(s)"));
                true
            }
            Err(error) => {
                // ConfigError and KeyringError never carry key material.
                log(LogLevel::Error, &format!("eventseal: configuration refused: {error}"));
                self.vm = None;
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.vm {
            Some(vm) => Box::new(HttpFilter::new(vm.clone(), context_id)),
            None => Box::new(Unconfigured),
        })
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(match &self.vm {
            Some(vm) => Box::new(NatsStream::new(vm.clone(), context_id)),
            None => Box::new(UnconfiguredNats),
        })
    }

    /// The same module is an HTTP filter or a NATS network filter, as the policy says. A
    /// refused policy still says which, so its connections are refused the right way.
    fn get_type(&self) -> Option<ContextType> {
        let protocol = match &self.vm {
            Some(vm) => vm.engine.policy().protocol,
            None => declared_protocol(&host::plugin_configuration()),
        };
        Some(match protocol {
            Protocol::Nats => ContextType::StreamContext,
            _ => ContextType::HttpContext,
        })
    }
}
