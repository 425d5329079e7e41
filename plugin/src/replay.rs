//! Core's bounded replay cache ([`eventseal_core::ReplayBucket`]) over proxy-wasm shared
//! data, so that a message id accepted by one stream is refused on every other stream and
//! worker of the same VM id.
//!
//! One shared-data entry per bucket: key `eventseal.replay.<bucket>`, value the bucket's
//! encoding. A bucket is read, changed by core and written back with the CAS it was read
//! with, so of two workers racing on it one writes and the other reads again and retries.
//! Entries are never deleted (ABI 0.2.1 cannot), but there are at most
//! `signatures.replay_capacity / 16` of them, each at most 256 bytes. ABI 0.2.1 has no
//! "insert if absent": the first write of a bucket is unconditional, so the writer reads
//! it back and retries unless it holds its own bytes. Two workers creating one bucket in
//! the same instant can still lose one id, once per bucket in the life of the VM id.
//! Host errors and lasting contention fail closed: the message is refused with
//! `replay-cache-full` (503, `Retry-After: 1`), never accepted unrecorded.

use crate::host::{self, Metrics};
use crate::metrics::Counter;
use eventseal_core::{Admission, ReplayBucket, ReplayCache, ReplaySlot, bucket_count};

/// Key prefix of replay buckets in shared data.
const PREFIX: &str = "eventseal.replay.";

/// Reads and writes of one bucket before giving up on contention.
const ATTEMPTS: usize = 4;

/// Refusal when the bucket cannot be read or written.
const UNAVAILABLE: Admission = Admission::Full { retry_after: 1 };

/// The replay cache of this VM id, for one decision.
#[derive(Debug)]
pub struct SharedReplayCache<'a> {
    buckets: usize,
    /// Where each bucket write reports the ids it added, less the expired ones it dropped
    /// (the `eventseal_replay_ids` gauge).
    metrics: &'a Metrics,
}

impl<'a> SharedReplayCache<'a> {
    /// The cache for a capacity of `capacity` ids (`signatures.replay_capacity`).
    pub fn new(capacity: usize, metrics: &'a Metrics) -> Self {
        Self {
            buckets: bucket_count(capacity),
            metrics,
        }
    }
}

impl ReplayCache for SharedReplayCache<'_> {
    fn admit(&mut self, id: &str, expires_at: i64, now: i64) -> Admission {
        let slot = ReplaySlot::of(id, self.buckets);
        let key = format!("{PREFIX}{}", slot.bucket);
        for _ in 0..ATTEMPTS {
            let Ok((current, cas)) = host::shared_data(&key) else {
                return UNAVAILABLE;
            };
            let Some(mut bucket) = ReplayBucket::decode(current.as_deref().unwrap_or_default()) else {
                return UNAVAILABLE;
            };
            let before = bucket.len();
            let admission = bucket.admit(slot, expires_at, now);
            if admission != Admission::New {
                return admission;
            }
            let value = bucket.encode();
            // `CasMismatch`: another stream or worker wrote the bucket since we read it.
            if host::set_shared_data(&key, &value, cas).is_err() {
                continue;
            }
            let kept = cas.is_some() || matches!(host::shared_data(&key), Ok((Some(stored), _)) if stored == value);
            if kept {
                self.metrics.shift(Counter::ReplayIds, bucket.len() as i64 - before as i64);
                return Admission::New;
            }
        }
        UNAVAILABLE
    }
}
