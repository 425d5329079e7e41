//! The Vault Transit key source on Envoy: sends the calls core's [`DataKeyCache`] asks for
//! with `dispatch_http_call`, hands their answers back to it, and keeps the list of streams
//! paused for each call. Nothing here decides anything: when to call, what an answer means
//! and how long to back off are core's.
//!
//! Only the context whose callback sent a call gets its answer (the SDK routes it there),
//! and Envoy cancels a context's calls when it deletes the context; yet every stream of this
//! VM that needs the same data key waits for that one call. So the paused streams are kept
//! here, by call, and whoever receives an answer resumes them all, each under its own
//! context (`proxy_set_effective_context`). A stream sends a call only from its own
//! callback; the root context sends the rest on its next tick: refresh-ahead calls, which
//! no stream waits for, calls of a stream resumed inside another's callback, and calls
//! whose sender ended before the answer (sent again, the same call to core, so the streams
//! waiting for it go on waiting and nothing counts as a failure). A call the host never
//! answers at all is looked at again on every tick, and core counts it as lost after twice
//! the timeout (503, then backoff).

use crate::host::{self, Metrics};
use crate::metrics::{Counter, Reported};
use eventseal_core::{Call, CallId, DataKey, DataKeyCache, DataKeyLookup, KmsNeeds, Lease, Outcome, SecretBytes, Unwrap, VaultTransit};
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

/// A stream paused for the KMS, of any transport: it decides on its body again once the
/// calls it waited for complete.
pub trait Paused {
    /// The calls completed (`failed`: one failed, with this `Retry-After`). Runs under the
    /// stream's own context, inside the callback of context `running`.
    fn resume(&mut self, failed: Option<u32>, running: u32);
}

/// A stream paused for the KMS: its context id, and how to reach its state.
pub type Waiter = (u32, Weak<RefCell<dyn Paused>>);

/// The KMS key source of one VM.
pub struct Kms {
    transit: VaultTransit,
    token: SecretBytes,
    cache: DataKeyCache,
    /// Calls sent, by the host's token.
    sent: HashMap<u32, Sent>,
    /// Streams paused for a call.
    waiting: BTreeMap<CallId, Vec<Waiter>>,
    /// Refresh-ahead calls for the root context to send.
    queued: Vec<Call>,
    metrics: Rc<Metrics>,
    /// What `eventseal_kms_calls_in_flight` last showed of `sent`.
    in_flight: Reported,
}

/// A call the host accepted.
struct Sent {
    call: Call,
    /// The context whose callback sent it: the answer goes there, and the call ends with it.
    sender: u32,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No token, no keys.
        f.debug_struct("Kms")
            .field("source", self.cache.source())
            .field("in_flight", &self.cache.in_flight())
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

/// What a body may do now.
pub enum Prepared {
    /// Decide now, sealing with this data key (if the body seals).
    Ready(Option<Arc<DataKey>>),
    /// Pause until these calls complete.
    Wait(Vec<CallId>),
    /// Refuse with 503 and this `Retry-After`.
    Unavailable(u32),
}

impl Kms {
    /// The key source `transit`, authenticated with `token`; `seed` spreads retries; the
    /// calls are counted in `metrics`.
    pub fn new(transit: VaultTransit, token: SecretBytes, seed: u64, metrics: Rc<Metrics>) -> Self {
        let cache = DataKeyCache::new(transit.source(), transit.limits, seed);
        Self {
            transit,
            token,
            cache,
            sent: HashMap::new(),
            waiting: BTreeMap::new(),
            queued: Vec::new(),
            in_flight: Reported::default(),
            metrics,
        }
    }

    /// The key source's configuration.
    pub fn transit(&self) -> &VaultTransit {
        &self.transit
    }

    /// The unwrapped data keys at `now_ms`, for opening.
    pub fn lookup(&self, now_ms: u64) -> impl DataKeyLookup + '_ {
        self.cache.lookup(now_ms)
    }

