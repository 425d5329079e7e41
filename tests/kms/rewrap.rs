//! `eventseal rewrap` (the CLI's library, `eventseal::rewrap::run`) against a real
//! OpenBao: after a Transit rotation, an event's KMS envelopes move to the new key version,
//! unwrap to the same data key, and nothing else in the event changes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use eventseal_core::{Context, DataKey, KeyId, SecretBytes, WrappedKey, seal_value_with};
use eventseal_testkit::openbao::{OpenBao, wrapped_of};
use serde_json::json;
use zeroize::Zeroizing;

fn datakey(bao: &OpenBao) -> (Vec<u8>, DataKey) {
    let (status, reply) = bao.post("/v1/transit/datakey/plaintext/orders", &json!({"bits": 256}));
    assert_eq!(status, 200, "{reply}");
    let plaintext = STANDARD.decode(reply["data"]["plaintext"].as_str().unwrap()).unwrap();
    let wrapped = WrappedKey::parse(reply["data"]["ciphertext"].as_str().unwrap()).unwrap();
    let source = KeyId::vault_transit("transit", "orders").unwrap();
    let key = DataKey::new(source, &SecretBytes::new(plaintext.clone()), wrapped).unwrap();
    (plaintext, key)
}

#[test]
fn rewrap_moves_envelopes_to_the_latest_version_without_changing_anything_else() {
    let mut bao = OpenBao::start();
    bao.create_transit_key("transit", "orders");
    let (plaintext, key) = datakey(&bao);
    let ctx: Context = [("type", "order.created")].into_iter().collect();
    let card = seal_value_with(&key, "/data/card", &ctx, &json!({"number": "4111111111111111"})).unwrap();
    let email = seal_value_with(&key, "/data/items/0/email", &ctx, &json!("zoe@example.com")).unwrap();
    // Formatting, order and the other members are kept byte for byte.
    let event = format!(
        "{{\n  \"type\": \"order.created\",\n  \"data\": {{\"card\": \"{card}\", \"items\": [{{\"email\": \"{email}\"}}], \"note\": \"a.b.c\"}}\n}}\n"
    );
    bao.rotate("transit", "orders");
    let kms = format!("http://{}", bao.addr());
    let (rewrapped, count) = eventseal::rewrap::run(event.as_bytes(), &kms, &Zeroizing::new(bao.token().to_owned()))
        .unwrap_or_else(|e| panic!("rewrap failed: {}", e.message()));
    assert_eq!(count, 2);
    let rewrapped = String::from_utf8(rewrapped).unwrap();
    let value: serde_json::Value = serde_json::from_str(&rewrapped).unwrap();
    for (old, new) in [
        (&card, value["data"]["card"].as_str().unwrap()),
        (&email, value["data"]["items"][0]["email"].as_str().unwrap()),
    ] {
        assert!(wrapped_of(old).starts_with("vault:v1:"));
        assert!(wrapped_of(new).starts_with("vault:v2:"), "{}", wrapped_of(new));
        let (o, n): (Vec<&str>, Vec<&str>) = (old.split('.').collect(), new.split('.').collect());
        assert_eq!((o[0], o[2], o[3], o[4]), (n[0], n[2], n[3], n[4]), "only the encrypted key changes");
        // OpenBao unwraps the new segment to the very data key that sealed the field.
        let (status, reply) = bao.post("/v1/transit/decrypt/orders", &json!({"ciphertext": wrapped_of(new)}));
        assert_eq!(status, 200, "{reply}");
        assert_eq!(STANDARD.decode(reply["data"]["plaintext"].as_str().unwrap()).unwrap(), plaintext);
    }
    let back = rewrapped
        .replace(value["data"]["card"].as_str().unwrap(), &card)
        .replace(value["data"]["items"][0]["email"].as_str().unwrap(), &email);
    assert_eq!(back, event, "nothing else changed");
    assert!(!rewrapped.contains("4111111111111111"));

    // A dead KMS: a clear error, without the token in it.
    bao.kill();
    let failure =
        eventseal::rewrap::run(event.as_bytes(), &kms, &Zeroizing::new("s.secret-token".to_owned())).expect_err("a dead KMS cannot rewrap");
    assert!(failure.message().contains("cannot reach the KMS"), "{}", failure.message());
    assert!(!failure.message().contains("s.secret-token"));
}
