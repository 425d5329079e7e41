//! Keyrings: JWK Sets (RFC 7517) of symmetric keys and Ed25519 keys (RFC 8037) with a
//! rotation status.

use crate::gcm::Gcm;
use crate::secret::{MacKey, SecretBytes};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value};

/// A key identifier (`kid`), carried in every envelope and signature decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl KeyId {
    /// A kid read from untrusted input (an envelope header), bounded and printable for reports.
    pub(crate) fn from_untrusted(kid: &str) -> Self {
        Self(kid.chars().filter(|c| !c.is_control()).take(128).collect())
    }

    /// A kid built by core itself from validated parts.
    pub(crate) fn from_trusted(kid: String) -> Self {
        Self(kid)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key is for, decided by its `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyUse {
    /// `A256GCM`: seals and opens fields.
    Seal,
    /// `HS256` or `EdDSA` (Ed25519): signs and verifies Standard Webhooks signatures.
    Sign,
    /// `HS256` with `"use": "audit"`: keys the audit trail's hash chain.
    Audit,
}

/// Where a key stands in its rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyStatus {
    /// Seals new fields / makes new signatures. Exactly one per use.
    Primary,
    /// Opens and verifies; signs alongside the primary during a signing-key rotation.
    Active,
    /// Still opens and verifies, and is reported so its envelopes get rewrapped.
    Retired,
    /// Refuses everything with a clear error.
    Disabled,
}

impl KeyStatus {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "primary" => Self::Primary,
            "active" => Self::Active,
            "retired" => Self::Retired,
            "disabled" => Self::Disabled,
            _ => return None,
        })
    }

    /// The status as written in a keyring.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Disabled => "disabled",
        }
    }
}

/// At most 2^32 random-nonce encryptions under one AES-GCM key (NIST SP 800-38D §8.3).
pub const MAX_SEALS_PER_KEY: u64 = 1 << 32;

/// One key of a [`Keyring`].
pub struct Key {
    kid: KeyId,
    key_use: KeyUse,
    status: KeyStatus,
    material: KeyMaterial,
    seals: AtomicU64,
}

enum KeyMaterial {
    /// Expanded once at load: AES round keys are not recomputed per field, and the GHASH
    /// state after each recent header is kept with the key.
    Aead(Box<Gcm>),
    /// Keyed once at load: no signature or audit record hashes the key again.
    Mac(Box<MacKey>),
    /// An Ed25519 public key: verifies `v1a` signatures only.
    Ed25519Public(Box<VerifyingKey>),
    /// An Ed25519 private key (wiped on drop): signs `v1a`, and verifies with its public half.
    Ed25519Private(Box<SigningKey>),
}

impl Key {
    /// The key's identifier.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// What the key is for.
    pub fn key_use(&self) -> KeyUse {
        self.key_use
    }

    /// Where the key stands in its rotation.
    pub fn status(&self) -> KeyStatus {
        self.status
    }

    /// Whether the key can make signatures: an HS256 key, or an Ed25519 key with its private half.
    pub fn can_sign(&self) -> bool {
        matches!(self.material, KeyMaterial::Mac(_) | KeyMaterial::Ed25519Private(_))
    }

    pub(crate) fn aead(&self) -> Option<&Gcm> {
        match &self.material {
            KeyMaterial::Aead(cipher) => Some(cipher),
            _ => None,
        }
    }

    pub(crate) fn mac_key(&self) -> Option<&MacKey> {
        match &self.material {
            KeyMaterial::Mac(key) => Some(key),
            _ => None,
        }
    }

    /// The Ed25519 public key of an Ed25519 key, private or not.
    pub(crate) fn ed25519_public(&self) -> Option<VerifyingKey> {
        match &self.material {
            KeyMaterial::Ed25519Public(key) => Some(**key),
            KeyMaterial::Ed25519Private(key) => Some(key.verifying_key()),
            _ => None,
        }
    }

    /// The Ed25519 private key, if the keyring holds it.
    pub(crate) fn ed25519_private(&self) -> Option<&SigningKey> {
        match &self.material {
            KeyMaterial::Ed25519Private(key) => Some(key),
            _ => None,
        }
    }

    /// Counts one encryption; `false` once the key has reached [`MAX_SEALS_PER_KEY`].
    pub(crate) fn take_seal(&self) -> bool {
        self.seals.fetch_add(1, Ordering::Relaxed) < MAX_SEALS_PER_KEY
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("use", &self.key_use)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A validated set of keys: unique kids, right lengths, one primary per use in service.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

/// Why a JWK Set was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// The text is not JSON.
    NotJson,
    /// A member is missing or has the wrong form; `at` is its JSON Pointer.
    Invalid {
        /// JSON Pointer of the offending member.
        at: String,
        /// What was expected there.
        expected: String,
    },
    /// Two keys share a kid.
    DuplicateKid(String),
    /// A use has keys in service but not exactly one primary.
    PrimaryCount {
        /// `A256GCM`, `HS256 or EdDSA` (signing) or `HS256 audit`.
        alg: &'static str,
        /// How many primaries were found.
        found: usize,
    },
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str("keyring is not valid JSON"),
            Self::Invalid { at, expected } => write!(f, "keyring {at}: expected {expected}"),
            Self::DuplicateKid(kid) => write!(f, "keyring: kid {kid:?} appears more than once"),
            Self::PrimaryCount { alg, found } => {
                write!(f, "keyring: {alg} keys need exactly one with status \"primary\", found {found}")
            }
        }
    }
}

impl std::error::Error for KeyringError {}

impl Keyring {
    /// Parses and validates a JWK Set document.
    ///
    /// # Errors
    /// [`KeyringError`] naming the JSON location of the first problem.
    pub fn from_jwks(text: &str) -> Result<Self, KeyringError> {
        let doc: Value = serde_json::from_str(text).map_err(|_| KeyringError::NotJson)?;
        Self::from_value(&doc, "")
    }

    /// Validates a JWK Set already parsed as JSON; `at` prefixes error locations.
    ///
    /// # Errors
    /// [`KeyringError`] naming the JSON location of the first problem.
    pub fn from_value(doc: &Value, at: &str) -> Result<Self, KeyringError> {
        let invalid = |path: String, expected: &str| KeyringError::Invalid {
            at: path,
            expected: expected.to_owned(),
        };
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("{at}/keys"), "an array of JWKs"))?;
        let mut keys: Vec<Key> = Vec::with_capacity(list.len());
        for (i, jwk) in list.iter().enumerate() {
            let key = parse_jwk(jwk, &format!("{at}/keys/{i}"))?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(KeyringError::DuplicateKid(key.kid.0));
            }
            keys.push(key);
        }
        for (key_use, alg) in [
            (KeyUse::Seal, "A256GCM"),
            (KeyUse::Sign, "HS256 or EdDSA"),
            (KeyUse::Audit, "HS256 audit"),
        ] {
            let in_use = keys.iter().filter(|k| k.key_use == key_use && k.status != KeyStatus::Disabled);
            let (count, primaries) = in_use.fold((0, 0), |(n, p), k| (n + 1, p + usize::from(k.status == KeyStatus::Primary)));
            if count > 0 && primaries != 1 {
                return Err(KeyringError::PrimaryCount { alg, found: primaries });
            }
        }
        Ok(Self { keys })
    }

    /// The key with this kid, whatever its status.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.0 == kid)
    }

    /// The primary key for a use, if the keyring has one.
    pub fn primary(&self, key_use: KeyUse) -> Option<&Key> {
        self.keys.iter().find(|k| k.key_use == key_use && k.status == KeyStatus::Primary)
    }

    /// Every key, in keyring order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

/// The public half of an Ed25519 JWK, for verifiers: `kty`, `crv`, `kid`, `alg`, `use`,
/// `x` (base64url) and `status`, without `d`. The JWK is validated as in a keyring.
///
/// # Errors
/// [`KeyringError`] for an invalid JWK, or one that is not an Ed25519 key (`/kty`).
pub fn public_jwk(jwk: &Value) -> Result<Value, KeyringError> {
    let key = parse_jwk(jwk, "")?;
    let public = key.ed25519_public().ok_or_else(|| KeyringError::Invalid {
        at: "/kty".to_owned(),
        expected: "\"OKP\" (an Ed25519 key): a symmetric key has no public half".to_owned(),
    })?;
    Ok(serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": key.kid.as_str(),
        "alg": "EdDSA",
        "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(public.to_bytes()),
        "status": key.status.as_str(),
    }))
}

fn parse_jwk(jwk: &Value, at: &str) -> Result<Key, KeyringError> {
    let invalid = |member: &str, expected: &str| KeyringError::Invalid {
        at: format!("{at}{member}"),
        expected: expected.to_owned(),
    };
    let obj: &Map<String, Value> = jwk.as_object().ok_or_else(|| invalid("", "a JWK object"))?;
    let text = |member: &str| obj.get(member).and_then(Value::as_str);
    let okp = match text("kty") {
        Some("oct") => false,
        Some("OKP") => true,
        _ => return Err(invalid("/kty", "\"oct\" (a symmetric key) or \"OKP\" (an Ed25519 key)")),
    };
    let kid = text("kid").filter(|k| !k.is_empty() && k.len() <= 128 && k.chars().all(|c| !c.is_control()));
    let kid = KeyId(
        kid.ok_or_else(|| invalid("/kid", "a non-empty string of at most 128 printable characters"))?
            .to_owned(),
    );
    let status = text("status")
        .and_then(KeyStatus::parse)
        .ok_or_else(|| invalid("/status", "one of \"primary\", \"active\", \"retired\", \"disabled\""))?;
    if okp {
        let material = parse_okp(obj, &invalid)?;
        return Ok(Key {
            kid,
            key_use: KeyUse::Sign,
            status,
            material,
            seals: AtomicU64::new(0),
        });
    }
    let k = text("k").ok_or_else(|| invalid("/k", "the key bytes, base64url (or a whsec_ secret for HS256)"))?;
    let declared = text("use");
    let (key_use, material) = match (text("alg"), declared) {
        (Some("A256GCM"), None | Some("enc")) => {
            let bytes = decode_b64url(k)
                .filter(|b| b.len() == 32)
                .ok_or_else(|| invalid("/k", "32 bytes, base64url without padding"))?;
            let key: &[u8; 32] = bytes.expose().try_into().map_err(|_| invalid("/k", "32 bytes"))?;
            (KeyUse::Seal, KeyMaterial::Aead(Box::new(Gcm::new(key))))
        }
        (Some("HS256"), None | Some("sig" | "audit")) => {
            let secret = decode_mac_secret(k).ok_or_else(|| {
                invalid(
                    "/k",
                    "at least 32 bytes base64url, or a Standard Webhooks secret \"whsec_\" + base64 of 24 to 64 bytes",
                )
            })?;
            // Audit keys are kept apart from signing keys: an audit key must never verify an event.
            let key_use = if declared == Some("audit") { KeyUse::Audit } else { KeyUse::Sign };
            let key = MacKey::new(&secret).map_err(|_| invalid("/k", "an HMAC key"))?;
            (key_use, KeyMaterial::Mac(Box::new(key)))
        }
        (Some("A256GCM"), Some(_)) => return Err(invalid("/use", "\"enc\" for an A256GCM key, when present")),
        (Some("HS256"), Some(_)) => return Err(invalid("/use", "\"sig\" or \"audit\" for an HS256 key, when present")),
        _ => return Err(invalid("/alg", "\"A256GCM\" (sealing) or \"HS256\" (signatures, audit)")),
    };
    Ok(Key {
        kid,
        key_use,
        status,
        material,
        seals: AtomicU64::new(0),
    })
}

/// The members of an Ed25519 JWK (RFC 8037 §2) after `kty`, `kid` and `status`: `crv`
/// `Ed25519`; `alg` `EdDSA` and `use` `sig` when present; `x` the public key and `d` the
/// private key (32 bytes base64url each), or their Standard Webhooks forms: `x` as `whpk_`
/// and `d` as `whsk_` + standard base64 (of the 32-byte seed, or of seed and public key, 64
/// bytes). With `d`, `x` may be left out; when given it must be `d`'s public key.
fn parse_okp(obj: &Map<String, Value>, invalid: &dyn Fn(&str, &str) -> KeyringError) -> Result<KeyMaterial, KeyringError> {
    let text = |member: &str| obj.get(member).and_then(Value::as_str);
    if text("crv") != Some("Ed25519") {
        return Err(invalid("/crv", "\"Ed25519\""));
    }
    if obj.contains_key("alg") && text("alg") != Some("EdDSA") {
        return Err(invalid("/alg", "\"EdDSA\" for an Ed25519 key, when present"));
    }
    if obj.contains_key("use") && text("use") != Some("sig") {
        return Err(invalid("/use", "\"sig\" for an Ed25519 key, when present"));
    }
    let x = match obj.get("x") {
        None => None,
        Some(x) => {
            let bytes = x
                .as_str()
                .and_then(|x| decode_key_string(x, "whpk_"))
                .filter(|b| b.len() == 32)
                .ok_or_else(|| invalid("/x", "the 32-byte public key, base64url, or a Standard Webhooks \"whpk_\" key"))?;
            let mut point = [0u8; 32];
            point.copy_from_slice(bytes.expose());
            let key = VerifyingKey::from_bytes(&point)
                .ok()
                .filter(|k| !k.is_weak())
                .ok_or_else(|| invalid("/x", "an Ed25519 public key (a point of large order)"))?;
            Some(key)
        }
    };
    let Some(d) = obj.get("d") else {
        let x = x.ok_or_else(|| invalid("/x", "the public key (or \"d\", the private key)"))?;
        return Ok(KeyMaterial::Ed25519Public(Box::new(x)));
    };
    let secret = d
        .as_str()
        .and_then(|d| decode_key_string(d, "whsk_"))
        .filter(|b| b.len() == 32 || b.len() == 64)
        .ok_or_else(|| {
            invalid(
                "/d",
                "the 32-byte private key, base64url, or a Standard Webhooks \"whsk_\" key (base64 of 32 bytes, or of 64: private and public key)",
            )
        })?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&secret.expose()[..32]);
    let signing = SigningKey::from_bytes(&seed);
    let public = signing.verifying_key();
    if secret.len() == 64 && secret.expose()[32..] != public.to_bytes() {
        return Err(invalid("/d", "a whsk_ key whose last 32 bytes are the public key of its first 32"));
    }
    if x.is_some_and(|x| x != public) {
        return Err(invalid("/x", "the public key of \"d\""));
    }
    Ok(KeyMaterial::Ed25519Private(Box::new(signing)))
}

/// A key string: base64url, or `prefix` and standard base64 (the Standard Webhooks forms).
fn decode_key_string(text: &str, prefix: &str) -> Option<SecretBytes> {
    match text.strip_prefix(prefix) {
        Some(b64) => STANDARD.decode(b64).ok().map(SecretBytes::new),
        None => decode_b64url(text),
    }
}

fn decode_b64url(text: &str) -> Option<SecretBytes> {
    URL_SAFE_NO_PAD.decode(text).ok().map(SecretBytes::new)
}

/// HS256 secrets: a JWK `k` (RFC 7518 §3.2: at least 256 bits) or a Standard Webhooks
/// `whsec_` secret (standard base64 of 24 to 64 bytes).
fn decode_mac_secret(k: &str) -> Option<SecretBytes> {
    match k.strip_prefix("whsec_") {
        Some(b64) => STANDARD
            .decode(b64)
            .ok()
            .map(SecretBytes::new)
            .filter(|s| (24..=64).contains(&s.len())),
        None => decode_b64url(k).filter(|s| s.len() >= 32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn ring(keys: Value) -> Result<Keyring, KeyringError> {
        Keyring::from_value(&json!({ "keys": keys }), "")
    }

    #[test]
    fn accepts_a_rotating_keyring() {
        let ring = ring(json!([
            {"kty": "oct", "kid": "new", "alg": "A256GCM", "k": K1, "status": "primary"},
            {"kty": "oct", "kid": "old", "alg": "A256GCM", "k": K1, "status": "retired"},
            {"kty": "oct", "kid": "gone", "alg": "A256GCM", "k": K1, "status": "disabled"},
            {"kty": "oct", "kid": "hook", "alg": "HS256", "k": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "status": "primary"},
        ]))
        .unwrap();
        assert_eq!(ring.primary(KeyUse::Seal).unwrap().kid().as_str(), "new");
        assert_eq!(ring.primary(KeyUse::Sign).unwrap().kid().as_str(), "hook");
        assert_eq!(ring.get("gone").unwrap().status(), KeyStatus::Disabled);
    }

    #[test]
    fn refuses_wrong_lengths_duplicates_and_primary_counts() {
        let short = ring(json!([{"kty": "oct", "kid": "a", "alg": "A256GCM", "k": "AAEC", "status": "primary"}]));
        assert!(matches!(short, Err(KeyringError::Invalid { ref at, .. }) if at == "/keys/0/k"));
        let dup = ring(json!([
            {"kty": "oct", "kid": "a", "alg": "A256GCM", "k": K1, "status": "primary"},
            {"kty": "oct", "kid": "a", "alg": "A256GCM", "k": K1, "status": "active"},
        ]));
        assert_eq!(dup.unwrap_err(), KeyringError::DuplicateKid("a".into()));
        let two = ring(json!([
            {"kty": "oct", "kid": "a", "alg": "A256GCM", "k": K1, "status": "primary"},
            {"kty": "oct", "kid": "b", "alg": "A256GCM", "k": K1, "status": "primary"},
        ]));
        assert_eq!(two.unwrap_err(), KeyringError::PrimaryCount { alg: "A256GCM", found: 2 });
        let none = ring(json!([{"kty": "oct", "kid": "a", "alg": "A256GCM", "k": K1, "status": "active"}]));
        assert_eq!(none.unwrap_err(), KeyringError::PrimaryCount { alg: "A256GCM", found: 0 });
        let weak = ring(json!([{"kty": "oct", "kid": "h", "alg": "HS256", "k": "whsec_AAAA", "status": "primary"}]));
        assert!(matches!(weak, Err(KeyringError::Invalid { ref at, .. }) if at == "/keys/0/k"));
    }

    #[test]
    fn errors_and_debug_never_show_key_bytes() {
        let ring = ring(json!([
            {"kty": "oct", "kid": "a", "alg": "A256GCM", "k": K1, "status": "primary"},
            {"kty": "oct", "kid": "h", "alg": "HS256", "k": K1, "status": "primary"},
            {"kty": "oct", "kid": "t", "alg": "HS256", "use": "audit", "k": K1, "status": "primary"},
        ]))
        .unwrap();
        let shown = format!("{ring:?}");
        assert!(!shown.contains(K1), "{shown}");
        assert!(!shown.contains("[0, 1, 2") && !shown.contains("Hmac"), "{shown}");
        let err = Keyring::from_jwks(&format!(
            "{{\"keys\":[{{\"kty\":\"oct\",\"kid\":\"a\",\"alg\":\"A128GCM\",\"k\":\"{K1}\"}}]}}"
        ))
        .unwrap_err();
        assert!(!err.to_string().contains(K1));
    }

    #[test]
    fn ed25519_keys_in_jwk_and_standard_webhooks_forms() {
        // RFC 8037 Appendix A.1: the private key d and its public key x.
        let d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let private = ring(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "d": d, "x": x, "status": "primary"}])).unwrap();
        assert!(private.primary(KeyUse::Sign).unwrap().can_sign());
        let public = ring(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": x, "alg": "EdDSA", "status": "primary"}])).unwrap();
        assert!(!public.primary(KeyUse::Sign).unwrap().can_sign());
        let whpk = format!("whpk_{}", STANDARD.encode(URL_SAFE_NO_PAD.decode(x).unwrap()));
        assert!(ring(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": whpk, "status": "primary"}])).is_ok());
        let mut both = URL_SAFE_NO_PAD.decode(d).unwrap();
        both.extend(URL_SAFE_NO_PAD.decode(x).unwrap());
        let whsk = format!("whsk_{}", STANDARD.encode(&both));
        let from_whsk = ring(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "d": whsk, "status": "primary"}])).unwrap();
        assert!(from_whsk.primary(KeyUse::Sign).unwrap().can_sign());
        // Located errors that never show the private key.
        let at = |keys: Value| match ring(keys) {
            Err(KeyringError::Invalid { at, expected }) => {
                assert!(!expected.contains(d), "{expected}");
                at
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            at(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "status": "primary"}])),
            "/keys/0/x"
        );
        assert_eq!(
            at(json!([{"kty": "OKP", "crv": "Ed448", "kid": "e", "x": x, "status": "primary"}])),
            "/keys/0/crv"
        );
        assert_eq!(
            at(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": x, "alg": "ES256", "status": "primary"}])),
            "/keys/0/alg"
        );
        assert_eq!(
            at(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "d": "AAAA", "status": "primary"}])),
            "/keys/0/d"
        );
        let other_x = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            at(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "e", "d": d, "x": other_x, "status": "primary"}])),
            "/keys/0/x"
        );
        let shown = format!("{private:?}");
        assert!(!shown.contains(d) && !shown.contains("SigningKey"), "{shown}");
    }
}
