//! The sealed-field envelope: JWE Compact Serialization (RFC 7516), `enc` A256GCM.
//!
//! `docs/FORMAT.md` is the specification; section numbers below refer to it.

use crate::datakey::{DataKey, DataKeyLookup, NoDataKeys, Unwrap, VAULT_TRANSIT_ALG, VAULT_TRANSIT_KID_PREFIX, WrappedKey};
use crate::gcm::{Gcm, NONCE_LEN, TAG_LEN};
use crate::keyring::{KeyId, KeyStatus, KeyUse, Keyring};
use crate::random::RandomUnavailable;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use core::fmt;
use serde_json::Value;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

mod header;
use header::Header;

/// Values bound into every envelope besides its pointer (event type, tenant, route, …).
///
/// A ciphertext only opens where the same context is computed again (FORMAT.md §3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context(BTreeMap<String, String>);

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// The bound values, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Context {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// Why one sealed value could not be opened. Maps to the vector outcomes of FORMAT.md §6.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Not an envelope this version understands; the reason names the rule broken.
    Malformed(&'static str),
    /// The AEAD tag did not verify: wrong key, or any bit of the envelope changed.
    Unauthenticated,
    /// The `kid` is not in the keyring.
    UnknownKey(KeyId),
    /// The `kid` is in the keyring with status `disabled`.
    DisabledKey(KeyId),
    /// An authentic envelope that was sealed for another field.
    MovedField,
    /// An authentic envelope that was sealed under another context.
    WrongContext,
    /// The selected value is not a sealed string at all.
    NotSealed,
    /// The envelope's data key is wrapped by a KMS and the host has not unwrapped it yet.
    ///
    /// Not a verdict on the envelope: the host asks the KMS to unwrap `wrapped` under
    /// `source` and opens again (FORMAT.md §10.3).
    NeedsDataKey {
        /// The key source named by the envelope's `kid`.
        source: KeyId,
        /// The wrapped data key carried by the envelope.
        wrapped: WrappedKey,
    },
}

impl Rejection {
    /// The stable outcome name used by test vectors, problem details and audit records.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unauthenticated => "unauthenticated",
            Self::UnknownKey(_) => "unknown_key",
            Self::DisabledKey(_) => "disabled_key",
            Self::MovedField => "moved_field",
            Self::WrongContext => "wrong_context",
            Self::NotSealed => "not_sealed",
            Self::NeedsDataKey { .. } => "needs_data_key",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(reason) => write!(f, "malformed envelope: {reason}"),
            Self::Unauthenticated => f.write_str("envelope is not authentic"),
            Self::UnknownKey(kid) => write!(f, "unknown key {kid}"),
            Self::DisabledKey(kid) => write!(f, "key {kid} is disabled"),
            Self::MovedField => f.write_str("envelope was sealed for another field"),
            Self::WrongContext => f.write_str("envelope was sealed under another context"),
            Self::NotSealed => f.write_str("value is not a sealed envelope"),
            Self::NeedsDataKey { source, wrapped } => write!(f, "data key {wrapped} of {source} is not unwrapped yet"),
        }
    }
}

/// Why one value could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealFailure {
    /// The keyring has no primary `A256GCM` key.
    NoPrimaryKey,
    /// The primary key reached its encryption limit and must be rotated.
    KeyExhausted(KeyId),
    /// The random number generator (the OS's, or the host's installed source) failed.
    Random,
    /// The value is longer than AES-GCM can encrypt in one message.
    ValueTooLong,
}

impl fmt::Display for SealFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPrimaryKey => f.write_str("no primary A256GCM key"),
            Self::KeyExhausted(kid) => write!(f, "key {kid} reached its encryption limit; rotate it"),
            Self::Random => f.write_str("the system random number generator failed"),
            Self::ValueTooLong => f.write_str("value too long to seal"),
        }
    }
}

/// A base64url segment that must decode to exactly `N` bytes, decoded without a `Vec`.
fn decode_exact<const N: usize>(segment: &str, not_base64: &'static str, wrong_length: &'static str) -> Result<[u8; N], Rejection> {
    let mut bytes = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(segment, &mut bytes) {
        Ok(n) if n == N => Ok(bytes),
        Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => Err(Rejection::Malformed(wrong_length)),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(Rejection::Malformed(not_base64)),
    }
}

