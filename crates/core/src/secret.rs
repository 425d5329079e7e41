//! Secrets: zeroized on drop, never printed.

use core::fmt;
use hmac::digest::InvalidLength;
use hmac::digest::block_api::Buffer;
use hmac::{EagerHash, Hmac, KeyInit};
use sha2::Sha256;
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Key material or plaintext that must not outlive its use or reach a log.
///
/// `Debug` prints only the length; the bytes are wiped when the value is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are wiped when the secret is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes, for the one place that needs them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

/// An HMAC-SHA256 key (RFC 2104), held as its keyed state: the SHA-256 states after the
/// inner and the outer padded key block, computed once when the key is loaded. Each MAC
/// starts from a copy of it, so no MAC hashes the key again.
///
/// The state is as secret as the key (it makes any MAC under it): `Debug` prints nothing
/// of it, and it is wiped on drop, as is every copy a MAC starts from.
#[derive(Clone)]
pub(crate) struct MacKey(Hmac<Sha256>);

impl MacKey {
    /// Keys HMAC-SHA256 with `secret` (any length; a key longer than a block is hashed).
    pub(crate) fn new(secret: &SecretBytes) -> Result<Self, InvalidLength> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose()).map(Self)
    }

    /// A MAC under this key, over nothing yet.
    pub(crate) fn start(&self) -> Hmac<Sha256> {
        self.0.clone()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

/// Compiles only for a type that is wiped on drop.
const fn wiped_on_drop<T: ZeroizeOnDrop + ?Sized>() {}

// An `Hmac<Sha256>` is two SHA-256 cores (the keyed inner and outer states) and a buffer of
// message bytes; it has no drop code of its own, its parts do: sha2's `zeroize` feature wipes
// the cores, digest's the buffer. These fail to compile if either feature is lost.
const _: fn() = wiped_on_drop::<<Sha256 as EagerHash>::Core>;
const _: fn() = wiped_on_drop::<Buffer<hmac::block_api::HmacCore<Sha256>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    #[test]
    fn debug_never_prints_bytes() {
        let secret = SecretBytes::new(b"hunter2-hunter2".to_vec());
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("15 bytes"));
    }

    #[test]
    fn a_mac_key_makes_the_macs_of_its_secret_and_prints_nothing() {
        // RFC 4231 test case 2: key "Jefe".
        let key = MacKey::new(&SecretBytes::new(b"Jefe".to_vec())).unwrap();
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        for _ in 0..2 {
            let mut mac = key.start();
            mac.update(b"what do ya want ");
            mac.update(b"for nothing?");
            let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, expected);
        }
        assert_eq!(format!("{key:?}"), "MacKey([redacted])");
    }
}
