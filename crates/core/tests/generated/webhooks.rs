//! The Standard Webhooks vectors of `tests/vectors/webhooks/` (`v1` HMAC-SHA256 and
//! `v1a` Ed25519), written by the independent Python generator (`tests/vectors/generate.py`,
//! pyca `cryptography` for Ed25519): each keyring loads or is refused where the vector says,
//! each header verifies under the named key or is refused for the named reason, and where the
//! vector says so, signing with the keyring writes its header byte for byte (Ed25519 is
//! deterministic, so this is a known answer for the signing side too).

use crate::vectors;
use eventseal_core::{KeyStatus, Keyring, KeyringError, VerifyError, WebhookHeaders, sign, verify};

fn class(error: &VerifyError) -> &'static str {
    match error {
        VerifyError::NotAuthentic => "not_authentic",
        VerifyError::NoCheckableSignature => "no_checkable_signature",
        VerifyError::MalformedHeader(_) => "malformed_header",
        VerifyError::MissingHeader(_) => "missing_header",
        VerifyError::TimestampTooOld => "timestamp_too_old",
        VerifyError::TimestampTooNew => "timestamp_too_new",
        _ => "other",
    }
}

#[test]
fn every_webhook_vector() {
    let mut signed = 0;
    let vectors = vectors("webhooks");
    assert!(vectors.len() >= 20, "the webhook vectors are missing");
    for (name, vector) in vectors {
        let expected = &vector["expected"];
        let keyring = Keyring::from_value(&vector["keys"], "");
        if let Some(at) = expected["keyring_error"].as_str() {
            match keyring {
                Err(KeyringError::Invalid { at: got, .. }) => assert_eq!(got, at, "{name}"),
                other => panic!("{name}: expected the keyring refused at {at}, got {other:?}"),
            }
            continue;
        }
        let keyring = keyring.unwrap_or_else(|e| panic!("{name}: {e}"));
        let headers = &vector["headers"];
        let text = |h: &str| headers[h].as_str();
        let webhook = WebhookHeaders {
            id: text("webhook-id"),
            timestamp: text("webhook-timestamp"),
            signature: text("webhook-signature"),
        };
        let body = vector["body"].as_str().expect("body").as_bytes();
        let now = vector["now"].as_i64().expect("now");
        let tolerance = vector["tolerance_seconds"].as_u64().expect("tolerance");
        let outcome = verify(&keyring, webhook, body, now, tolerance);
        match expected["error"].as_str() {
            Some(error) => assert_eq!(outcome.as_ref().map_err(class).err(), Some(error), "{name}: {outcome:?}"),
            None => {
                let verified = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(verified.kid.as_str(), expected["kid"].as_str().expect("kid"), "{name}");
                let status = match expected["status"].as_str() {
                    Some("primary") => KeyStatus::Primary,
                    Some("active") => KeyStatus::Active,
                    Some("retired") => KeyStatus::Retired,
                    other => panic!("{name}: status {other:?}"),
                };
                assert_eq!(verified.status, status, "{name}");
            }
        }
        if vector["signs"] == true {
            let timestamp: i64 = text("webhook-timestamp").and_then(|t| t.parse().ok()).expect("timestamp");
            let header = sign(&keyring, text("webhook-id").expect("id"), timestamp, body).expect("signs");
            assert_eq!(Some(header.as_str()), text("webhook-signature"), "{name}");
            signed += 1;
        }
    }
    assert!(signed >= 3, "the signing known answers ran");
}

#[test]
fn a_public_key_cannot_sign() {
    let (_, vector) = vectors("webhooks")
        .into_iter()
        .find(|(name, _)| name.starts_with("401-"))
        .expect("the public-key vector");
    let keyring = Keyring::from_value(&vector["keys"], "").expect("keyring");
    assert!(sign(&keyring, "msg_1", 1, b"{}").is_err());
}