/// Seals `value` for the field at `pointer` with the keyring's primary key.
///
/// # Errors
/// [`SealFailure`] when there is no usable primary key or no randomness.
pub fn seal_value(keyring: &Keyring, pointer: &str, context: &Context, value: &Value) -> Result<(String, KeyId), SealFailure> {
    // serde_json cannot fail to serialize a Value.
    let plaintext = Zeroizing::new(serde_json::to_vec(value).unwrap_or_default());
    seal_bytes(keyring, pointer, context, &plaintext)
}

/// Seals `plaintext`, the JSON text of a field's value, for the field at `pointer`.
///
/// # Errors
/// [`SealFailure`] when there is no usable primary key or no randomness.
pub fn seal_bytes(keyring: &Keyring, pointer: &str, context: &Context, plaintext: &[u8]) -> Result<(String, KeyId), SealFailure> {
    let mut envelope = String::new();
    let kid = append_sealed(keyring, pointer, context, plaintext, &mut envelope)?;
    Ok((envelope, kid))
}

/// [`seal_bytes`], appending the envelope to `out` (as it was on error), so a caller that
/// builds a body around envelopes copies none of them.
pub(crate) fn append_sealed(
    keyring: &Keyring,
    pointer: &str,
    context: &Context,
    plaintext: &[u8],
    out: &mut String,
) -> Result<KeyId, SealFailure> {
    let key = keyring.primary(KeyUse::Seal).ok_or(SealFailure::NoPrimaryKey)?;
    let cipher = key.aead().ok_or(SealFailure::NoPrimaryKey)?;
    if !key.take_seal() {
        return Err(SealFailure::KeyExhausted(key.kid().clone()));
    }
    let header = protected_header("dir", key.kid(), pointer, context);
    seal_under(cipher, &header, b"", plaintext, out)?;
    Ok(key.kid().clone())
}

/// Seals `value` for the field at `pointer` with a data key issued by a KMS (FORMAT.md §10):
/// the envelope's `kid` is the key source and its encrypted key is the wrapped data key.
///
/// # Errors
/// [`SealFailure`] when the data key reached its encryption limit or there is no randomness.
pub fn seal_value_with(data_key: &DataKey, pointer: &str, context: &Context, value: &Value) -> Result<String, SealFailure> {
    let plaintext = Zeroizing::new(serde_json::to_vec(value).unwrap_or_default());
    seal_bytes_with(data_key, pointer, context, &plaintext)
}

/// Seals `plaintext`, the JSON text of a field's value, with a data key issued by a KMS.
///
/// # Errors
/// [`SealFailure`] when the data key reached its encryption limit or there is no randomness.
pub fn seal_bytes_with(data_key: &DataKey, pointer: &str, context: &Context, plaintext: &[u8]) -> Result<String, SealFailure> {
    let mut envelope = String::new();
    append_sealed_with(data_key, pointer, context, plaintext, &mut envelope)?;
    Ok(envelope)
}

/// [`seal_bytes_with`], appending the envelope to `out` (as it was on error).
pub(crate) fn append_sealed_with(
    data_key: &DataKey,
    pointer: &str,
    context: &Context,
    plaintext: &[u8],
    out: &mut String,
) -> Result<(), SealFailure> {
    if !data_key.take_seal() {
        return Err(SealFailure::KeyExhausted(data_key.source().clone()));
    }
    let header = protected_header(VAULT_TRANSIT_ALG, data_key.source(), pointer, context);
    seal_under(data_key.cipher(), &header, data_key.wrapped().as_str().as_bytes(), plaintext, out)
}