    /// Asks the cache for everything `needs` lists, sending the calls it says to send from
    /// `sender`, the context whose own callback runs now; with `None` (a stream resumed
    /// inside another context's callback) they wait for the root's next tick.
    pub fn prepare(&mut self, now_ms: u64, needs: &KmsNeeds, sender: Option<u32>) -> Prepared {
        let mut wait = Vec::new();
        let mut seal = None;
        if needs.seals > 0 {
            match self.cache.lease(now_ms, needs.seals) {
                Lease::Ready { key, refresh } => {
                    seal = Some(key);
                    self.queued.extend(refresh);
                }
                lease => match self.follow(now_ms, lease, sender) {
                    Ok(Some(id)) => wait.push(id),
                    Ok(None) => {}
                    Err(retry_after) => return Prepared::Unavailable(retry_after),
                },
            }
        }
        let source = self.cache.source().as_str().to_owned();
        for wrapped in &needs.unwrap {
            if !matches!(self.cache.lookup(now_ms).unwrap(&source, wrapped), Unwrap::Pending) {
                continue;
            }
            let lease = self.cache.request_unwrap(now_ms, wrapped);
            match self.follow(now_ms, lease, sender) {
                Ok(Some(id)) => wait.push(id),
                Ok(None) => {}
                Err(retry_after) => return Prepared::Unavailable(retry_after),
            }
        }
        if wait.is_empty() {
            Prepared::Ready(seal)
        } else {
            Prepared::Wait(wait)
        }
    }

    /// Sends a call the cache started; the call to wait for, or `Err(retry_after)`.
    fn follow(&mut self, now_ms: u64, lease: Lease, sender: Option<u32>) -> Result<Option<CallId>, u32> {
        match lease {
            Lease::Start(call) => {
                let id = call.id;
                match sender {
                    Some(sender) => self.send(now_ms, call, sender)?,
                    None => self.queued.push(call),
                }
                Ok(Some(id))
            }
            Lease::Wait(id) => {
                // A call waiting for the root's tick is now needed: send it at once.
                if let Some(sender) = sender
                    && let Some(at) = self.queued.iter().position(|call| call.id == id)
                {
                    let call = self.queued.remove(at);
                    self.send(now_ms, call, sender)?;
                }
                Ok(Some(id))
            }
            Lease::Unavailable { retry_after } => Err(retry_after),
            _ => Ok(None),
        }
    }

    /// Sends one call from the active context, `sender`. A call the host refuses to send
    /// fails at once.
    fn send(&mut self, now_ms: u64, call: Call, sender: u32) -> Result<(), u32> {
        let request = self.transit.call(&call.need, &self.token);
        let headers = request.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let timeout = Duration::from_millis(self.transit.limits.timeout_ms);
        match host::dispatch_post(&self.transit.cluster, &headers, &request.body, timeout) {
            Ok(token) => {
                self.metrics.add(&[Counter::KmsCalls]);
                self.sent.insert(token, Sent { call, sender });
                self.report_in_flight();
                Ok(())
            }
            Err(status) => {
                self.metrics.add(&[Counter::KmsCalls, Counter::KmsCallFailures]);
                host::log(
                    LogLevel::Warn,
                    &format!("eventseal: cannot call the KMS (cluster {:?}): {status:?}", self.transit.cluster),
                );
                Err(self.cache.complete(now_ms, call.id, Outcome::Failed).unwrap_or(1))
            }
        }
    }

    /// Sends the queued calls (from the root context `root`, on its tick).
    pub fn send_queued(&mut self, now_ms: u64, root: u32) {
        for call in std::mem::take(&mut self.queued) {
            // A call that cannot be sent was counted as failed: its waiters, looked at
            // again on this tick, are refused; a refresh's current key goes on.
            let _ = self.send(now_ms, call, root);
        }
    }

    /// Registers a paused stream for each of `calls`, once.
    pub fn wait(&mut self, calls: &[CallId], waiter: &Waiter) {
        for id in calls {
            let list = self.waiting.entry(*id).or_default();
            if !list.iter().any(|(context, _)| *context == waiter.0) {
                list.push(waiter.clone());
            }
        }
    }

