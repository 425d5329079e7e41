//! Fuzz targets of eventseal's parsers: each takes arbitrary bytes, must never panic, and
//! checks an oracle where one exists. `scripts/fuzz TARGET SECONDS` runs one under
//! libFuzzer (coverage-guided, on the stable toolchain); `cargo test -p eventseal-fuzz`
//! replays every committed corpus entry and regression input through the same functions.

use eventseal_core::{
    Context, Event, FieldPath, FrameReader, Gateway, Keyring, Limits, Policy, Verdict, WebhookHeaders, open_fields, open_value,
    read_headers, rewrite_info, seal_fields, sign, verify,
};
use std::sync::OnceLock;

// The harness's proxy-wasm header map codec and the filter's property decoder, compiled
// here from their own source files: the fuzz driver instruments them without building
// (and instrumenting) wasmtime or the proxy-wasm SDK around them.
#[path = "../../plugin/src/property.rs"]
#[allow(dead_code, missing_docs)]
mod filter_property;
#[path = "../../host-harness/src/headers.rs"]
#[allow(dead_code, missing_docs, unreachable_pub)]
mod harness_headers;

/// Every target, by the name `scripts/fuzz` and the corpus folders use.
pub const TARGETS: [&str; 9] = [
    "envelope",
    "policy",
    "keyring",
    "event",
    "webhook",
    "nats-frames",
    "nats-gateway",
    "header-map",
    "property",
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "envelope" => envelope,
        "policy" => policy,
        "keyring" => keyring,
        "event" => event,
        "webhook" => webhook,
        "nats-frames" => nats_frames,
        "nats-gateway" => nats_gateway,
        "header-map" => header_map,
        "property" => property,
        _ => return None,
    })
}

/// The keys of the envelope vectors (tests/vectors): a primary, an active, a retired and a
/// disabled key, and an HMAC key, so inputs seeded from the vectors reach the opening of
/// real ciphertext as well as every key-status path.
fn fuzz_keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        Keyring::from_jwks(
            r#"{"keys": [
            {"kty": "oct", "kid": "k-2026-03", "alg": "A256GCM", "k": "YR8lloN7d7wsbCj0Idsz5CGTtm9k1WOnx2dTDnheBuA", "status": "primary"},
            {"kty": "oct", "kid": "k-2026-01", "alg": "A256GCM", "k": "TE4C4sRWPXkSNIa8V0TofICGTSeqxG_TXfM4LH-U0zA", "status": "active"},
            {"kty": "oct", "kid": "k-2025-11", "alg": "A256GCM", "k": "2COBSKObdkA5Yx-rXfnZ-qDzub3B8raZ-wLgzk4KyfQ", "status": "retired"},
            {"kty": "oct", "kid": "k-2025-06", "alg": "A256GCM", "k": "EN4GR7OYcphKilfX3dq2EHyC6DKiRp_OETBRItAPUqo", "status": "disabled"},
            {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": "0YahULInBdR35dvDNLId0ukPgBxn_HIWYtC5p1J9caQ", "status": "primary"}
        ]}"#,
        )
        .expect("the fuzz keyring loads")
    })
}

/// The worked example's binding (vector 000): its envelope opens; others are refused.
fn context() -> Context {
    let mut context = Context::new();
    context.insert("tenant", "acme");
    context.insert("type", "order.created");
    context
}

/// An envelope (JWE compact) opened for `/data/customer/email`: any input is opened or
/// refused, never a panic; what opens re-seals and opens to the same value.
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ring = fuzz_keyring();
    if let Ok((value, _)) = open_value(ring, "/data/customer/email", &context(), text) {
        let (again, _) = eventseal_core::seal_value(ring, "/data/customer/email", &context(), &value).expect("the primary key seals");
        let (reopened, _) = open_value(ring, "/data/customer/email", &context(), &again).expect("a fresh envelope opens");
        assert_eq!(reopened, value);
    }
}

/// A policy document: loaded or refused with a located error, never a panic.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) = Policy::from_json(text) {
        let _ = error.to_string();
    }
}

/// A keyring (JWK Set): loaded or refused; neither its `Debug` nor its error shows any
/// key value the input holds.
pub fn keyring(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let shown = match Keyring::from_jwks(text) {
        Ok(ring) => format!("{ring:?}"),
        Err(error) => error.to_string(),
    };
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let keys: Vec<&serde_json::Value> = doc.get("keys").and_then(|k| k.as_array()).into_iter().flatten().collect();
    // Key-like values only: 22 or more base64url characters (16 bytes or more), which no
    // message holds by chance; a "k" of "disabled" is not a leak when the error says it.
    let key_like = |k: &&str| k.len() >= 22 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    // Key ids are public and messages name them: a "k" that is also part of some "kid"
    // cannot be told from that kid in a message.
    let kids: Vec<&str> = keys.iter().filter_map(|k| k.get("kid")?.as_str()).collect();
    let in_a_kid = |k: &&str| kids.iter().any(|kid| kid.contains(*k));
    for secret in keys
        .iter()
        .filter_map(|k| k.get("k")?.as_str())
        .filter(key_like)
        .filter(|k| !in_a_kid(k))
    {
        assert!(!shown.contains(secret), "key material in {shown:?}");
    }
}