/// Steps 2 to 4 of FORMAT.md §3.5 once the header and encrypted key are known: appends the
/// compact envelope to `out`, or leaves `out` as it was.
fn seal_under(cipher: &Gcm, header: &[u8], encrypted_key: &[u8], plaintext: &[u8], out: &mut String) -> Result<(), SealFailure> {
    let nonce = fresh_nonce()?;
    let mut buffer = Zeroizing::new(plaintext.to_vec());
    let start = out.len();
    let encoded = |n: usize| n.div_ceil(3) * 4;
    out.reserve(encoded(header.len()) + encoded(encrypted_key.len()) + encoded(NONCE_LEN) + encoded(buffer.len()) + encoded(TAG_LEN) + 4);
    URL_SAFE_NO_PAD.encode_string(header, out);
    // The AAD is the encoded header as it stands in the envelope (RFC 7516 §5.1 step 14).
    let tag = cipher.seal(&nonce, &out.as_bytes()[start..], &mut buffer);
    let Ok(tag) = tag else {
        out.truncate(start);
        return Err(SealFailure::ValueTooLong);
    };
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(encrypted_key, out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(nonce, out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&buffer[..], out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, out);
    Ok(())
}

/// Nonces handed out per batch of randomness.
const NONCES_PER_BATCH: usize = 32;

/// A fresh 96-bit nonce from the random number generator (`crate::random`: the OS's, or
/// the host's installed source). The generator is asked once per batch of nonces rather
/// than once per field (a system call, or a call into the host, each); every nonce is still
/// the generator's output and is handed out once. Nonces are public (every envelope carries
/// its own), so the unused rest of a batch held in memory reveals nothing.
fn fresh_nonce() -> Result<[u8; NONCE_LEN], SealFailure> {
    thread_local! {
        static POOL: std::cell::RefCell<NoncePool> = const { std::cell::RefCell::new(NoncePool::EMPTY) };
    }
    POOL.with_borrow_mut(|pool| pool.next(crate::random::fill))
}

/// A batch of random bytes, handed out a nonce at a time.
struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_BATCH],
    /// The next nonce to hand out; `NONCES_PER_BATCH` when the batch is used up.
    next: usize,
}

impl NoncePool {
    const EMPTY: Self = Self {
        bytes: [0; NONCE_LEN * NONCES_PER_BATCH],
        next: NONCES_PER_BATCH,
    };

    /// The next nonce of the batch, refilling it with `refill` first if it is used up. A
    /// failed refill hands out nothing (fail closed) and leaves the batch used up, so the
    /// next call asks again: no byte of a partly filled batch is ever handed out.
    fn next(&mut self, refill: impl FnOnce(&mut [u8]) -> Result<(), RandomUnavailable>) -> Result<[u8; NONCE_LEN], SealFailure> {
        if self.next == NONCES_PER_BATCH {
            refill(&mut self.bytes).map_err(|_| SealFailure::Random)?;
            self.next = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.bytes[self.next * NONCE_LEN..(self.next + 1) * NONCE_LEN]);
        self.next += 1;
        Ok(nonce)
    }
}

