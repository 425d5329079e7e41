//! The runner's own JWE (`dir`, `A256GCM`) and Standard Webhooks `v1`/`v1a` code (HMAC from
//! RustCrypto's 0.12 line, Ed25519 from ring; core uses hmac 0.13 and ed25519-dalek), written from
//! the specifications (RFC 7516, docs/FORMAT.md, standardwebhooks.com) and independent of
//! eventseal-core, so that cases do not trust the implementation under test to make their
//! inputs or to judge its own outputs.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// A key of a case's JWK Sets.
fn jwk<'a>(sets: &[&'a Value], kid: &str) -> &'a Value {
    sets.iter()
        .filter_map(|set| set.get("keys").and_then(Value::as_array))
        .flatten()
        .find(|jwk| jwk.get("kid").and_then(Value::as_str) == Some(kid))
        .unwrap_or_else(|| panic!("no key {kid:?} in the case's keys or foreign_keys"))
}

/// A symmetric key of a case's JWK Sets: its raw bytes.
pub fn key_bytes(sets: &[&Value], kid: &str) -> Vec<u8> {
    let jwk = jwk(sets, kid);
    let k = jwk
        .get("k")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("key {kid:?} has no k"));
    match k.strip_prefix("whsec_") {
        Some(b64) => STANDARD.decode(b64),
        None => URL_SAFE_NO_PAD.decode(k),
    }
    .unwrap_or_else(|e| panic!("key {kid:?}: k is not base64: {e}"))
}

/// Seals `value` as a JWE Compact envelope bound to `pointer` and `context`, optionally
/// tampered with afterwards.
pub fn seal(key: &[u8], kid: &str, pointer: &str, context: &Map<String, Value>, value: &Value, tamper: Option<&str>) -> String {
    let header =
        |ptr: &str| URL_SAFE_NO_PAD.encode(json!({"alg": "dir", "enc": "A256GCM", "kid": kid, "ptr": ptr, "ctx": context}).to_string());
    let protected = header(pointer);
    let cipher = Aes256Gcm::new_from_slice(key).expect("A256GCM keys are 32 bytes");
    let mut iv = [0u8; 12];
    getrandom::fill(&mut iv).expect("the OS has randomness");
    let plaintext = serde_json::to_vec(value).expect("JSON values serialize");
    let mut sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &plaintext,
                aad: protected.as_bytes(),
            },
        )
        .expect("AES-GCM encrypts");
    let mut tag = sealed.split_off(sealed.len() - 16);
    let mut shown_header = protected;
    match tamper {
        None => {}
        Some("flip_tag") => tag[0] ^= 1,
        Some("flip_ciphertext") => sealed[0] ^= 1,
        Some("flip_header") => shown_header = header("/tampered"),
        Some(other) => panic!("unknown tamper {other:?}"),
    }
    format!(
        "{shown_header}..{}.{}.{}",
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(&sealed),
        URL_SAFE_NO_PAD.encode(&tag)
    )
}

/// Opens an envelope without eventseal-core: returns its protected header and plaintext.
///
/// # Errors
/// A description of what is wrong with the envelope.
pub fn open(sets: &[&Value], envelope: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = envelope.split('.').collect();
    let [h, ek, iv, ct, tag] = parts[..] else {
        return Err(format!("not five segments: {envelope:?}"));
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("not base64url: {e}"));
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|e| format!("header is not JSON: {e}"))?;
    if header.get("alg") != Some(&json!("dir")) || header.get("enc") != Some(&json!("A256GCM")) || !ek.is_empty() {
        return Err(format!("not a dir/A256GCM envelope: {header}"));
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or("no kid")?;
    let cipher = Aes256Gcm::new_from_slice(&key_bytes(sets, kid)).map_err(|_| "key is not 32 bytes".to_owned())?;
    let mut sealed = decode(ct)?;
    sealed.extend(decode(tag)?);
    let iv = decode(iv)?;
    if iv.len() != 12 {
        return Err("iv is not 96 bits".to_owned());
    }
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&iv),
            Payload {
                msg: &sealed,
                aad: h.as_bytes(),
            },
        )
        .map_err(|_| "does not authenticate".to_owned())?;
    let value = serde_json::from_slice(&plaintext).map_err(|e| format!("plaintext is not JSON: {e}"))?;
    Ok((header, value))
}

/// The Standard Webhooks signature entry of key `kid` of a case's JWK Sets: `v1` for an
/// `oct` key, `v1a` for an Ed25519 (`OKP`) key with its private key `d` (Ed25519 is
/// deterministic, so a signer with the same key writes this very entry).
pub fn webhook_signature_by(sets: &[&Value], kid: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    if jwk(sets, kid).get("kty").and_then(Value::as_str) != Some("OKP") {
        return webhook_signature(&key_bytes(sets, kid), id, timestamp, body);
    }
    // A gateway's keyring may hold only the public key: the private one is in foreign_keys.
    let d = sets
        .iter()
        .filter_map(|set| set.get("keys").and_then(Value::as_array))
        .flatten()
        .filter(|jwk| jwk.get("kid").and_then(Value::as_str) == Some(kid))
        .find_map(|jwk| jwk.get("d").and_then(Value::as_str))
        .unwrap_or_else(|| panic!("Ed25519 key {kid:?} has no private key d in keys or foreign_keys"));
    let secret = match d.strip_prefix("whsk_") {
        Some(b64) => STANDARD.decode(b64),
        None => URL_SAFE_NO_PAD.decode(d),
    }
    .unwrap_or_else(|e| panic!("key {kid:?}: d is not base64: {e}"));
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&secret[..32]).expect("a 32-byte Ed25519 seed");
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!("v1a,{}", STANDARD.encode(pair.sign(&content).as_ref()))
}

/// A Standard Webhooks `v1` signature.
pub fn webhook_signature(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!("v1,{}", STANDARD.encode(hmac_sha256(secret, &content)))
}

/// HMAC-SHA256 of `data` under `key` (the tests' own, not core's).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_from_the_standard_webhooks_libraries() {
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            webhook_signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn sealed_envelopes_open_and_tampered_ones_do_not() {
        let set = json!({"keys": [{"kid": "k", "k": URL_SAFE_NO_PAD.encode([7u8; 32])}]});
        let ctx: Map<String, Value> = [("t".to_owned(), json!("x"))].into_iter().collect();
        let jwe = seal(&[7u8; 32], "k", "/a", &ctx, &json!({"n": 1}), None);
        let (header, value) = open(&[&set], &jwe).unwrap();
        assert_eq!((header["ptr"].clone(), value), (json!("/a"), json!({"n": 1})));
        for tamper in ["flip_tag", "flip_ciphertext", "flip_header"] {
            assert!(
                open(&[&set], &seal(&[7u8; 32], "k", "/a", &ctx, &json!(1), Some(tamper))).is_err(),
                "{tamper}"
            );
        }
    }
}