    /// Reads the answer to call `token` (in its response callback) and reports it to the
    /// cache. Returns the streams that waited for it, and `Some(retry_after)` if it failed.
    fn answered(&mut self, now_ms: u64, token: u32, body_size: usize) -> (Vec<Waiter>, Option<u32>) {
        let Some(Sent {
            call: Call { id, need }, ..
        }) = self.sent.remove(&token)
        else {
            return (Vec::new(), None);
        };
        self.report_in_flight();
        let status = host::call_status();
        let body = host::call_body(body_size);
        let outcome = self.transit.outcome(&need, status, &body);
        if matches!(outcome, Outcome::Failed) {
            self.metrics.add(&[Counter::KmsCallFailures]);
            let what = status.map_or_else(|| "no response".to_owned(), |s| format!("status {s}"));
            host::log(
                LogLevel::Warn,
                &format!("eventseal: the KMS (cluster {:?}) answered {what}", self.transit.cluster),
            );
        }
        let failed = self.cache.complete(now_ms, id, outcome);
        (self.waiting.remove(&id).unwrap_or_default(), failed)
    }

    /// Context `context` is ending, and the host cancels the calls it sent: they go to the
    /// root's next tick, the same calls to core, so whoever waits for them keeps waiting.
    pub fn sender_gone(&mut self, context: u32) {
        let mut resend = Vec::new();
        self.sent.retain(|_, sent| {
            let cancelled = sent.sender == context;
            if cancelled {
                resend.push(sent.call.clone());
            }
            !cancelled
        });
        for list in self.waiting.values_mut() {
            list.retain(|(waiter, _)| *waiter != context);
        }
        self.metrics.add_n(Counter::KmsCallsResent, resend.len());
        self.queued.extend(resend);
        self.report_in_flight();
    }

    /// Moves the in-flight gauge by what `sent` changed since it was last reported.
    fn report_in_flight(&mut self) {
        let change = self.in_flight.change(self.sent.len());
        self.metrics.shift(Counter::KmsCallsInFlight, change);
    }

    /// Forgets the calls core counts as lost (the host never answered them within twice
    /// the timeout), so that the table of calls sent does not grow.
    pub fn forget_lost(&mut self, now_ms: u64) {
        self.cache.expire_lost_calls(now_ms);
        let before = self.sent.len();
        let cache = &self.cache;
        self.sent.retain(|_, sent| cache.awaits(sent.call.id));
        self.metrics.add_n(Counter::KmsCallFailures, before - self.sent.len());
        self.report_in_flight();
    }

    /// Every paused stream, to look at again (their calls may have been lost).
    pub fn take_waiters(&mut self) -> Vec<Waiter> {
        let mut all: Vec<Waiter> = Vec::new();
        for waiter in std::mem::take(&mut self.waiting).into_values().flatten() {
            if !all.iter().any(|(context, _)| *context == waiter.0) {
                all.push(waiter);
            }
        }
        all
    }
}

/// The answer to KMS call `token` arrived in the callback of context `own`: report it, and
/// resume every stream that waited for it.
pub fn answered(kms: &RefCell<Kms>, own: u32, token: u32, body_size: usize) {
    let (waiters, failed) = kms.borrow_mut().answered(host::now_ms(), token, body_size);
    wake(waiters, failed, own);
}

/// Resumes paused streams, each under its own context, then makes `own` (the context whose
/// callback runs) the effective context again. A stream that is gone is skipped.
pub fn wake(waiters: Vec<Waiter>, failed: Option<u32>, own: u32) {
    for (id, stream) in waiters {
        let Some(stream) = stream.upgrade() else { continue };
        if !host::set_effective_context(id) {
            continue;
        }
        // Borrowed means it is the stream whose callback runs now: it is not paused.
        if let Ok(mut stream) = stream.try_borrow_mut() {
            stream.resume(failed, own);
        }
    }
    host::set_effective_context(own);
}