/// The header JSON in a fixed member order, so equal inputs give equal headers. Written
/// straight into one buffer: it is built once per sealed field.
fn protected_header(alg: &str, kid: &KeyId, pointer: &str, context: &Context) -> Vec<u8> {
    // serde_json's string escaping, so the header is the JSON any encoder would write.
    fn string(json: &mut Vec<u8>, s: &str) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *json, s);
    }
    let context_len: usize = context.entries().map(|(name, value)| name.len() + value.len() + 6).sum();
    let mut json = Vec::with_capacity(64 + alg.len() + kid.as_str().len() + pointer.len() + context_len);
    json.extend_from_slice(br#"{"alg":"#);
    string(&mut json, alg);
    json.extend_from_slice(br#","enc":"A256GCM","kid":"#);
    string(&mut json, kid.as_str());
    json.extend_from_slice(br#","ptr":"#);
    string(&mut json, pointer);
    json.extend_from_slice(br#","ctx":{"#);
    for (i, (name, value)) in context.entries().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        string(&mut json, name);
        json.push(b':');
        string(&mut json, value);
    }
    json.extend_from_slice(b"}}");
    json
}

/// The `kid` and wrapped data key of a well-formed `eventseal.vault-transit` envelope, so a
/// host can unwrap (or rewrap) it; `None` for any other string.
pub fn wrapped_key_of(envelope: &str) -> Option<(String, WrappedKey)> {
    let mut parts = envelope.split('.');
    let (h, ek) = (parts.next()?, parts.next()?);
    let header = Header::parse(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.alg != VAULT_TRANSIT_ALG || !header.kid.starts_with(VAULT_TRANSIT_KID_PREFIX) {
        return None;
    }
    let blob = URL_SAFE_NO_PAD.decode(ek).ok()?;
    let wrapped = WrappedKey::parse(std::str::from_utf8(&blob).ok()?).ok()?;
    Some((header.kid, wrapped))
}

/// The envelope with its encrypted-key segment replaced by `rewrapped` (FORMAT.md §10.4):
/// header, IV, ciphertext and tag stay as they are, so it opens to the same value once the
/// KMS unwraps `rewrapped` to the same data key. `None` if `envelope` is not a well-formed
/// `eventseal.vault-transit` envelope.
pub fn with_wrapped_key(envelope: &str, rewrapped: &WrappedKey) -> Option<String> {
    wrapped_key_of(envelope)?;
    let parts: Vec<&str> = envelope.split('.').collect();
    if parts.len() != 5 {
        return None;
    }
    let segment = URL_SAFE_NO_PAD.encode(rewrapped.as_str());
    Some([parts[0], &segment, parts[2], parts[3], parts[4]].join("."))
}

/// Opens one envelope found at `pointer`, checking its key, tag and binding (FORMAT.md §4).
///
/// # Errors
/// A [`Rejection`] naming the first rule the envelope breaks.
pub fn open_value(keyring: &Keyring, pointer: &str, context: &Context, envelope: &str) -> Result<(Value, KeyId), Rejection> {
    open_value_with(keyring, &NoDataKeys, pointer, context, envelope)
}

/// Opens one envelope like [`open_value`], asking `data_keys` for the data key of an envelope
/// whose key is wrapped by a KMS (FORMAT.md §10).
///
/// # Errors
/// A [`Rejection`] naming the first rule the envelope breaks, or
/// [`Rejection::NeedsDataKey`] when `data_keys` has not unwrapped its data key yet.
pub fn open_value_with(
    keyring: &Keyring,
    data_keys: &dyn DataKeyLookup,
    pointer: &str,
    context: &Context,
    envelope: &str,
) -> Result<(Value, KeyId), Rejection> {
    let (plaintext, kid) = open_bytes_with(keyring, data_keys, pointer, context, envelope)?;
    let value = serde_json::from_slice(&plaintext).map_err(|_| Rejection::Malformed("plaintext is not JSON"))?;
    Ok((value, kid))
}

/// Opens one envelope like [`open_value`], returning the plaintext JSON text (checked to be
/// one JSON value in UTF-8) instead of a parsed value.
///
/// # Errors
/// A [`Rejection`] naming the first rule the envelope breaks.
pub fn open_bytes(keyring: &Keyring, pointer: &str, context: &Context, envelope: &str) -> Result<(Zeroizing<Vec<u8>>, KeyId), Rejection> {
    open_bytes_with(keyring, &NoDataKeys, pointer, context, envelope)
}

/// Opens one envelope like [`open_bytes`], asking `data_keys` for the data key of an envelope
/// whose key is wrapped by a KMS (FORMAT.md §10).
///
/// # Errors
/// A [`Rejection`] naming the first rule the envelope breaks, or
/// [`Rejection::NeedsDataKey`] when `data_keys` has not unwrapped its data key yet.
pub fn open_bytes_with(
    keyring: &Keyring,
    data_keys: &dyn DataKeyLookup,
    pointer: &str,
    context: &Context,
    envelope: &str,
) -> Result<(Zeroizing<Vec<u8>>, KeyId), Rejection> {
    let mut parts = envelope.split('.');
    let (Some(h), Some(ek), Some(iv), Some(ct), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed("not five dot-separated segments"));
    };
    let decode = |segment: &str, what: &'static str| URL_SAFE_NO_PAD.decode(segment).map_err(|_| Rejection::Malformed(what));
    let header_json = decode(h, "header is not base64url")?;
    let header = Header::parse(&header_json)?;
    if header.enc != "A256GCM" {
        return Err(Rejection::Malformed("unsupported enc"));
    }
    // Steps 6 and 7: the key management mode, and the encrypted key it implies.
    let wrapped = match header.alg.as_str() {
        "dir" if ek.is_empty() => None,
        "dir" => return Err(Rejection::Malformed("alg dir requires an empty encrypted key")),
        VAULT_TRANSIT_ALG => {
            if ek.is_empty() {
                return Err(Rejection::Malformed("alg eventseal.vault-transit requires the wrapped data key"));
            }
            let blob = decode(ek, "encrypted key is not base64url")?;
            let text = std::str::from_utf8(&blob).map_err(|_| Rejection::Malformed("wrapped data key is not ASCII"))?;
            let wrapped = WrappedKey::parse(text).map_err(Rejection::Malformed)?;
            if !header.kid.starts_with(VAULT_TRANSIT_KID_PREFIX) {
                return Err(Rejection::Malformed("alg eventseal.vault-transit requires a transit: kid"));
            }
            Some(wrapped)
        }
        _ => return Err(Rejection::Malformed("unsupported alg")),
    };
    let nonce: [u8; NONCE_LEN] = decode_exact(iv, "iv is not base64url", "iv is not 96 bits")?;
    let sealed = decode(ct, "ciphertext is not base64url")?;
    let tag: [u8; TAG_LEN] = decode_exact(tag, "tag is not base64url", "tag is not 128 bits")?;
    let (cipher, kid) = match &wrapped {
        None => {
            // Only sealing keys count: a signing key's kid in an envelope is simply unknown.
            let key = keyring
                .get(&header.kid)
                .filter(|k| k.key_use() == KeyUse::Seal)
                .ok_or_else(|| Rejection::UnknownKey(KeyId::from_untrusted(&header.kid)))?;
            if key.status() == KeyStatus::Disabled {
                return Err(Rejection::DisabledKey(key.kid().clone()));
            }
            let cipher = key.aead().ok_or_else(|| Rejection::UnknownKey(key.kid().clone()))?;
            (cipher, key.kid().clone())
        }
        Some(wrapped) => match data_keys.unwrap(&header.kid, wrapped) {
            Unwrap::Ready(key) if key.source().as_str() == header.kid && key.wrapped() == wrapped => (key.cipher(), key.source().clone()),
            // A lookup that answers with another key than the one asked for: nothing it
            // decrypts could be trusted.
            Unwrap::Ready(_) | Unwrap::Refused => return Err(Rejection::Unauthenticated),
            Unwrap::Pending => {
                return Err(Rejection::NeedsDataKey {
                    source: KeyId::from_untrusted(&header.kid),
                    wrapped: wrapped.clone(),
                });
            }
            Unwrap::UnknownSource => return Err(Rejection::UnknownKey(KeyId::from_untrusted(&header.kid))),
        },
    };
    let mut plaintext = Zeroizing::new(sealed);
    cipher
        .open(&nonce, h.as_bytes(), &mut plaintext, &tag)
        .map_err(|_| Rejection::Unauthenticated)?;
    // The binding is checked only once the header is known to be authentic.
    if header.ptr != pointer {
        return Err(Rejection::MovedField);
    }
    if header.ctx != context.0 {
        return Err(Rejection::WrongContext);
    }
    // Held to the rule events are (FORMAT.md §2.1): an opened field never brings into a body
    // what the body itself would have been refused for.
    if !crate::json::is_strict_json(&plaintext) {
        return Err(Rejection::Malformed("plaintext is not JSON"));
    }
    Ok((plaintext, kid))
}

/// What [`reseal`] did with one string of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reseal {
    /// A `dir` envelope under a `retired` key, sealed again under the primary key for the
    /// same pointer and context (FORMAT.md §5.1).
    Moved {
        /// The new envelope.
        envelope: String,
        /// The retired key it was under.
        from: KeyId,
        /// The primary key it is under now.
        to: KeyId,
        /// The pointer bound in it (unchanged).
        pointer: String,
    },
    /// A `dir` envelope under a key in service (`primary` or `active`): left as it is.
    Current(KeyId),
    /// An envelope whose data key is wrapped by a KMS: `rewrap` moves those, not this.
    NotLocal,
    /// Not an envelope at all.
    NotEnvelope,
}

/// Why a local envelope could not be moved by [`reseal`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResealError {
    /// It does not open: unknown key, disabled key, not authentic, malformed.
    Rejected(Rejection),
    /// It opened, but could not be sealed again (no primary key, no randomness, …).
    Seal(SealFailure),
}

