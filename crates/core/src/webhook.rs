//! Standard Webhooks signatures (`v1`, HMAC-SHA256 over `id.timestamp.body`).

use crate::keyring::{KeyId, KeyStatus, KeyUse, Keyring};
use crate::secret::MacKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use core::fmt;
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
pub struct Verified {
    /// The message id, for the replay cache.
    pub id: String,
    /// The signed timestamp.
    pub timestamp: i64,
    /// The key whose signature matched.
    pub kid: KeyId,
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
    /// No `v1` signature matches any verifying key.
    NotAuthentic,
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
            Self::Replayed => f.write_str("message id was already seen"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Why a message could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The keyring has no primary `HS256` key.
    NoSigningKey,
    /// The message id is not acceptable (empty, too long, or not printable ASCII).
    InvalidId,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSigningKey => "no primary HS256 key to sign with",
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
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Signs a message: one `v1,` signature per signing key (the primary, and any `active`
/// key during a rotation), space-separated, for the `webhook-signature` header.
///
/// # Errors
/// [`SignError`] without a primary HS256 key or with an unusable id.
pub fn sign(keyring: &Keyring, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
    if !valid_id(id) {
        return Err(SignError::InvalidId);
    }
    let primary = keyring.primary(KeyUse::Sign).ok_or(SignError::NoSigningKey)?;
    let active = keyring
        .keys()
        .filter(|k| k.key_use() == KeyUse::Sign && k.status() == KeyStatus::Active);
    let signatures: Vec<String> = core::iter::once(primary)
        .chain(active)
        .filter_map(|k| k.mac_key())
        .map(|key| format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body))))
        .collect();
    Ok(signatures.join(" "))
}

/// Verifies a message against every non-disabled `HS256` key, with the timestamp within
/// `tolerance_secs` of `now` (both Unix seconds). Replay is the caller's next check.
///
/// # Errors
/// [`VerifyError`] for missing or malformed headers, a stale timestamp, or no match.
pub fn verify(keyring: &Keyring, headers: WebhookHeaders<'_>, body: &[u8], now: i64, tolerance_secs: u64) -> Result<Verified, VerifyError> {
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
    let verifying = keyring
        .keys()
        .filter(|k| k.key_use() == KeyUse::Sign && k.status() != KeyStatus::Disabled);
    for key in verifying {
        let Some(mac_key) = key.mac_key() else { continue };
        let expected = mac(mac_key, id, timestamp, body);
        // Compare against every candidate without stopping early on a mismatch.
        let matched = candidates.iter().fold(subtle::Choice::from(0), |any, c| any | c.ct_eq(&expected));
        if bool::from(matched) {
            return Ok(Verified {
                id: id.to_owned(),
                timestamp,
                kid: key.kid().clone(),
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

/// The `v1` signatures of a `webhook-signature` header. Entries of other versions (`v1a`, …)
/// are skipped as the standard says; anything else malformed refuses the whole header.
fn parse_signatures(header: &str) -> Result<Vec<[u8; 32]>, VerifyError> {
    let malformed = VerifyError::MalformedHeader(SIGNATURE_HEADER);
    let mut v1 = Vec::new();
    for (i, entry) in header.split(' ').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(malformed);
        }
        let (version, encoded) = entry.split_once(',').ok_or(malformed.clone())?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(malformed);
        }
        if version != "v1" {
            continue;
        }
        let bytes = STANDARD.decode(encoded).map_err(|_| malformed.clone())?;
        v1.push(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| malformed.clone())?);
    }
    if v1.is_empty() {
        return Err(VerifyError::NotAuthentic);
    }
    Ok(v1)
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
        let ok = verify(&ring(""), headers(Some(ID), Some("1614265330"), Some(SIGNATURE)), BODY, TS, 300).unwrap();
        assert_eq!((ok.id.as_str(), ok.kid.as_str()), (ID, "hook"));
    }

    #[test]
    fn published_negative_cases_are_refused() {
        let r = ring("");
        let at = |now: i64, ts: i64| {
            let sig = sign(&r, ID, ts, BODY).unwrap();
            verify(&r, headers(Some(ID), Some(&ts.to_string()), Some(&sig)), BODY, now, 300)
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
        for bad in [
            "v1",
            "v1,abc",
            "v1,not base64!",
            " v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ",g0hM",
        ] {
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
            Err(VerifyError::NotAuthentic)
        );
    }
}
