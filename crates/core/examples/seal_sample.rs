//! Seals the fields of a fixed sample event and prints one JSON line per sealed field:
//! `{"pointer": …, "context": {…}, "envelope": "<JWE compact>", "plaintext": <the original value>}`.
//!
//! ```text
//! cargo run -q -p eventseal-core --example seal_sample -- <kid> <k>
//! ```
//!
//! `<k>` is a 256-bit key in base64url without padding, as in a JWK's `k`. Every run
//! uses fresh random IVs. `tests/interop/test_jwcrypto.py` opens each line with another
//! JOSE implementation to show that what eventseal seals, any JOSE library can open.

use eventseal_core::{Context, FieldPath, FieldResult, Keyring, Limits, seal_fields};
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::ExitCode;

/// The selectors sealed in the sample event: every JSON type, a wildcard, escaped names.
const FIELDS: [&str; 9] = [
    "/data/customer/email",
    "/data/customer/name",
    "/data/amount",
    "/data/rate",
    "/data/gift",
    "/data/note",
    "/data/items/*/price",
    "/data/card",
    "/data/a~1b/m~0n",
];

fn sample_event() -> Value {
    json!({
        "type": "order.created",
        "data": {
            "customer": {"email": "zoe@example.test", "name": "Zoë Ångström — 東京 🔐 \"q\" \\ \t"},
            "amount": 9_007_199_254_740_993_u64,
            "rate": -273.15,
            "gift": true,
            "note": null,
            "items": [{"sku": "A-1", "price": 129.99}, {"sku": "B-2", "price": 5}],
            "card": {"number": "4111111111111111", "expiry": "12/29"},
            "a/b": {"m~n": "escaped member names"}
        }
    })
}

fn contexts() -> Vec<Context> {
    vec![
        Context::new(),
        [("type", "order.created"), ("tenant", "acme")].into_iter().collect(),
        [("tenant", "Bäckerei Müller")].into_iter().collect(),
    ]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kid, k] = args.as_slice() else {
        eprintln!("usage: seal_sample <kid> <k: 32 bytes, base64url without padding>");
        return ExitCode::from(2);
    };
    let jwks = json!({"keys": [{"kty": "oct", "kid": kid, "alg": "A256GCM", "k": k, "status": "primary"}]});
    let keyring = match Keyring::from_value(&jwks, "") {
        Ok(keyring) => keyring,
        Err(e) => {
            eprintln!("seal_sample: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fields: Vec<FieldPath> = FIELDS.iter().filter_map(|f| FieldPath::parse(f).ok()).collect();
    let original = sample_event();
    let mut out = std::io::stdout().lock();
    for context in contexts() {
        let body = serde_json::to_vec(&original).unwrap_or_default();
        let (event, outcomes) = match seal_fields(&body, &fields, true, &keyring, &context, &Limits::default()) {
            Ok((sealed, outcomes)) => (serde_json::from_slice::<Value>(&sealed).unwrap_or_default(), outcomes),
            Err(e) => {
                eprintln!("seal_sample: {e}");
                return ExitCode::FAILURE;
            }
        };
        let bound: serde_json::Map<String, Value> = context.entries().map(|(n, v)| (n.to_owned(), Value::from(v))).collect();
        for outcome in outcomes.iter().filter(|o| o.result == FieldResult::Sealed) {
            let line = json!({
                "pointer": outcome.pointer,
                "context": bound,
                "envelope": event.pointer(&outcome.pointer),
                "plaintext": original.pointer(&outcome.pointer),
            });
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