/// The selectors the event target seals: named members, wildcards, array elements.
const SELECTORS: [&str; 5] = ["/data/card", "/data/*", "/data/items/*/price", "/a", "/*/email"];

/// An event: parsed or refused; whatever seals opens back to the very same bytes, and
/// the sealed event is JSON to an independent parser (serde_json).
pub fn event(data: &[u8]) {
    let limits = Limits::default();
    if Event::parse(data, &limits).is_err() {
        return;
    }
    let ring = fuzz_keyring();
    let fields: Vec<FieldPath> = SELECTORS.iter().map(|s| FieldPath::parse(s).expect("a selector")).collect();
    let Ok((sealed, _)) = seal_fields(data, &fields, false, ring, &context(), &limits) else {
        return;
    };
    serde_json::from_slice::<serde_json::Value>(&sealed).expect("what seals is JSON");
    let (opened, _) = open_fields(&sealed, &fields, false, ring, &context(), &limits).expect("what sealed opens");
    assert_eq!(opened, data, "seal then open gives back the event");
}

/// Standard Webhooks headers and body, split at 0xFF bytes (id, timestamp, signature,
/// body): verified or refused, never a panic; a valid id and timestamp signed here verify.
pub fn webhook(data: &[u8]) {
    let parts: Vec<&[u8]> = data.splitn(4, |&b| b == 0xFF).collect();
    let text = |i: usize| parts.get(i).and_then(|p| std::str::from_utf8(p).ok());
    let (id, timestamp, signature) = (text(0), text(1), text(2));
    let body = parts.get(3).copied().unwrap_or_default();
    let ring = fuzz_keyring();
    let now = 1_767_225_600;
    let _ = verify(ring, WebhookHeaders { id, timestamp, signature }, body, now, 300);
    if let (Some(id), Some(Ok(ts))) = (id, timestamp.map(str::parse::<i64>))
        && let Ok(signed) = sign(ring, id, ts, body)
        && (now - ts).unsigned_abs() <= 300
    {
        // The header as a signer writes it: the timestamp's canonical digits.
        let canonical = ts.to_string();
        let headers = WebhookHeaders {
            id: Some(id),
            timestamp: Some(&canonical),
            signature: Some(&signed),
        };
        verify(ring, headers, body, now, 300).expect("what sign makes verifies");
    }
}

/// NATS protocol bytes, cut in two at a point the first byte picks: the same frames (or
/// the same error) as fed whole, and every frame's encoding reads back as itself.
pub fn nats_frames(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else { return };
    let frames = |pieces: &[&[u8]]| {
        let mut reader = FrameReader::new(4096);
        let mut frames = Vec::new();
        for piece in pieces {
            reader.push(piece);
            loop {
                match reader.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    };
    let at = usize::from(cut).min(rest.len());
    let whole = frames(&[rest]);
    assert_eq!(frames(&[&rest[..at], &rest[at..]]), whole, "chunking changes nothing");
    for frame in &whole.0 {
        let (again, error) = frames(&[&frame.encode()]);
        assert_eq!(
            (again.as_slice(), error),
            (std::slice::from_ref(frame), None),
            "{frame:?} encodes to itself"
        );
    }
    let _ = read_headers(rest);
    if let Ok(info) = std::str::from_utf8(rest) {
        let _ = rewrite_info(info, |m| m / 2, false);
    }
}

/// A gateway connection fed client bytes then server bytes (split at the first 0xFF),
/// refusing every other message: never a panic, and what it sends the server parses as
/// whole frames.
pub fn nats_gateway(data: &[u8]) {
    let mut halves = data.splitn(2, |&b| b == 0xFF);
    let (client, server) = (halves.next().unwrap_or_default(), halves.next().unwrap_or_default());
    let mut gateway = Gateway::new(true, 4096, false);
    let mut turn = false;
    let mut decide = |_: eventseal_core::Message<'_>| {
        turn = !turn;
        if turn {
            Verdict::Forward(None)
        } else {
            Verdict::Refuse(eventseal_core::ProblemKind::SignatureInvalid)
        }
    };
    if let Ok(out) = gateway.from_client(client, &mut decide) {
        let mut reader = FrameReader::new(usize::MAX);
        reader.push(&out);
        while let Some(_frame) = reader.next_frame().expect("the gateway sends whole frames") {}
        assert_eq!(reader.buffered(), 0, "no partial frame sent");
    }
    let _ = gateway.from_server(server, &mut decide);
}

/// A proxy-wasm header map as the harness decodes it from a guest: decoded or refused,
/// never a panic; what decodes encodes back to a map that decodes to the same pairs.
pub fn header_map(data: &[u8]) {
    let Some(pairs) = harness_headers::deserialize_pairs(data) else {
        return;
    };
    let again = harness_headers::serialize_pairs(pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
    assert_eq!(harness_headers::deserialize_pairs(&again).as_ref(), Some(&pairs));
    let _ = harness_headers::Headers::deserialize(data);
}

/// A property value in Envoy's encoding (a JWT payload's claims): decoded to JSON,
/// never a panic.
pub fn property(data: &[u8]) {
    let value = filter_property::decode_value(data);
    serde_json::to_string(&value).expect("the decoded value is JSON");
}
