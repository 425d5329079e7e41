//! Where core's randomness comes from: the nonces of sealed values (`envelope`) and the ids
//! of signed events (`engine`) both ask [`fill`], and nothing else in core draws random
//! bytes.
//!
//! The rule: the operating system's generator (getrandom), unless the host installed a
//! source of its own, once, before sealing ([`install_random_source`]). The component does:
//! on `wasm32-wasip2`, getrandom asks `wasi:random` for one `u64` at a time, each a call
//! into the host (in Node, into JavaScript), while one `get-random-bytes` call fills the
//! whole nonce pool. An installed source is asked on every fill: core keeps no generator
//! of its own and never stretches a seed, so every byte it hands out comes from the OS or
//! the host's cryptographically secure generator.

use std::fmt;
use std::sync::OnceLock;

/// Fills the whole buffer with bytes from a cryptographically secure random number
/// generator (the host's, or the operating system's), or fails without handing any out.
pub type RandomSource = fn(&mut [u8]) -> Result<(), RandomUnavailable>;

/// The random number generator gave no bytes: sealing fails closed
/// ([`SealFailure::Random`](crate::SealFailure::Random)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomUnavailable;

impl fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the random number generator failed")
    }
}

impl std::error::Error for RandomUnavailable {}

/// The host's source, if it installed one.
static SOURCE: OnceLock<RandomSource> = OnceLock::new();

/// Makes `source` core's randomness for the rest of the process, in place of the
/// operating system's generator. Install it at start-up, before anything is sealed; a
/// source must be a cryptographically secure generator asked afresh on every call (not a
/// generator seeded once in the guest), since sealing trusts every byte it returns as a
/// unique nonce.
///
/// # Errors
/// The source already installed, if there is one: the first one stays for the life of the
/// process.
pub fn install_random_source(source: RandomSource) -> Result<(), RandomSource> {
    SOURCE.set(source)
}

/// Fills `dest` from the installed source, or from the operating system's generator.
pub(crate) fn fill(dest: &mut [u8]) -> Result<(), RandomUnavailable> {
    match SOURCE.get() {
        Some(source) => source(dest),
        None => getrandom::fill(dest).map_err(|_| RandomUnavailable),
    }
}
