//! `eventseal keys`: new random keys and rotation of a keyring file.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventseal::Failure;
use eventseal_core::{KeyStatus, KeyUse, Keyring, public_jwk};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// What a key is for, as chosen on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Purpose {
    /// A256GCM: seals and opens fields.
    Seal,
    /// HS256: Standard Webhooks signatures.
    Sign,
    /// HS256 with "use": "audit": keys the audit trail.
    Audit,
}

impl Purpose {
    fn key_use(self) -> KeyUse {
        match self {
            Self::Seal => KeyUse::Seal,
            Self::Sign => KeyUse::Sign,
            Self::Audit => KeyUse::Audit,
        }
    }
}

/// The algorithm of a signing key, as chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Alg {
    /// HMAC-SHA256 (Standard Webhooks `v1`): every verifier holds the secret.
    #[default]
    Hs256,
    /// Ed25519 (Standard Webhooks `v1a`): verifiers hold only the public key.
    Ed25519,
}

/// A rotation status, as chosen on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Status {
    /// Seals or signs.
    Primary,
    /// Opens and verifies; signs during a signing-key rotation.
    Active,
    /// Opens and verifies only.
    Retired,
    /// Refuses.
    Disabled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Primary => KeyStatus::Primary.as_str(),
            Self::Active => KeyStatus::Active.as_str(),
            Self::Retired => KeyStatus::Retired.as_str(),
            Self::Disabled => KeyStatus::Disabled.as_str(),
        }
    }
}

/// A new JWK with 32 random bytes from the OS: the symmetric key `k`, or for an Ed25519
/// signing key the private key `d` with its public key `x` (RFC 8037).
///
/// # Errors
/// When the OS random number generator fails, or `alg` does not fit the purpose.
pub fn generate(purpose: Purpose, alg: Alg, kid: &str, status: Status) -> Result<Value, Failure> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|_| Failure::new("the system random number generator failed"))?;
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let mut jwk = match (purpose, alg) {
        (Purpose::Seal, Alg::Hs256) => json!({"kty": "oct", "kid": kid, "alg": "A256GCM", "use": "enc"}),
        (Purpose::Sign, Alg::Hs256) => json!({"kty": "oct", "kid": kid, "alg": "HS256", "use": "sig"}),
        (Purpose::Audit, Alg::Hs256) => json!({"kty": "oct", "kid": kid, "alg": "HS256", "use": "audit"}),
        (Purpose::Sign, Alg::Ed25519) => {
            let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig"});
            jwk["d"] = Value::String(secret.to_string());
            jwk["status"] = json!(status.as_str());
            let public = public_jwk(&jwk).map_err(|e| Failure::new(e.to_string()))?;
            // x before d, as RFC 8037 writes them.
            let d = jwk.as_object_mut().and_then(|o| o.remove("d")).unwrap_or_default();
            jwk["x"] = public["x"].clone();
            jwk["d"] = d;
            return Ok(jwk);
        }
        (_, Alg::Ed25519) => return Err(Failure::new("--alg ed25519 is for signing keys (--purpose sign)")),
    };
    jwk["k"] = Value::String(secret.to_string());
    jwk["status"] = json!(status.as_str());
    Ok(jwk)
}

/// The public half of every Ed25519 key in `jwks` (a JWK, or a JWK Set), for verifiers:
/// a JWK for a JWK, a JWK Set of the Ed25519 keys for a set.
///
/// # Errors
/// When a key is invalid, a lone JWK is not an Ed25519 key, or a set has none.
pub fn public(jwks: &Value) -> Result<Value, Failure> {
    let Some(keys) = jwks.get("keys") else {
        return public_jwk(jwks).map_err(|e| Failure::new(format!("key: {e}")));
    };
    Keyring::from_value(jwks, "").map_err(|e| Failure::new(e.to_string()))?;
    let public: Vec<Value> = keys
        .as_array()
        .into_iter()
        .flatten()
        .filter(|jwk| jwk.get("kty").and_then(Value::as_str) == Some("OKP"))
        .map(|jwk| public_jwk(jwk).map_err(|e| Failure::new(format!("key {}: {e}", jwk["kid"]))))
        .collect::<Result<_, _>>()?;
    if public.is_empty() {
        return Err(Failure::new("the keyring has no Ed25519 key: symmetric keys have no public half"));
    }
    Ok(json!({ "keys": public }))
}

/// Adds a new primary key for `purpose` to the keyring and demotes the old primary.
///
/// # Errors
/// When the keyring is invalid before or after, or the kid is taken.
pub fn rotate(keyring: &mut Value, purpose: Purpose, alg: Alg, kid: &str, demote_to: Status) -> Result<(), Failure> {
    let ring = Keyring::from_value(keyring, "").map_err(|e| Failure::new(e.to_string()))?;
    if ring.get(kid).is_some() {
        return Err(Failure::new(format!("kid {kid:?} is already in the keyring")));
    }
    let old = ring.primary(purpose.key_use()).map(|k| k.kid().as_str().to_owned());
    let keys = keyring
        .get_mut("keys")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Failure::new("keyring has no \"keys\" array"))?;
    if let Some(old) = &old {
        for jwk in keys.iter_mut().filter(|j| j["kid"] == old.as_str()) {
            jwk["status"] = json!(demote_to.as_str());
        }
    }
    keys.push(generate(purpose, alg, kid, Status::Primary)?);
    Keyring::from_value(keyring, "").map_err(|e| Failure::new(format!("rotation would make the keyring invalid: {e}")))?;
    Ok(())
}
