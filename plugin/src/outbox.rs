//! Audit records waiting for the collector: batching, one delivery in flight, retry with
//! backoff, and a bounded buffer that drops its oldest records (counted) when the collector
//! stays away. Pure state on a millisecond clock the caller passes in, unit-tested natively;
//! `root.rs` does the host calls.
//!
//! Every record is in the proxy log before it gets here, so a record dropped from this
//! buffer is not lost: it is counted in `eventseal_audit_undelivered` and stays in the log.
//!
//! When the VM shuts down (Envoy removes the filter, e.g. on a configuration update), what
//! is buffered is sent at once, a batch at a time, one attempt each: a collector that fails
//! then gets no retry, and the rest is counted undelivered (still in the log).

use eventseal_core::AuditDelivery;
use std::collections::VecDeque;

/// Longest wait between two attempts while the collector fails.
const MAX_BACKOFF_MS: u64 = 60_000;
/// An answer this much later than the call's timeout is taken as lost, and the batch resent.
const LOST_ANSWER_GRACE_MS: u64 = 5_000;

/// A batch to POST: the records joined by `\n`.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    /// The request body (`application/x-ndjson`).
    pub body: String,
    /// How many records it holds.
    pub records: usize,
}

/// What a change to the buffer means for the counters and the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Records the collector acknowledged.
    pub delivered: usize,
    /// Records dropped from the buffer, undelivered (still in the proxy log).
    pub dropped: usize,
    /// The first drop since the last successful delivery: warn once.
    pub warn: bool,
}

/// The buffer of one filter instance (one worker VM).
#[derive(Debug)]
pub struct Outbox {
    config: AuditDelivery,
    waiting: VecDeque<String>,
    /// The batch sent and not yet answered, oldest first, with when it was sent.
    in_flight: Option<(Vec<String>, u64)>,
    /// Failed attempts in a row.
    failures: u32,
    /// No attempt before this time.
    retry_at: u64,
    /// When the last batch was sent (or the outbox started).
    last_sent: u64,
    /// Records have been dropped since the last successful delivery.
    dropping: bool,
    /// What `eventseal_audit_buffered` last showed of this buffer.
    pub reported: crate::metrics::Reported,
}

impl Outbox {
    /// An empty outbox, started at `now_ms`.
    pub fn new(config: AuditDelivery, now_ms: u64) -> Self {
        Self {
            config,
            waiting: VecDeque::new(),
            in_flight: None,
            failures: 0,
            retry_at: 0,
            last_sent: now_ms,
            dropping: false,
            reported: crate::metrics::Reported::default(),
        }
    }

    /// The delivery configuration.
    pub fn config(&self) -> &AuditDelivery {
        &self.config
    }

