//! Standard Webhooks signatures over `id.timestamp.body`: `v1` (HMAC-SHA256) and `v1a`
//! (Ed25519, RFC 8032).

use crate::keyring::{KeyId, KeyStatus, KeyUse, Keyring};
use crate::secret::MacKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use core::fmt;
use ed25519_dalek::{Signature, Signer as _};
use hmac::Mac;
use subtle::ConstantTimeEq;

/// Header carrying the message id.
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the Unix timestamp in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying space-separated `version,base64` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// Default clock tolerance, in seconds, either side of now.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Most signatures accepted in one header (rotation needs two or three).
const MAX_SIGNATURES: usize = 16;
/// Longest `webhook-id` accepted.
const MAX_ID_LEN: usize = 256;

/// The three Standard Webhooks headers as received (absent ones are `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookHeaders<'a> {
    /// `webhook-id`.
    pub id: Option<&'a str>,
    /// `webhook-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `webhook-signature`.
    pub signature: Option<&'a str>,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The message id, for the replay cache.
    pub id: &'a str,
    /// The signed timestamp.
    pub timestamp: i64,
    /// The key whose signature matched.
    pub kid: &'a KeyId,
    /// That key's status: anything but `primary` is reported during a rotation.
    pub status: KeyStatus,
}

/// Why a signature was refused. `NotAuthentic` deliberately says nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent or empty.
    MissingHeader(&'static str),
    /// A header does not have the form the standard requires.
    MalformedHeader(&'static str),
    /// The timestamp is older than the tolerance.
    TimestampTooOld,
    /// The timestamp is further in the future than the tolerance.
    TimestampTooNew,
    /// No signature matches any verifying key.
    NotAuthentic,
    /// The header holds no signature of a version the keyring has a key for (`v1` needs an
    /// HS256 key, `v1a` an Ed25519 key): nothing could be checked.
    NoCheckableSignature,
    /// This message id was already accepted within the tolerance window.
    Replayed,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader(name) => write!(f, "missing {name} header"),
            Self::MalformedHeader(name) => write!(f, "malformed {name} header"),
            Self::TimestampTooOld => f.write_str("signature timestamp is too old"),
            Self::TimestampTooNew => f.write_str("signature timestamp is too far in the future"),
            Self::NotAuthentic => f.write_str("no valid signature"),
            Self::NoCheckableSignature => {
                f.write_str("no signature this keyring can check: v1 needs an HS256 key, v1a an Ed25519 key, other versions are ignored")
            }
            Self::Replayed => f.write_str("message id was already seen"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Why a message could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The keyring has no primary signing key, or only the public half of an Ed25519 one.
    NoSigningKey,
    /// The message id is not acceptable (empty, too long, or not printable ASCII).
    InvalidId,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSigningKey => "no primary signing key (HS256, or Ed25519 with its private key) to sign with",
            Self::InvalidId => "message id must be 1 to 256 printable ASCII characters",
        })
    }
}

impl std::error::Error for SignError {}

fn present<'a>(value: Option<&'a str>, name: &'static str) -> Result<&'a str, VerifyError> {
    value.filter(|v| !v.is_empty()).ok_or(VerifyError::MissingHeader(name))
}

fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn mac(key: &MacKey, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac = key.start();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(itoa::Buffer::new().format(timestamp).as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The bytes an Ed25519 signature covers: `id.timestamp.body`.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut text = itoa::Buffer::new();
    let timestamp = text.format(timestamp);
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Signs a message: one signature per signing key (the primary, and any `active` key
/// during a rotation), `v1,` for an HS256 key and `v1a,` for an Ed25519 key,
/// space-separated, for the `webhook-signature` header. Public-only keys do not sign.
///
/// # Errors
/// [`SignError`] without a primary key that can sign, or with an unusable id.
pub fn sign(keyring: &Keyring, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
    if !valid_id(id) {
        return Err(SignError::InvalidId);
    }
    let primary = keyring
        .primary(KeyUse::Sign)
        .filter(|k| k.can_sign())
        .ok_or(SignError::NoSigningKey)?;
    let active = keyring
        .keys()
        .filter(|k| k.key_use() == KeyUse::Sign && k.status() == KeyStatus::Active);
    let mut content = None;
    let mut header = String::new();
    for key in core::iter::once(primary).chain(active) {
        if let Some(mac_key) = key.mac_key() {
            push_entry(&mut header, "v1", &mac(mac_key, id, timestamp, body));
        } else if let Some(private) = key.ed25519_private() {
            let content = content.get_or_insert_with(|| signed_content(id, timestamp, body));
            push_entry(&mut header, "v1a", &private.sign(content).to_bytes());
        }
    }
    Ok(header)
}

/// Appends `version,base64(signature)` to a `webhook-signature` header, space-separated.
fn push_entry(header: &mut String, version: &str, signature: &[u8]) {
    if !header.is_empty() {
        header.push(' ');
    }
    header.push_str(version);
    header.push(',');
    STANDARD.encode_string(signature, header);
}

/// Verifies a message against every non-disabled signing key, with the timestamp within
/// `tolerance_secs` of `now` (both Unix seconds): `v1` entries against the HS256 keys,
/// `v1a` entries against the Ed25519 keys (public or private); one valid entry suffices,
/// and entries of other versions are ignored. The primary key is tried first, so a
/// message it signed is never reported as verified by a key being rotated out. Replay is
/// the caller's next check.
///
/// # Errors
/// [`VerifyError`] for missing or malformed headers, a stale timestamp, no entry the
/// keyring can check, or no match.
pub fn verify<'a>(
    keyring: &'a Keyring,
    headers: WebhookHeaders<'a>,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<Verified<'a>, VerifyError> {
    let id = present(headers.id, ID_HEADER)?;
    let timestamp_text = present(headers.timestamp, TIMESTAMP_HEADER)?;
    let signature = present(headers.signature, SIGNATURE_HEADER)?;
    if !valid_id(id) {
        return Err(VerifyError::MalformedHeader(ID_HEADER));
    }
    let timestamp = parse_timestamp(timestamp_text).ok_or(VerifyError::MalformedHeader(TIMESTAMP_HEADER))?;
    let candidates = parse_signatures(signature)?;
    let tolerance = i64::try_from(tolerance_secs).unwrap_or(i64::MAX);
    if now.saturating_sub(timestamp) > tolerance {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp.saturating_sub(now) > tolerance {
        return Err(VerifyError::TimestampTooNew);
    }
    // A version is checkable if the keyring has a signing key of its kind, even a disabled
    // one: a signature by a disabled key is not authentic, not uncheckable.
    let checkable = keyring
        .keys()
        .filter(|k| k.key_use() == KeyUse::Sign)
        .any(|k| (k.mac_key().is_some() && !candidates.v1.is_empty()) || (k.ed25519_public().is_some() && !candidates.v1a.is_empty()));
    if !checkable {
        return Err(VerifyError::NoCheckableSignature);
    }
    // The primary first (a keyring has exactly one per use in service), then the others
    // in keyring order.
    let others = keyring
        .keys()
        .filter(|k| k.key_use() == KeyUse::Sign && !matches!(k.status(), KeyStatus::Disabled | KeyStatus::Primary));
    let verifying = keyring.primary(KeyUse::Sign).into_iter().chain(others);
    let mut content = None;
    for key in verifying {
        let matched = if let Some(mac_key) = key.mac_key() {
            let expected = mac(mac_key, id, timestamp, body);
            // Compare against every candidate without stopping early on a mismatch.
            bool::from(
                candidates
                    .v1
                    .iter()
                    .fold(subtle::Choice::from(0), |any, c| any | c.ct_eq(&expected)),
            )
        } else if let Some(public) = key.ed25519_public() {
            let content = content.get_or_insert_with(|| signed_content(id, timestamp, body));
            // Strict (RFC 8032 §5.1.7 with canonical S and no small-order keys or R).
            candidates
                .v1a
                .iter()
                .any(|c| public.verify_strict(content, &Signature::from_bytes(c)).is_ok())
        } else {
            false
        };
        if matched {
            return Ok(Verified {
                id,
                timestamp,
                kid: key.kid(),
                status: key.status(),
            });
        }
    }
    Err(VerifyError::NotAuthentic)
}

/// Decimal seconds only: no sign, no fraction, no exponent, at most 12 digits.
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The signatures of a `webhook-signature` header, by version.
#[derive(Default)]
struct Candidates {
    /// `v1`: HMAC-SHA256, 32 bytes.
    v1: Vec<[u8; 32]>,
    /// `v1a`: Ed25519, 64 bytes.
    v1a: Vec<[u8; 64]>,
}

/// The `v1` and `v1a` signatures of a `webhook-signature` header. Entries of other versions
/// (`v2`, …) are skipped, as the standard lets versions be added; an entry of a known
/// version with the wrong length, or anything else malformed, refuses the whole header.
fn parse_signatures(header: &str) -> Result<Candidates, VerifyError> {
    let malformed = || VerifyError::MalformedHeader(SIGNATURE_HEADER);
    let mut candidates = Candidates::default();
    for (i, entry) in header.split(' ').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(malformed());
        }
        let (version, encoded) = entry.split_once(',').ok_or_else(malformed)?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(malformed());
        }
        if version != "v1" && version != "v1a" {
            continue;
        }
        // A valid entry is at most 64 bytes (88 characters); base64 wants room for its
        // estimate of the length, 66 bytes for 88 characters. Longer is malformed anyway.
        let mut decoded = [0u8; 66];
        let length = STANDARD.decode_slice(encoded, &mut decoded).map_err(|_| malformed())?;
        let bytes = &decoded[..length];
        if version == "v1" {
            candidates.v1.push(<[u8; 32]>::try_from(bytes).map_err(|_| malformed())?);
        } else {
            candidates.v1a.push(<[u8; 64]>::try_from(bytes).map_err(|_| malformed())?);
        }
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer values published in the standard-webhooks libraries' test suites.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn ring(extra: &str) -> Keyring {
        Keyring::from_jwks(&format!(
            r#"{{"keys":[{{"kty":"oct","kid":"hook","alg":"HS256","k":"{SECRET}","status":"primary"}}{extra}]}}"#
        ))
        .unwrap()
    }

    fn headers<'a>(id: Option<&'a str>, ts: Option<&'a str>, sig: Option<&'a str>) -> WebhookHeaders<'a> {
        WebhookHeaders {
            id,
            timestamp: ts,
            signature: sig,
        }
    }

    #[test]
    fn known_answer_signs_and_verifies() {
        assert_eq!(sign(&ring(""), ID, TS, BODY).unwrap(), SIGNATURE);
        let r = ring("");
        let ok = verify(&r, headers(Some(ID), Some("1614265330"), Some(SIGNATURE)), BODY, TS, 300).unwrap();
        assert_eq!((ok.id, ok.kid.as_str()), (ID, "hook"));
    }

    #[test]
    fn published_negative_cases_are_refused() {
        let r = ring("");
        let at = |now: i64, ts: i64| {
            let sig = sign(&r, ID, ts, BODY).unwrap();
            verify(&r, headers(Some(ID), Some(&ts.to_string()), Some(&sig)), BODY, now, 300).map(|v| v.timestamp)
        };
        assert_eq!(at(TS, TS - 301), Err(VerifyError::TimestampTooOld));
        assert_eq!(at(TS, TS + 301), Err(VerifyError::TimestampTooNew));
        assert!(at(TS, TS - 300).is_ok() && at(TS, TS + 300).is_ok());
        let ts = "1614265330";
        assert_eq!(
            verify(&r, headers(None, Some(ts), Some(SIGNATURE)), BODY, TS, 300),
            Err(VerifyError::MissingHeader(ID_HEADER))
        );
        assert_eq!(
            verify(&r, headers(Some(ID), None, Some(SIGNATURE)), BODY, TS, 300),
            Err(VerifyError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify(&r, headers(Some(ID), Some(ts), None), BODY, TS, 300),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            verify(&r, headers(Some(ID), Some("hello"), Some(SIGNATURE)), BODY, TS, 300),
            Err(VerifyError::MalformedHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify(&r, headers(Some(ID), Some(ts), Some("v1,")), BODY, TS, 300),
            Err(VerifyError::MalformedHeader(SIGNATURE_HEADER))
        );
        // The published "invalid signature": the last base64 character changed.
        let wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(
            verify(&r, headers(Some(ID), Some(ts), Some(wrong)), BODY, TS, 300),
            Err(VerifyError::NotAuthentic)
        );
        assert_eq!(
            verify(&r, headers(Some(ID), Some(ts), Some(SIGNATURE)), b"{\"test\": 2432232315}", TS, 300),
            Err(VerifyError::NotAuthentic)
        );
    }

    #[test]
    fn several_signatures_per_header_allow_rotation() {
        let multi = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SIGNATURE} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        assert!(verify(&ring(""), headers(Some(ID), Some("1614265330"), Some(&multi)), BODY, TS, 300).is_ok());
        // During a rotation both the primary and the active key sign.
        let rotating = ring(r#",{"kty":"oct","kid":"next","alg":"HS256","k":"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD","status":"active"}"#);
        let both = sign(&rotating, ID, TS, BODY).unwrap();
        assert_eq!(both.split(' ').count(), 2);
        assert!(both.starts_with(SIGNATURE));
    }

    #[test]
    fn disabled_keys_do_not_verify() {
        let r = Keyring::from_jwks(&format!(
            r#"{{"keys":[{{"kty":"oct","kid":"hook","alg":"HS256","k":"{SECRET}","status":"disabled"}}]}}"#
        ))
        .unwrap();
        assert_eq!(
            verify(&r, headers(Some(ID), Some("1614265330"), Some(SIGNATURE)), BODY, TS, 300),
            Err(VerifyError::NotAuthentic)
        );
    }

    #[test]
    fn strict_header_parsing() {
        let r = ring("");
        let mut bad_entries: Vec<String> = [
            "v1",
            "v1,abc",
            "v1,not base64!",
            " v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ",g0hM",
        ]
        .map(String::from)
        .into();
        // Wrong lengths for the version, below, at and beyond the longest valid entry.
        for (version, length) in [
            ("v1", 31),
            ("v1", 33),
            ("v1", 64),
            ("v1", 65),
            ("v1", 66),
            ("v1a", 63),
            ("v1a", 65),
            ("v1a", 96),
        ] {
            bad_entries.push(format!("{version},{}", STANDARD.encode(vec![7u8; length])));
        }
        for bad in &bad_entries {
            assert_eq!(
                verify(&r, headers(Some(ID), Some("1614265330"), Some(bad)), BODY, TS, 300),
                Err(VerifyError::MalformedHeader(SIGNATURE_HEADER)),
                "{bad}"
            );
        }
        for bad_ts in ["-1", "1e9", "1614265330.0", "+1614265330"] {
            assert_eq!(
                verify(&r, headers(Some(ID), Some(bad_ts), Some(SIGNATURE)), BODY, TS, 300),
                Err(VerifyError::MalformedHeader(TIMESTAMP_HEADER))
            );
        }
        assert_eq!(
            verify(&r, headers(Some(ID), Some("1614265330"), Some("v1a,abcd")), BODY, TS, 300),
            Err(VerifyError::MalformedHeader(SIGNATURE_HEADER))
        );
        let sig64 = STANDARD.encode([7u8; 64]);
        for only_unknown in [format!("v1a,{sig64}"), "v2,abcd".to_owned()] {
            assert_eq!(
                verify(&r, headers(Some(ID), Some("1614265330"), Some(&only_unknown)), BODY, TS, 300),
                Err(VerifyError::NoCheckableSignature),
                "{only_unknown}"
            );
        }
    }
}