impl fmt::Display for ResealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(rejection) => rejection.fmt(f),
            Self::Seal(failure) => failure.fmt(f),
        }
    }
}

/// Moves one `dir` envelope sealed under a `retired` key to the keyring's primary key,
/// binding the same pointer and context (read from its authenticated header), so it opens
/// where it opened before. The plaintext exists only in memory here, and is wiped before
/// this returns. Envelopes under keys in service, KMS envelopes and other strings are
/// reported and left alone.
///
/// # Errors
/// [`ResealError`] for an envelope that does not open (an unknown or disabled key among
/// them) or cannot be sealed again.
pub fn reseal(keyring: &Keyring, text: &str) -> Result<Reseal, ResealError> {
    let mut parts = text.split('.');
    let (Some(h), Some(_), Some(_), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(Reseal::NotEnvelope);
    };
    let Some(header) = URL_SAFE_NO_PAD.decode(h).ok().and_then(|json| Header::parse(&json).ok()) else {
        return Ok(Reseal::NotEnvelope);
    };
    if header.alg != "dir" {
        return Ok(Reseal::NotLocal);
    }
    let status = keyring.get(&header.kid).filter(|k| k.key_use() == KeyUse::Seal).map(|k| k.status());
    if matches!(status, Some(KeyStatus::Primary | KeyStatus::Active)) {
        // Checked like any opening, so "current" is never said of an envelope that does not open.
        let context = Context(header.ctx.clone());
        let (_, kid) = open_bytes(keyring, &header.ptr, &context, text).map_err(ResealError::Rejected)?;
        return Ok(Reseal::Current(kid));
    }
    let context = Context(header.ctx);
    let (plaintext, from) = open_bytes(keyring, &header.ptr, &context, text).map_err(ResealError::Rejected)?;
    let (envelope, to) = seal_bytes(keyring, &header.ptr, &context, &plaintext).map_err(ResealError::Seal)?;
    Ok(Reseal::Moved {
        envelope,
        from,
        to,
        pointer: header.ptr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reseal_moves_retired_envelopes_only() {
        let ring = ring();
        let context: Context = [("type", "order.created")].into_iter().collect();
        let value = json!({"n": "4111"});
        let seal_under = |kid: &str| {
            let only = Keyring::from_value(
                &json!({"keys": [{"kty": "oct", "kid": kid, "alg": "A256GCM", "status": "primary", "k": match kid {
                    "k1" => "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8",
                    _ => "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8",
                }}]}),
                "",
            )
            .unwrap();
            seal_value(&only, "/card", &context, &value).unwrap().0
        };
        let Ok(Reseal::Moved {
            envelope,
            from,
            to,
            pointer,
        }) = reseal(&ring, &seal_under("k1"))
        else {
            panic!("not moved")
        };
        assert_eq!((from.as_str(), to.as_str(), pointer.as_str()), ("k1", "k2", "/card"));
        assert_eq!(
            open_value(&ring, "/card", &context, &envelope).unwrap(),
            (value.clone(), to.clone())
        );
        assert_eq!(reseal(&ring, &envelope), Ok(Reseal::Current(to)));
        assert!(matches!(
            reseal(&ring, &seal_under("k0")),
            Err(ResealError::Rejected(Rejection::DisabledKey(_)))
        ));
        assert_eq!(reseal(&ring, "hello"), Ok(Reseal::NotEnvelope));
    }

    fn ring() -> Keyring {
        Keyring::from_value(
            &json!({"keys": [
                {"kty": "oct", "kid": "k2", "alg": "A256GCM", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "status": "primary"},
                {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8", "status": "retired"},
                {"kty": "oct", "kid": "k0", "alg": "A256GCM", "k": "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8", "status": "disabled"},
            ]}),
            "",
        )
        .unwrap()
    }

    fn ctx() -> Context {
        [("type", "order.created"), ("tenant", "acme")].into_iter().collect()
    }

    #[test]
    fn every_json_type_round_trips() {
        let ring = ring();
        for value in [
            json!("4111 1111"),
            json!(42),
            json!(1.5),
            json!(true),
            json!(null),
            json!([1, {"a": "b"}]),
            json!({"x": [null]}),
        ] {
            let (jwe, kid) = seal_value(&ring, "/data/x", &ctx(), &value).unwrap();
            assert_eq!(kid.as_str(), "k2");
            assert_eq!(open_value(&ring, "/data/x", &ctx(), &jwe).unwrap().0, value);
        }
    }

    #[test]
    fn binding_is_enforced_after_authentication() {
        let ring = ring();
        let (jwe, _) = seal_value(&ring, "/a", &ctx(), &json!("secret")).unwrap();
        assert_eq!(open_value(&ring, "/b", &ctx(), &jwe), Err(Rejection::MovedField));
        let other: Context = [("type", "order.created"), ("tenant", "evil")].into_iter().collect();
        assert_eq!(open_value(&ring, "/a", &other, &jwe), Err(Rejection::WrongContext));
    }

    #[test]
    fn nonces_never_repeat_across_batches() {
        let nonces: std::collections::HashSet<_> = (0..NONCES_PER_BATCH * 3 + 1).map(|_| fresh_nonce().unwrap()).collect();
        assert_eq!(nonces.len(), NONCES_PER_BATCH * 3 + 1);
    }

    #[test]
    fn a_pool_asks_for_randomness_once_per_batch_and_hands_each_byte_out_once() {
        let mut pool = NoncePool::EMPTY;
        let mut refills = 0u8;
        let mut nonces = Vec::new();
        for _ in 0..NONCES_PER_BATCH * 2 {
            let nonce = pool
                .next(|bytes| {
                    refills += 1;
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = refills ^ (i as u8);
                    }
                    Ok(())
                })
                .unwrap();
            nonces.push(nonce);
        }
        assert_eq!(refills, 2);
        // The nonces of a batch are its bytes in order, each slice once.
        let first: Vec<u8> = nonces[..NONCES_PER_BATCH].concat();
        assert_eq!(first, (0..NONCE_LEN * NONCES_PER_BATCH).map(|i| 1 ^ (i as u8)).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_refill_fails_closed_and_the_next_seal_asks_again() {
        let mut pool = NoncePool::EMPTY;
        // A source that wrote part of the batch, then failed: nothing of it is handed out.
        let failed = pool.next(|bytes| {
            bytes[..NONCE_LEN].fill(0xAA);
            Err(RandomUnavailable)
        });
        assert_eq!(failed, Err(SealFailure::Random));
        let mut asked = false;
        let nonce = pool
            .next(|bytes| {
                asked = true;
                bytes.fill(0x55);
                Ok(())
            })
            .unwrap();
        assert!(asked);
        assert_eq!(nonce, [0x55; NONCE_LEN]);
    }

    #[test]
    fn nonces_are_fresh_per_seal() {
        let ring = ring();
        let a = seal_value(&ring, "/a", &ctx(), &json!(1)).unwrap().0;
        let b = seal_value(&ring, "/a", &ctx(), &json!(1)).unwrap().0;
        assert_ne!(a.split('.').nth(2), b.split('.').nth(2));
    }

    /// A lookup holding data keys by wrapped blob, for one key source.
    struct Unwrapped(Vec<DataKey>);

    impl DataKeyLookup for Unwrapped {
        fn unwrap(&self, source: &str, wrapped: &WrappedKey) -> Unwrap<'_> {
            if source != "transit:transit/orders" {
                return Unwrap::UnknownSource;
            }
            self.0
                .iter()
                .find(|k| k.wrapped() == wrapped)
                .map_or(Unwrap::Pending, Unwrap::Ready)
        }
    }

    fn data_key(byte: u8, wrapped: &str) -> DataKey {
        let source = KeyId::vault_transit("transit", "orders").unwrap();
        DataKey::new(
            source,
            &crate::SecretBytes::new(vec![byte; 32]),
            WrappedKey::parse(wrapped).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn kms_envelopes_round_trip_and_ask_for_their_data_key() {
        let key = data_key(1, "vault:v1:AAAA");
        let jwe = seal_value_with(&key, "/a", &ctx(), &json!({"n": 1})).unwrap();
        assert_eq!(key.seals(), 1);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwe.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "eventseal.vault-transit");
        assert_eq!(header["kid"], "transit:transit/orders");
        assert_eq!(URL_SAFE_NO_PAD.decode(jwe.split('.').nth(1).unwrap()).unwrap(), b"vault:v1:AAAA");
        let lookup = Unwrapped(vec![key]);
        let (value, kid) = open_value_with(&Keyring::default(), &lookup, "/a", &ctx(), &jwe).unwrap();
        assert_eq!((value, kid.as_str()), (json!({"n": 1}), "transit:transit/orders"));
        assert_eq!(
            open_value_with(&Keyring::default(), &lookup, "/b", &ctx(), &jwe),
            Err(Rejection::MovedField)
        );
        let empty = Unwrapped(Vec::new());
        let needs = open_value_with(&Keyring::default(), &empty, "/a", &ctx(), &jwe).unwrap_err();
        assert!(
            matches!(&needs, Rejection::NeedsDataKey { source, wrapped } if source.as_str() == "transit:transit/orders" && wrapped.as_str() == "vault:v1:AAAA")
        );
        // Without a KMS the source is unknown, as the kid of a key not in the keyring.
        assert!(matches!(open_value(&ring(), "/a", &ctx(), &jwe), Err(Rejection::UnknownKey(_))));
    }

    #[test]
    fn a_rewrapped_data_key_keeps_the_envelope_authentic() {
        // Rewrap changes the encrypted key only; the tag covers the header, not that segment.
        let jwe = seal_value_with(&data_key(9, "vault:v1:AAAA"), "/a", &ctx(), &json!("x")).unwrap();
        let rewrapped = with_wrapped_key(&jwe, &WrappedKey::parse("vault:v2:BBBB").unwrap()).unwrap();
        let (old, new): (Vec<&str>, Vec<&str>) = (jwe.split('.').collect(), rewrapped.split('.').collect());
        assert_eq!(URL_SAFE_NO_PAD.decode(new[1]).unwrap(), b"vault:v2:BBBB");
        assert_eq!(
            (old[0], old[2], old[3], old[4]),
            (new[0], new[2], new[3], new[4]),
            "only the encrypted key changes"
        );
        assert_eq!(
            wrapped_key_of(&rewrapped).map(|(kid, w)| (kid, w.version())),
            Some(("transit:transit/orders".to_owned(), 2))
        );
        // Only KMS envelopes have a wrapped key to replace.
        let (dir, _) = seal_value(&ring(), "/a", &ctx(), &json!("x")).unwrap();
        assert_eq!(with_wrapped_key(&dir, &WrappedKey::parse("vault:v2:BBBB").unwrap()), None);
        assert_eq!(
            with_wrapped_key("not.an.envelope", &WrappedKey::parse("vault:v2:BBBB").unwrap()),
            None
        );
        let lookup = Unwrapped(vec![data_key(9, "vault:v2:BBBB")]);
        assert_eq!(
            open_value_with(&Keyring::default(), &lookup, "/a", &ctx(), &rewrapped).unwrap().0,
            json!("x")
        );
        // A blob the KMS unwraps to another key: not authentic.
        let other = Unwrapped(vec![data_key(8, "vault:v2:BBBB")]);
        assert_eq!(
            open_value_with(&Keyring::default(), &other, "/a", &ctx(), &rewrapped),
            Err(Rejection::Unauthenticated)
        );
    }

    #[test]
    fn a_data_key_seals_at_most_its_limit() {
        let key = data_key(3, "vault:v1:AAAA");
        key.seals.store(crate::MAX_SEALS_PER_KEY, core::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            seal_value_with(&key, "/a", &ctx(), &json!(1)),
            Err(SealFailure::KeyExhausted(_))
        ));
    }

    #[test]
    fn headers_are_parsed_strictly() {
        let base = r#""alg":"dir","enc":"A256GCM","kid":"k","ptr":"/a","ctx":{"t":"x"}"#;
        let parse = |json: &str| Header::parse(json.as_bytes()).map(|h| (h.alg, h.kid, h.ptr, h.ctx.len()));
        assert_eq!(parse(&format!("{{{base}}}")), Ok(("dir".into(), "k".into(), "/a".into(), 1)));
        assert_eq!(
            parse(&format!(r#"{{{base},"x":{{"n":[1,{{"m":2}}]}}}}"#)).map(|h| h.1),
            Ok("k".into()),
            "other members are ignored"
        );
        assert_eq!(
            parse(r#"{"alg":"d\u0069r","enc":"A256GCM","kid":"k\/1","ptr":"/a","ctx":{}}"#).map(|h| (h.0, h.1)),
            Ok(("dir".into(), "k/1".into()))
        );
        for refused in [
            format!(r#"{{{base},"crit":null}}"#),
            format!(r#"{{{base},"crit":["exp"]}}"#),
            format!(r#"{{{base},"kid":"k2"}}"#),
            format!(r#"{{{base},"x":{{"y":[{{"z":1,"z":1}}]}}}}"#),
            r#"{"alg":"dir","enc":"A256GCM","kid":"k","ptr":"/a","ctx":{"t":"x","t":"y"}}"#.to_owned(),
            r#"{"alg":"dir","enc":"A256GCM","kid":"k","ptr":"/a","ctx":{"t":1}}"#.to_owned(),
            r#"{"alg":"dir","enc":"A256GCM","kid":7,"ptr":"/a","ctx":{}}"#.to_owned(),
            r#"{"alg":"dir","enc":"A256GCM","kid":"k","ptr":"/a"}"#.to_owned(),
            r#"["dir","A256GCM","k","/a",{}]"#.to_owned(),
            format!("{{{base}}} {{}}"),
        ] {
            assert!(matches!(parse(&refused), Err(Rejection::Malformed(_))), "{refused}");
        }
    }

    #[test]
    fn header_is_valid_jose_with_the_binding() {
        let (jwe, _) = seal_value(&ring(), "/data/card~1no", &ctx(), &json!(1)).unwrap();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwe.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "dir", "enc": "A256GCM", "kid": "k2", "ptr": "/data/card~1no", "ctx": {"tenant": "acme", "type": "order.created"}})
        );
    }
}
