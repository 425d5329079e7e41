//! Core's replay cache over proxy-wasm shared data, so that a message id accepted by one
//! stream is refused on every other stream and worker of the same VM id.
//!
//! One entry per id: key `eventseal.replay.<id>`, value `<expiry> <token>` (expiry in Unix
//! seconds as decimal, token a random per-insert nonce). An unexpired entry is a replay.
//! An expired entry is overwritten with the CAS it was read with, so of two workers racing
//! on it only one wins; the loser sees `CasMismatch` and refuses. ABI 0.2.1 has no
//! "insert if absent": for a brand-new key the write is unconditional, so the writer reads
//! the entry back and accepts only if it still holds its own token.

use crate::host;
use eventseal_core::ReplayCache;

/// Key prefix of replay entries in shared data.
const PREFIX: &str = "eventseal.replay.";

/// The replay cache of this VM id.
#[derive(Debug, Default)]
pub struct SharedReplayCache;

fn expiry_of(value: &[u8]) -> Option<i64> {
    let text = core::str::from_utf8(value).ok()?;
    text.split(' ').next()?.parse().ok()
}

fn token() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness the token is 0: the read-back check then only loses precision.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl ReplayCache for SharedReplayCache {
    fn insert_if_new(&mut self, id: &str, expires_at: i64, now: i64) -> bool {
        let key = format!("{PREFIX}{id}");
        // A host error is treated as "seen": refusing is the safe side.
        let Ok((current, cas)) = host::shared_data(&key) else {
            return false;
        };
        if current.as_deref().and_then(expiry_of).is_some_and(|expiry| expiry >= now) {
            return false;
        }
        let value = format!("{expires_at} {:016x}", token());
        // `CasMismatch`: another stream or worker wrote the entry since we read it.
        if host::set_shared_data(&key, value.as_bytes(), cas).is_err() {
            return false;
        }
        match host::shared_data(&key) {
            Ok((Some(stored), _)) => stored == value.as_bytes(),
            _ => false,
        }
    }
}