    /// Records buffered (waiting and in flight).
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.as_ref().map_or(0, |(b, _)| b.len())
    }

    /// Buffers one record; drops the oldest waiting ones beyond the bound.
    pub fn push(&mut self, record: String) -> Effect {
        self.waiting.push_back(record);
        self.enforce_bound()
    }

    /// The batch to send now, if one is due: nothing in flight, not backing off, and a full
    /// batch waiting or the flush interval elapsed. The batch counts as in flight from here.
    pub fn due(&mut self, now_ms: u64) -> Option<Batch> {
        if self.in_flight.is_some() || self.waiting.is_empty() || now_ms < self.retry_at {
            return None;
        }
        let full = self.waiting.len() >= self.config.batch_records;
        let interval_elapsed = now_ms.saturating_sub(self.last_sent) >= self.config.flush_interval_ms;
        if !full && !interval_elapsed && self.failures == 0 {
            return None;
        }
        Some(self.take_batch(now_ms))
    }

    /// At shutdown: the next batch, whatever the interval or backoff, if none is in flight.
    pub fn final_batch(&mut self, now_ms: u64) -> Option<Batch> {
        if self.in_flight.is_some() || self.waiting.is_empty() {
            return None;
        }
        Some(self.take_batch(now_ms))
    }

    /// At shutdown, when the collector failed: everything buffered is dropped (it stays in
    /// the proxy log), counted as undelivered.
    pub fn give_up(&mut self) -> Effect {
        let dropped = self.len();
        self.waiting.clear();
        self.in_flight = None;
        Effect {
            dropped,
            ..Effect::default()
        }
    }

    /// Moves the next batch in flight.
    fn take_batch(&mut self, now_ms: u64) -> Batch {
        let take = self.waiting.len().min(self.config.batch_records);
        let batch: Vec<String> = self.waiting.drain(..take).collect();
        let body = batch.join("\n");
        self.last_sent = now_ms;
        self.in_flight = Some((batch, now_ms));
        Batch { body, records: take }
    }

    /// Whether the answer to the batch in flight is overdue (the host lost it): then it is
    /// treated as a failure and the batch is sent again later.
    pub fn answer_lost(&self, now_ms: u64) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|(_, sent)| now_ms.saturating_sub(*sent) > self.config.timeout_ms + LOST_ANSWER_GRACE_MS)
    }

    /// The collector acknowledged the batch in flight.
    pub fn delivered(&mut self) -> Effect {
        let delivered = self.in_flight.take().map_or(0, |(b, _)| b.len());
        self.failures = 0;
        self.retry_at = 0;
        self.dropping = false;
        Effect {
            delivered,
            ..Effect::default()
        }
    }

    /// The batch in flight failed (non-2xx, no connection, timeout): it goes back to the
    /// front of the buffer, and the next attempt waits `flush_interval × 2^failures` (at
    /// most a minute) plus `jitter_permille`‰ of that.
    pub fn failed(&mut self, now_ms: u64, jitter_permille: u64) -> Effect {
        if let Some((batch, _)) = self.in_flight.take() {
            for record in batch.into_iter().rev() {
                self.waiting.push_front(record);
            }
        }
        self.failures = self.failures.saturating_add(1);
        let backoff = self
            .config
            .flush_interval_ms
            .saturating_mul(1u64 << self.failures.min(16))
            .min(MAX_BACKOFF_MS);
        self.retry_at = now_ms + backoff + backoff * jitter_permille.min(1000) / 1000 / 4;
        self.enforce_bound()
    }

    fn enforce_bound(&mut self) -> Effect {
        let mut effect = Effect::default();
        while self.len() > self.config.buffer_records && self.waiting.pop_front().is_some() {
            effect.dropped += 1;
        }
        if effect.dropped > 0 && !self.dropping {
            self.dropping = true;
            effect.warn = true;
        }
        effect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(batch: usize, buffer: usize) -> Outbox {
        let mut config = AuditDelivery::new("collector");
        config.batch_records = batch;
        config.buffer_records = buffer;
        config.flush_interval_ms = 1000;
        config.timeout_ms = 2000;
        Outbox::new(config, 0)
    }

    fn push(outbox: &mut Outbox, records: std::ops::Range<usize>) -> Effect {
        let mut total = Effect::default();
        for i in records {
            let e = outbox.push(format!("r{i}"));
            total.dropped += e.dropped;
            total.warn |= e.warn;
        }
        total
    }

    #[test]
    fn a_full_batch_goes_at_once_a_partial_one_after_the_interval() {
        let mut o = outbox(3, 10);
        push(&mut o, 0..2);
        assert_eq!(o.due(10), None, "not full, interval not elapsed");
        push(&mut o, 2..4);
        let batch = o.due(20).expect("a full batch is due");
        assert_eq!((batch.body.as_str(), batch.records), ("r0\nr1\nr2", 3));
        assert_eq!(o.due(5000), None, "one batch in flight at a time");
        assert_eq!(o.delivered().delivered, 3);
        assert_eq!(o.due(500), None, "r3 waits for the interval");
        assert_eq!(o.due(1020).map(|b| b.body), Some("r3".to_owned()));
        o.delivered();
        assert_eq!(o.len(), 0);
        assert_eq!(o.due(10_000), None, "nothing to send");
    }

    #[test]
    fn at_shutdown_batches_go_at_once_and_a_failure_gives_up_on_the_rest() {
        let mut o = outbox(2, 10);
        push(&mut o, 0..5);
        assert!(o.due(0).is_some());
        o.failed(0, 0);
        assert_eq!(o.due(1), None, "backing off");
        let batch = o.final_batch(1).expect("no backoff at shutdown");
        assert_eq!(batch.body, "r0\nr1");
        assert_eq!(o.final_batch(1), None, "one batch in flight at a time");
        assert_eq!(o.delivered().delivered, 2);
        assert_eq!(o.final_batch(2).map(|b| b.body), Some("r2\nr3".to_owned()));
        let effect = o.give_up();
        assert_eq!((effect.dropped, effect.delivered), (3, 0), "the batch in flight and r4");
        assert_eq!(o.len(), 0);
        assert_eq!(o.final_batch(3), None);
    }

    #[test]
    fn a_failed_batch_is_kept_in_order_and_retried_with_growing_backoff() {
        let mut o = outbox(2, 10);
        push(&mut o, 0..3);
        assert!(o.due(0).is_some());
        assert_eq!(o.failed(0, 0), Effect::default());
        assert_eq!(o.len(), 3);
        assert_eq!(o.due(1999), None, "backing off 2 s");
        assert_eq!(o.due(2000).map(|b| b.body), Some("r0\nr1".to_owned()));
        o.failed(2000, 0);
        assert_eq!(o.due(5999), None, "backing off 4 s");
        assert!(o.due(6000).is_some());
        assert_eq!(o.delivered().delivered, 2);
        assert_eq!(o.due(6001), None, "a partial batch waits for the interval again");
        assert_eq!(o.due(7000).map(|b| b.body), Some("r2".to_owned()));
        for _ in 0..20 {
            o.failed(0, 1000);
        }
        assert!(o.retry_at <= MAX_BACKOFF_MS + MAX_BACKOFF_MS / 4, "backoff is capped");
    }

    #[test]
    fn beyond_the_bound_the_oldest_are_dropped_counted_and_warned_once() {
        let mut o = outbox(2, 4);
        assert!(o.due(0).is_none());
        push(&mut o, 0..3);
        let _ = o.due(2000).expect("sent r0 r1");
        let effect = push(&mut o, 3..6);
        assert_eq!((effect.dropped, effect.warn), (2, true), "r2 r3 dropped; r0 r1 in flight stay");
        assert_eq!(
            push(&mut o, 6..7),
            Effect {
                dropped: 1,
                ..Effect::default()
            },
            "warned once per episode"
        );
        assert_eq!(o.failed(2000, 0), Effect::default(), "the failed batch comes back within the bound");
        assert_eq!(o.waiting, ["r0", "r1", "r5", "r6"].map(String::from));
        assert!(o.due(100_000).is_some());
        o.delivered();
        assert!(push(&mut o, 7..10).warn, "a new episode warns again");
    }

    #[test]
    fn an_answer_that_never_comes_is_taken_as_lost() {
        let mut o = outbox(1, 10);
        push(&mut o, 0..1);
        assert!(o.due(0).is_some());
        assert!(!o.answer_lost(7000));
        assert!(o.answer_lost(7001));
    }
}
