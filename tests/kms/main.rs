//! Envelope encryption against a real OpenBao (Vault Transit) server, at the level of core:
//! the test plays the host, sending the calls core's [`DataKeyCache`] asks for, and checks
//! the results independently, by calling OpenBao's `decrypt` itself and by decrypting the
//! field with its own AES-GCM. `filter` does the same through the shipped filter in the
//! harness, `rewrap` through the CLI's `eventseal rewrap`.

mod filter;
mod rewrap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use eventseal_core::{
    Context, DataKey, DataKeyCache, DataKeyLimits, Lease, Need, Outcome, Rejection, SecretBytes, VaultTransit, WrappedKey, open_value_with,
    seal_value_with,
};
use eventseal_testkit::http::call as http;
use eventseal_testkit::openbao::{OpenBao, decrypt_field, openbao_decrypt, wrapped_of};
use serde_json::{Value, json};

fn transit(bao: &OpenBao) -> VaultTransit {
    VaultTransit {
        cluster: "openbao".into(),
        authority: bao.addr().to_string(),
        mount: "transit".into(),
        key: "orders".into(),
        token_env: "BAO_TOKEN".into(),
        limits: DataKeyLimits::default(),
    }
}

fn started() -> OpenBao {
    let mut bao = OpenBao::start();
    bao.create_transit_key("transit", "orders");
    bao
}

/// What a host does with a call: send it to the KMS and read the answer with core.
fn send(bao: &OpenBao, transit: &VaultTransit, need: &Need) -> Outcome {
    let call = transit.call(need, &SecretBytes::new(bao.token().as_bytes().to_vec()));
    let headers = call.headers();
    let plain: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| !name.starts_with(':'))
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    match http(bao.addr(), "POST", &call.path, &plain, &call.body) {
        Ok((status, body)) => transit.outcome(need, Some(status), &body),
        Err(_) => transit.outcome(need, None, b""),
    }
}

fn issue(bao: &OpenBao, transit: &VaultTransit) -> DataKey {
    match send(bao, transit, &Need::Issue) {
        Outcome::Key(key) => key,
        other => panic!("datakey/plaintext gave {other:?}:\n{}", bao.log()),
    }
}

fn ctx() -> Context {
    [("type", "order.created"), ("tenant", "acme")].into_iter().collect()
}

/// Opens like a host: on `NeedsDataKey`, send the unwrap call the cache asks for, then retry.
fn open(bao: &OpenBao, transit: &VaultTransit, cache: &mut DataKeyCache, pointer: &str, envelope: &str) -> Result<Value, Rejection> {
    for _ in 0..2 {
        let result = open_value_with(&Default::default(), &cache.lookup(0), pointer, &ctx(), envelope);
        match result {
            Err(Rejection::NeedsDataKey { wrapped, .. }) => match cache.request_unwrap(0, &wrapped) {
                Lease::Start(call) => {
                    let outcome = send(bao, transit, &call.need);
                    assert_eq!(cache.complete(0, call.id, outcome), None, "the unwrap call failed");
                }
                other => panic!("expected an unwrap call, got {other:?}"),
            },
            other => return other.map(|(value, _)| value),
        }
    }
    panic!("still no data key after unwrapping")
}

#[test]
fn transit_issues_a_data_key_that_decrypt_gives_back() {
    let bao = started();
    let (status, reply) = bao.post("/v1/transit/datakey/plaintext/orders", &json!({"bits": 256}));
    assert_eq!(status, 200, "{reply}");
    let plaintext = STANDARD
        .decode(reply["data"]["plaintext"].as_str().expect("plaintext"))
        .expect("base64");
    let ciphertext = reply["data"]["ciphertext"].as_str().expect("ciphertext");
    assert_eq!(plaintext.len(), 32);
    assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
    assert!(
        WrappedKey::parse(ciphertext).is_ok(),
        "core refuses OpenBao's own ciphertext {ciphertext}"
    );
    assert_eq!(openbao_decrypt(&bao, ciphertext), plaintext);
}

