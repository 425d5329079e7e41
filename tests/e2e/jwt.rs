//! JWTs for `jwt_authn`: HS256 tokens signed with a per-run random key, and the JWKS (one
//! `oct` key) that Envoy verifies them with.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// The key id in the tokens' header and the JWKS.
const KID: &str = "eventseal-e2e";

/// A signing key and its JWKS.
pub struct JwtIssuer {
    secret: [u8; 32],
}

impl JwtIssuer {
    /// A fresh random key.
    ///
    /// # Panics
    /// If the OS has no randomness.
    pub fn new() -> JwtIssuer {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS has randomness");
        JwtIssuer { secret }
    }

    /// The JWKS `jwt_authn` verifies with (`local_jwks.inline_string`).
    pub fn jwks(&self) -> String {
        json!({"keys": [{"kty": "oct", "alg": "HS256", "kid": KID, "k": URL_SAFE_NO_PAD.encode(self.secret)}]}).to_string()
    }

    /// A compact JWS (HS256) carrying exactly `claims`.
    pub fn token(&self, claims: &Map<String, Value>) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT", "kid": KID}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(format!("{header}.{payload}").as_bytes());
        format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }
}
