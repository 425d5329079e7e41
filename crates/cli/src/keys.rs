//! `eventseal keys`: new random keys and rotation of a keyring file.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eventseal::Failure;
use eventseal_core::{KeyStatus, KeyUse, Keyring};
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

/// A new JWK with 32 random bytes from the OS.
///
/// # Errors
/// When the OS random number generator fails.
pub fn generate(purpose: Purpose, kid: &str, status: Status) -> Result<Value, Failure> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|_| Failure::new("the system random number generator failed"))?;
    let k = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let mut jwk = match purpose {
        Purpose::Seal => json!({"kty": "oct", "kid": kid, "alg": "A256GCM", "use": "enc"}),
        Purpose::Sign => json!({"kty": "oct", "kid": kid, "alg": "HS256", "use": "sig"}),
        Purpose::Audit => json!({"kty": "oct", "kid": kid, "alg": "HS256", "use": "audit"}),
    };
    jwk["k"] = Value::String(k.to_string());
    jwk["status"] = json!(status.as_str());
    Ok(jwk)
}

/// Adds a new primary key for `purpose` to the keyring and demotes the old primary.
///
/// # Errors
/// When the keyring is invalid before or after, or the kid is taken.
pub fn rotate(keyring: &mut Value, purpose: Purpose, kid: &str, demote_to: Status) -> Result<(), Failure> {
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
    keys.push(generate(purpose, kid, Status::Primary)?);
    Keyring::from_value(keyring, "").map_err(|e| Failure::new(format!("rotation would make the keyring invalid: {e}")))?;
    Ok(())
}
