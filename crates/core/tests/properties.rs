//! Property tests: sealing round-trips any event, and no tampered envelope ever opens.

use eventseal_core::{Context, FieldPath, Keyring, Limits, Rejection, open_fields, open_value, seal_fields, seal_value};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn keyring() -> Keyring {
    Keyring::from_jwks(
        r#"{"keys":[{"kty":"oct","kid":"prop","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#,
    )
    .unwrap()
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z~/ ]{1,6}", inner), 0..5)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every pointer into `doc` (members escaped per RFC 6901), for choosing field sets.
fn pointers(doc: &Value, prefix: String, out: &mut Vec<String>) {
    match doc {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn open_of_seal_is_identity(members in prop::collection::vec(("[a-z]{1,5}", json()), 1..6), picks in prop::collection::vec(any::<prop::sample::Index>(), 1..6), wildcard in any::<bool>(), pretty in any::<bool>()) {
        let doc = Value::Object(members.into_iter().collect());
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let mut fields: Vec<FieldPath> = picks.iter().map(|i| FieldPath::parse(&all[i.index(all.len())]).unwrap()).collect();
        if wildcard {
            fields.push(FieldPath::parse("/*").unwrap());
        }
        let context: Context = [("type", "prop.test")].into_iter().collect();
        let ring = keyring();
        let limits = Limits { max_body_bytes: 1 << 20, max_json_depth: 64 };
        let body = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap();
        let (sealed, _) = seal_fields(&body, &fields, false, &ring, &context, &limits).unwrap();
        let (opened, _) = open_fields(&sealed, &fields, false, &ring, &context, &limits).unwrap();
        // Byte for byte: fields are replaced in place, nothing else is re-serialized.
        prop_assert_eq!(opened, body);
    }

    #[test]
    fn any_flipped_byte_is_refused(value in json(), position in any::<prop::sample::Index>(), flip in 1u8..=127) {
        let ring = keyring();
        let context = Context::new();
        let (envelope, _) = seal_value(&ring, "/f", &context, &value).unwrap();
        let mut bytes = envelope.into_bytes();
        let at = position.index(bytes.len());
        bytes[at] ^= flip;
        // Base64url and dots are ASCII, and so is any flip below 0x80.
        let tampered = String::from_utf8(bytes).unwrap();
        match open_value(&ring, "/f", &context, &tampered) {
            Ok(_) => prop_assert!(false, "tampered envelope opened"),
            Err(Rejection::Malformed(_) | Rejection::Unauthenticated) => {}
            // A flip inside the header's kid names another key before anything can be
            // authenticated; with a one-key ring that key is unknown. Nothing opens.
            Err(Rejection::UnknownKey(kid)) => prop_assert_ne!(kid.as_str(), "prop"),
            Err(other) => prop_assert!(false, "unexpected rejection {other:?}"),
        }
    }
}