#[test]
fn core_seals_with_an_openbao_data_key_and_opens_after_unwrapping() {
    let bao = started();
    let transit = transit(&bao);
    let key = issue(&bao, &transit);
    let value = json!({"number": "4111111111111111", "holder": "Zoë"});
    let envelope = seal_value_with(&key, "/data/card", &ctx(), &value).expect("sealed");
    // Independent check: the envelope carries what OpenBao issued, OpenBao unwraps it, and
    // that key (not core) decrypts the field.
    let wrapped = wrapped_of(&envelope);
    assert_eq!(wrapped, key.wrapped().as_str());
    let data_key = openbao_decrypt(&bao, &wrapped);
    assert_eq!(decrypt_field(&data_key, &envelope), value);
    // Core opens it through the cache: one decrypt call, then from the cache.
    let mut cache = DataKeyCache::new(transit.source(), transit.limits, 1);
    assert_eq!(open(&bao, &transit, &mut cache, "/data/card", &envelope), Ok(value.clone()));
    assert!(matches!(
        open_value_with(&Default::default(), &cache.lookup(0), "/data/card", &ctx(), &envelope),
        Ok((ref v, _)) if *v == value
    ));
    assert_eq!(
        open(&bao, &transit, &mut cache, "/data/other", &envelope),
        Err(Rejection::MovedField)
    );
}

#[test]
fn a_wrapped_key_openbao_never_issued_is_not_authentic() {
    let bao = started();
    let transit = transit(&bao);
    let key = issue(&bao, &transit);
    let envelope = seal_value_with(&key, "/a", &ctx(), &json!("secret")).expect("sealed");
    let forged = format!("vault:v1:{}", STANDARD.encode([7u8; 60]));
    let mut parts: Vec<String> = envelope.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(&forged);
    let mut cache = DataKeyCache::new(transit.source(), transit.limits, 1);
    assert_eq!(
        open(&bao, &transit, &mut cache, "/a", &parts.join(".")),
        Err(Rejection::Unauthenticated)
    );
}

#[test]
fn after_rotation_new_seals_use_the_new_version_and_old_envelopes_still_open() {
    let bao = started();
    let transit = transit(&bao);
    let before = seal_value_with(&issue(&bao, &transit), "/a", &ctx(), &json!("before")).expect("sealed");
    bao.rotate("transit", "orders");
    let after = seal_value_with(&issue(&bao, &transit), "/a", &ctx(), &json!("after")).expect("sealed");
    assert!(wrapped_of(&before).starts_with("vault:v1:"));
    assert!(wrapped_of(&after).starts_with("vault:v2:"), "{}", wrapped_of(&after));
    let mut cache = DataKeyCache::new(transit.source(), transit.limits, 1);
    assert_eq!(open(&bao, &transit, &mut cache, "/a", &before), Ok(json!("before")));
    assert_eq!(open(&bao, &transit, &mut cache, "/a", &after), Ok(json!("after")));
    // Rewrap the old data key under v2 without seeing it, and swap the segment: still opens.
    let (status, reply) = bao.post("/v1/transit/rewrap/orders", &json!({"ciphertext": wrapped_of(&before)}));
    assert_eq!(status, 200, "{reply}");
    let rewrapped = reply["data"]["ciphertext"].as_str().expect("ciphertext");
    assert!(rewrapped.starts_with("vault:v2:"));
    let mut parts: Vec<String> = before.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(rewrapped);
    let mut fresh = DataKeyCache::new(transit.source(), transit.limits, 1);
    assert_eq!(open(&bao, &transit, &mut fresh, "/a", &parts.join(".")), Ok(json!("before")));
}

#[test]
fn a_dead_kms_gives_retry_after_and_sealing_recovers_when_it_returns() {
    let mut bao = started();
    let transit = transit(&bao);
    let limits = DataKeyLimits {
        backoff_initial_ms: 1_000,
        ..DataKeyLimits::default()
    };
    let mut cache = DataKeyCache::new(transit.source(), limits, 5);
    bao.kill();
    let Lease::Start(call) = cache.lease(0, 1) else {
        panic!("expected a datakey call")
    };
    let outcome = send(&bao, &transit, &call.need);
    assert!(matches!(outcome, Outcome::Failed), "{outcome:?}");
    let retry_after = cache.complete(0, call.id, outcome).expect("a failure gives Retry-After");
    assert!(retry_after >= 1);
    assert!(matches!(cache.lease(10, 1), Lease::Unavailable { .. }));
    bao.restart();
    // After the backoff, the next lease calls again and gets a key.
    let Lease::Start(call) = cache.lease(1_000, 1) else {
        panic!("expected a new datakey call after the backoff")
    };
    let outcome = send(&bao, &transit, &call.need);
    assert_eq!(cache.complete(1_000, call.id, outcome), None);
    let Lease::Ready { key, .. } = cache.lease(1_001, 1) else {
        panic!("expected a data key")
    };
    let envelope = seal_value_with(&key, "/a", &ctx(), &json!(1)).expect("sealed");
    assert_eq!(decrypt_field(&openbao_decrypt(&bao, &wrapped_of(&envelope)), &envelope), json!(1));
}
