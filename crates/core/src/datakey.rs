//! Data keys wrapped by a KMS (FORMAT.md §10): what the host supplies so core can seal and
//! open `eventseal.vault-transit` envelopes without doing any I/O itself.
//!
//! Sealing takes a [`DataKey`]: the plaintext key the KMS issued together with its wrapped
//! form. Opening asks a [`DataKeyLookup`] for the key of the wrapped blob in the envelope; a
//! lookup that does not have it yet answers [`Unwrap::Pending`], and opening then reports
//! [`crate::Rejection::NeedsDataKey`] so the host can ask the KMS and try again.

use crate::gcm::Gcm;
use crate::keyring::{KeyId, MAX_SEALS_PER_KEY};
use crate::secret::SecretBytes;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// The `alg` of envelopes whose data key is wrapped by Vault Transit (FORMAT.md §10).
pub const VAULT_TRANSIT_ALG: &str = "eventseal.vault-transit";

/// The prefix of the `kid` of a Vault Transit key source: `transit:<mount>/<key>`.
pub const VAULT_TRANSIT_KID_PREFIX: &str = "transit:";

/// Longest wrapped data key accepted, in bytes (a Transit ciphertext of a 32-byte key is 89).
pub const MAX_WRAPPED_KEY_LEN: usize = 1024;

/// A data key as wrapped by the KMS: the Vault Transit ciphertext `vault:v<N>:<base64>`.
///
/// Not secret (it only opens with the KMS), but authenticated by nothing: a changed blob
/// unwraps to another key, or to nothing, and the envelope's tag then fails.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WrappedKey {
    text: String,
    version: u32,
}

impl WrappedKey {
    /// Parses a Transit ciphertext (FORMAT.md §10.2): `vault:v`, a key version without
    /// leading zeros (1 or more), `:`, then standard base64 with padding.
    ///
    /// # Errors
    /// A reason when `text` does not have that form or is longer than [`MAX_WRAPPED_KEY_LEN`].
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.len() > MAX_WRAPPED_KEY_LEN {
            return Err("wrapped data key is too long");
        }
        let shape = "wrapped data key is not a vault:v<N>:<base64> ciphertext";
        let rest = text.strip_prefix("vault:v").ok_or(shape)?;
        let (digits, body) = rest.split_once(':').ok_or(shape)?;
        let digits_ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        let version = digits.parse::<u32>().ok().filter(|_| digits_ok).ok_or(shape)?;
        if !is_padded_base64(body) {
            return Err(shape);
        }
        Ok(Self {
            text: text.to_owned(),
            version,
        })
    }

    /// The ciphertext as the KMS wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The version of the KMS key that wrapped it (`N` of `vault:vN:`).
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not secret, but long and useless in logs: the version says what matters.
        write!(f, "WrappedKey(vault:v{}:…)", self.version)
    }
}

impl fmt::Display for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault:v{}", self.version)
    }
}

/// Standard base64 (RFC 4648 §4) with padding: a multiple of 4 characters, `=` only at the end.
fn is_padded_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return false;
    }
    let data = text.trim_end_matches('=');
    bytes.len() - data.len() <= 2 && data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl KeyId {
    /// The kid of a Vault Transit key source: `transit:<mount>/<key>`.
    ///
    /// # Errors
    /// A reason when the mount is not one or more `/`-separated segments, or a segment or the
    /// key name is empty or has characters other than ASCII letters, digits, `-`, `_`, `.`.
    pub fn vault_transit(mount: &str, key: &str) -> Result<Self, &'static str> {
        let name_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !mount.split('/').all(name_ok) {
            return Err("a mount path of letters, digits, '-', '_', '.' separated by '/'");
        }
        if !name_ok(key) {
            return Err("a key name of letters, digits, '-', '_', '.'");
        }
        let kid = format!("{VAULT_TRANSIT_KID_PREFIX}{mount}/{key}");
        if kid.len() > 128 {
            return Err("a mount path and key name of at most 119 characters together");
        }
        Ok(Self::from_trusted(kid))
    }
}

/// Why a data key from the KMS was refused. Never contains key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataKeyError {
    /// The plaintext key is not 32 bytes (Transit `bits` must be 256).
    WrongLength,
}

impl fmt::Display for DataKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength => f.write_str("the data key is not 32 bytes"),
        }
    }
}

impl std::error::Error for DataKeyError {}

/// A data key issued by a KMS key source: the AES-256-GCM key and its wrapped form.
///
/// `Debug` shows the source and version only; the key bytes are wiped on drop (the expanded
/// cipher zeroizes its round keys).
pub struct DataKey {
    source: KeyId,
    wrapped: WrappedKey,
    cipher: Box<Gcm>,
    pub(crate) seals: AtomicU64,
}

