//! Replay protection with a fixed memory bound.
//!
//! Accepted signature ids are remembered until their timestamp tolerance passes, in a
//! fixed number of buckets of [`REPLAY_WAYS`] entries each: an id goes to the bucket its
//! SHA-256 picks, as a 64-bit fingerprint with its expiry (16 bytes). A bucket drops its
//! expired entries whenever it is written. So the memory is at most `capacity × 16`
//! bytes of entries, whatever the traffic.
//!
//! When the id's bucket is full of unexpired entries, the id cannot be remembered, and
//! the message is refused (`replay-cache-full`, 503 with `Retry-After` until the bucket's
//! first entry expires): the cache fails closed, it never forgets an unexpired id to make
//! room, so no replay inside the tolerance window is ever accepted. Only messages whose
//! signature verified reach the cache, so only holders of a signing key can fill it.
//! Operators size it at no less than the peak rate of verified messages times the
//! tolerance window (docs/CONFIG.md, `signatures.replay_capacity`).

use sha2::{Digest, Sha256};

/// Entries per bucket.
pub const REPLAY_WAYS: usize = 16;

/// The default capacity (entries): 2^20, 16 MiB of entries at most; with the default
/// tolerance of 300 s, about 3 500 verified messages per second.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

/// Bytes of one entry in a bucket's encoding: fingerprint and expiry, little-endian.
const ENTRY_BYTES: usize = 16;

/// What a replay cache says about an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not seen inside its window: now remembered.
    New,
    /// Seen before and not expired: a replay.
    Replayed,
    /// Its bucket is full of unexpired ids: it cannot be remembered, so it is refused.
    /// A retry may succeed after `retry_after` seconds.
    Full {
        /// Seconds until the bucket's first entry expires.
        retry_after: u64,
    },
}

/// Where an id goes: its bucket and its fingerprint in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySlot {
    /// The bucket, below [`bucket_count`].
    pub bucket: usize,
    fingerprint: u64,
}

/// Buckets for a capacity of `capacity` entries (at least one).
pub fn bucket_count(capacity: usize) -> usize {
    capacity.div_ceil(REPLAY_WAYS).max(1)
}

impl ReplaySlot {
    /// The slot of `id` among `buckets` buckets.
    pub fn of(id: &str, buckets: usize) -> Self {
        let digest = Sha256::digest(id.as_bytes());
        let word = |at: usize| u64::from_le_bytes(digest[at..at + 8].try_into().expect("8 bytes"));
        let bucket = usize::try_from(word(0) % buckets.max(1) as u64).unwrap_or(0);
        Self {
            bucket,
            fingerprint: word(8),
        }
    }
}

/// One bucket: up to [`REPLAY_WAYS`] (fingerprint, expiry) entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayBucket(Vec<(u64, i64)>);

impl ReplayBucket {
    /// Reads a bucket's encoding; `None` if it is not one (a host fails closed on that).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(ENTRY_BYTES) || bytes.len() > REPLAY_WAYS * ENTRY_BYTES {
            return None;
        }
        let entries = bytes
            .chunks_exact(ENTRY_BYTES)
            .map(|e| {
                let fingerprint = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
                let expiry = i64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
                (fingerprint, expiry)
            })
            .collect();
        Some(Self(entries))
    }

    /// The bucket's encoding (16 bytes per entry).
    pub fn encode(&self) -> Vec<u8> {
        self.0
            .iter()
            .flat_map(|(f, e)| f.to_le_bytes().into_iter().chain(e.to_le_bytes()))
            .collect()
    }

    /// Unexpired or not yet dropped entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the bucket holds no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops expired entries, then admits the slot's id until `expires_at`, if it is new
    /// and there is room. The bucket changed unless the answer is `Replayed` or `Full`
    /// with no expired entry dropped.
    pub fn admit(&mut self, slot: ReplaySlot, expires_at: i64, now: i64) -> Admission {
        self.0.retain(|&(_, expiry)| expiry >= now);
        if self.0.iter().any(|&(f, _)| f == slot.fingerprint) {
            return Admission::Replayed;
        }
        if self.0.len() >= REPLAY_WAYS {
            let first_expiry = self.0.iter().map(|&(_, e)| e).min().unwrap_or(now);
            return Admission::Full {
                retry_after: u64::try_from(first_expiry.saturating_sub(now)).unwrap_or(0).saturating_add(1),
            };
        }
        self.0.push((slot.fingerprint, expires_at));
        Admission::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_then_a_replay_until_it_expires() {
        let slot = ReplaySlot::of("msg-1", 8);
        let mut bucket = ReplayBucket::default();
        assert_eq!(bucket.admit(slot, 100, 0), Admission::New);
        assert_eq!(bucket.admit(slot, 100, 50), Admission::Replayed);
        assert_eq!(bucket.admit(slot, 100, 100), Admission::Replayed, "expiry is inclusive");
        assert_eq!(bucket.admit(slot, 300, 101), Admission::New, "expired, so new again");
        assert_eq!(bucket.len(), 1);
    }

    #[test]
    fn a_full_bucket_refuses_new_ids_and_forgets_none_until_they_expire() {
        let mut bucket = ReplayBucket::default();
        let ids: Vec<ReplaySlot> = (0..REPLAY_WAYS + 1).map(|i| ReplaySlot::of(&format!("id-{i}"), 1)).collect();
        for (i, slot) in ids.iter().take(REPLAY_WAYS).enumerate() {
            assert_eq!(bucket.admit(*slot, 100 + i as i64, 0), Admission::New);
        }
        assert_eq!(bucket.admit(ids[REPLAY_WAYS], 200, 10), Admission::Full { retry_after: 91 });
        for slot in &ids[..REPLAY_WAYS] {
            assert_eq!(bucket.admit(*slot, 200, 10), Admission::Replayed, "no remembered id was dropped");
        }
        // Once the first entry expires, there is room again.
        assert_eq!(bucket.admit(ids[REPLAY_WAYS], 200, 101), Admission::New);
        assert_eq!(bucket.admit(ids[0], 200, 101), Admission::Full { retry_after: 1 });
    }

    #[test]
    fn buckets_encode_and_decode_and_refuse_what_is_not_one() {
        let mut bucket = ReplayBucket::default();
        for i in 0..5 {
            bucket.admit(ReplaySlot::of(&format!("m{i}"), 4), 1_767_225_600 + i, 0);
        }
        let bytes = bucket.encode();
        assert_eq!(bytes.len(), 5 * 16);
        assert_eq!(ReplayBucket::decode(&bytes), Some(bucket));
        assert_eq!(ReplayBucket::decode(&[]), Some(ReplayBucket::default()));
        assert_eq!(ReplayBucket::decode(&bytes[..17]), None);
        assert_eq!(ReplayBucket::decode(&vec![0; (REPLAY_WAYS + 1) * 16]), None);
    }

    #[test]
    fn ids_spread_over_every_bucket() {
        let buckets = bucket_count(1024);
        assert_eq!(buckets, 64);
        let mut used = vec![0usize; buckets];
        for i in 0..10_000 {
            used[ReplaySlot::of(&format!("msg_{i}"), buckets).bucket] += 1;
        }
        assert!(used.iter().all(|&n| (100..=220).contains(&n)), "{used:?}");
    }
}