impl DataKey {
    /// Takes the plaintext key the KMS returned for `wrapped` under the key source `source`.
    ///
    /// # Errors
    /// [`DataKeyError::WrongLength`] unless the key is 32 bytes.
    pub fn new(source: KeyId, key: &SecretBytes, wrapped: WrappedKey) -> Result<Self, DataKeyError> {
        let key: &[u8; 32] = key.expose().try_into().map_err(|_| DataKeyError::WrongLength)?;
        let cipher = Gcm::new(key);
        Ok(Self {
            source,
            wrapped,
            cipher: Box::new(cipher),
            seals: AtomicU64::new(0),
        })
    }

    /// The key source (`transit:<mount>/<key>`), written as the envelope's `kid`.
    pub fn source(&self) -> &KeyId {
        &self.source
    }

    /// The wrapped form, written as the envelope's encrypted key.
    pub fn wrapped(&self) -> &WrappedKey {
        &self.wrapped
    }

    /// How many values this key has sealed.
    pub fn seals(&self) -> u64 {
        self.seals.load(Ordering::Relaxed)
    }

    pub(crate) fn cipher(&self) -> &Gcm {
        &self.cipher
    }

    /// Counts one encryption; `false` once the key has reached [`MAX_SEALS_PER_KEY`].
    pub(crate) fn take_seal(&self) -> bool {
        self.seals.fetch_add(1, Ordering::Relaxed) < MAX_SEALS_PER_KEY
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("source", &self.source)
            .field("wrapped", &self.wrapped)
            .field("seals", &self.seals())
            .finish_non_exhaustive()
    }
}

/// What a [`DataKeyLookup`] knows about one wrapped data key.
#[derive(Debug)]
#[non_exhaustive]
pub enum Unwrap<'a> {
    /// The KMS unwrapped it: here is the key.
    Ready(&'a DataKey),
    /// Not unwrapped yet: the host must ask the KMS (opening reports `NeedsDataKey`).
    Pending,
    /// The KMS refused to unwrap it (not a ciphertext of that key): the envelope is not
    /// authentic.
    Refused,
    /// No key source with this kid is configured.
    UnknownSource,
}

/// The host's store of unwrapped data keys, asked while opening (FORMAT.md §4 step 9).
pub trait DataKeyLookup {
    /// What is known about `wrapped`, found in an envelope whose `kid` is `source`.
    fn unwrap(&self, source: &str, wrapped: &WrappedKey) -> Unwrap<'_>;
}

/// A lookup for hosts without a KMS: every wrapped key names an unknown source.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDataKeys;

impl DataKeyLookup for NoDataKeys {
    fn unwrap(&self, _source: &str, _wrapped: &WrappedKey) -> Unwrap<'_> {
        Unwrap::UnknownSource
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_keys_have_the_transit_form() {
        let ok = WrappedKey::parse("vault:v12:AAECAw==").unwrap();
        assert_eq!(ok.version(), 12);
        assert_eq!(ok.to_string(), "vault:v12");
        for bad in [
            "",
            "vault:v0:AAAA",
            "vault:v01:AAAA",
            "vault:v:AAAA",
            "vault:1:AAAA",
            "vault:v1:",
            "vault:v1:AAA",
            "vault:v1:AA-_",
            "vault:v1:A===",
            "vault:v1:AAAA ",
            "vault:v99999999999:AAAA",
            "VAULT:v1:AAAA",
        ] {
            assert!(WrappedKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(WrappedKey::parse(&format!("vault:v1:{}", "A".repeat(MAX_WRAPPED_KEY_LEN))).is_err());
    }

    #[test]
    fn transit_kids_are_checked() {
        assert_eq!(
            KeyId::vault_transit("transit", "orders").unwrap().as_str(),
            "transit:transit/orders"
        );
        assert_eq!(
            KeyId::vault_transit("kms/eu", "o.v-1_x").unwrap().as_str(),
            "transit:kms/eu/o.v-1_x"
        );
        for (mount, key) in [("", "k"), ("a//b", "k"), ("/a", "k"), ("a", ""), ("a", "k/x"), ("a b", "k")] {
            assert!(KeyId::vault_transit(mount, key).is_err(), "{mount:?} {key:?}");
        }
    }

    #[test]
    fn data_keys_are_32_bytes_and_never_printed() {
        let source = KeyId::vault_transit("transit", "orders").unwrap();
        let wrapped = WrappedKey::parse("vault:v1:AAAA").unwrap();
        let short = SecretBytes::new(vec![7; 16]);
        assert_eq!(
            DataKey::new(source.clone(), &short, wrapped.clone()).unwrap_err(),
            DataKeyError::WrongLength
        );
        let key = DataKey::new(source, &SecretBytes::new(vec![0x5a; 32]), wrapped).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("transit:transit/orders") && shown.contains("vault:v1"), "{shown}");
        assert!(!shown.contains("90") && !shown.contains("5a") && !shown.contains("AAAA"), "{shown}");
    }
}
