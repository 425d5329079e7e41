//! The text form of the operations (`seal-text`, `open-text`, `sign-text`, `verify-text`)
//! is the byte form with the event as a `string`: for the same input it gives the same
//! bytes and the same refusals, and what one form seals or signs the other opens or
//! verifies, through one sealer's state.
//!
//! Both forms run through `eventseal_harness::component` (`Sealer::call` and
//! `Sealer::call_text`).

use crate::cross::{BILLING, SEALED, event, exchange, keys, policy, principal, request_headers};
use crate::vectors::{Opening, openings, vector_exchange};
use eventseal_harness::component::{Exchange, FieldResult, Operation, Outcome, Principal, Problem, ProblemKind};
use serde_json::Value;

/// One harness `sealer`, called in either form; a trap fails the test.
struct Sealer(eventseal_harness::component::Sealer);

impl Sealer {
    fn new(policy: &str, keyring: &str) -> Self {
        let created = crate::component().create(policy, keyring).expect("no trap");
        Self(created.unwrap_or_else(|e| panic!("configuration refused: {}", e.message)))
    }

    /// The byte form: `seal`, `open`, `sign`, `verify`.
    fn bytes(
        &mut self,
        operation: Operation,
        event: &[u8],
        exchange: &Exchange,
        principal: Option<&Principal>,
    ) -> Result<Outcome, Problem> {
        self.0
            .call(operation, event, exchange, principal)
            .unwrap_or_else(|e| panic!("{operation:?} trapped: {e}"))
    }

    /// The text form: `seal-text`, `open-text`, `sign-text`, `verify-text`. The event it
    /// returns is given as its UTF-8 bytes, to compare with the byte form's outcome.
    fn text(&mut self, operation: Operation, event: &str, exchange: &Exchange, principal: Option<&Principal>) -> Result<Outcome, Problem> {
        let outcome = self
            .0
            .call_text(operation, event, exchange, principal)
            .unwrap_or_else(|e| panic!("{operation:?} text trapped: {e}"))?;
        Ok(Outcome {
            event: outcome.event.into_bytes(),
            headers: outcome.headers,
            fields: outcome.fields,
            verified: outcome.verified,
            signed: outcome.signed,
            tolerated: outcome.tolerated,
        })
    }
}

fn utf8(event: &[u8]) -> &str {
    std::str::from_utf8(event).expect("events are UTF-8")
}

fn webhook_headers(outcome: &Outcome) -> Vec<(String, String)> {
    outcome.headers.iter().filter(|(n, _)| n.starts_with("webhook-")).cloned().collect()
}

/// The sealed event's text with each envelope's nonce, ciphertext and tag (random per
/// call) replaced by one marker; everything else, envelope headers included, is kept.
fn without_nonces(sealed: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(sealed).expect("a sealed event is JSON");
    SEALED.iter().fold(utf8(sealed).to_owned(), |text, pointer| {
        let envelope = doc.pointer(pointer).and_then(Value::as_str).expect("an envelope");
        let random = envelope.splitn(3, '.').nth(2).expect("five segments");
        text.replace(random, "<iv.ciphertext.tag>")
    })
}

#[test]
fn both_forms_open_every_vector_to_the_same_bytes_or_refusal() {
    let reader = principal("reader");
    let mut differences = Vec::new();
    let (mut opened, mut refused) = (0, 0);
    for Opening {
        file,
        policy,
        keyring,
        event,
        ..
    } in openings()
    {
        let mut sealer = Sealer::new(&policy, &keyring);
        let exchange = vector_exchange();
        let by_bytes = sealer.bytes(Operation::Open, event.as_bytes(), &exchange, Some(&reader));
        let by_text = sealer.text(Operation::Open, &event, &exchange, Some(&reader));
        match &by_bytes {
            Ok(_) => opened += 1,
            Err(_) => refused += 1,
        }
        if by_text != by_bytes {
            differences.push(format!("{file}: bytes {by_bytes:?}, text {by_text:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    assert!(opened > 0 && refused > 0, "the vectors open ({opened}) and refuse ({refused})");
}

#[test]
fn both_forms_seal_alike_and_each_opens_what_the_other_sealed_and_signed() {
    let mut service = Sealer::new(&policy(true).to_string(), &keys().to_string());
    let original = event().to_string();
    let publish = exchange("/events/orders", request_headers("acme", "shop", &[]));
    let by_bytes = service.bytes(Operation::Seal, original.as_bytes(), &publish, None).expect("sealed");
    let by_text = service.text(Operation::Seal, &original, &publish, None).expect("sealed");
    assert_eq!(without_nonces(&by_text.event), without_nonces(&by_bytes.event));
    assert_eq!(by_text.fields, by_bytes.fields);
    assert!(by_text.fields.iter().all(|f| f.result == FieldResult::Sealed) && by_text.fields.len() == SEALED.len());
    assert!(by_text.signed && by_bytes.signed);

    // Deliveries are verified, then opened for billing: each form takes the other's.
    let delivery = |sealed: &Outcome| exchange("/inbox/orders", request_headers("acme", BILLING, &webhook_headers(sealed)));
    let billing = principal(BILLING);
    let opened = [
        service.bytes(Operation::Open, &by_text.event, &delivery(&by_text), Some(&billing)),
        service.text(Operation::Open, utf8(&by_bytes.event), &delivery(&by_bytes), Some(&billing)),
    ];
    for outcome in opened {
        let outcome = outcome.expect("opened");
        assert_eq!(outcome.event, original.as_bytes(), "the original bytes");
        assert_eq!(outcome.verified.as_deref(), Some("hooks-1"));
    }

    // One sealer, one replay memory: a message accepted by one form is a replay to the other.
    let replayed = service
        .text(Operation::Open, utf8(&by_text.event), &delivery(&by_text), Some(&billing))
        .expect_err("a replay");
    assert_eq!((replayed.kind, replayed.status), (ProblemKind::SignatureReplayed, 401));
}

#[test]
fn both_forms_open_sign_and_verify_to_the_same_bytes() {
    let mut service = Sealer::new(&policy(true).to_string(), &keys().to_string());
    let original = event().to_string();
    let publish = exchange("/events/orders", request_headers("acme", "shop", &[]));
    let sealed = service.bytes(Operation::Seal, original.as_bytes(), &publish, None).expect("sealed");
    let sealed_text = utf8(&sealed.event);
    let billing = principal(BILLING);

    // Opening without a signature (`/consume`) is deterministic: the whole outcome is equal.
    let consume = exchange("/consume/orders", request_headers("acme", BILLING, &[]));
    let by_bytes = service.bytes(Operation::Open, &sealed.event, &consume, Some(&billing));
    let by_text = service.text(Operation::Open, sealed_text, &consume, Some(&billing));
    assert_eq!(by_text, by_bytes);
    assert_eq!(by_text.expect("opened").event, original.as_bytes());

    // Signing (`/relay`) keeps the event's bytes and the message id it is given; each
    // form's signature verifies in the other, with equal outcomes.
    let relay = |id: &str| exchange("/relay", request_headers("acme", "shop", &[("webhook-id".into(), id.into())]));
    let signed_by_bytes = service
        .bytes(Operation::Sign, &sealed.event, &relay("msg-bytes"), None)
        .expect("signed");
    let signed_by_text = service
        .text(Operation::Sign, sealed_text, &relay("msg-text"), None)
        .expect("signed");
    for (signed, id) in [(&signed_by_bytes, "msg-bytes"), (&signed_by_text, "msg-text")] {
        assert_eq!(signed.event, sealed.event);
        assert!(signed.signed && signed.headers.contains(&("webhook-id".to_owned(), id.to_owned())));
    }
    let delivery = |signed: &Outcome| exchange("/inbox/orders", request_headers("acme", BILLING, &webhook_headers(signed)));
    let verified_by_text = service.text(Operation::Verify, sealed_text, &delivery(&signed_by_bytes), Some(&billing));
    let verified_by_bytes = service.bytes(Operation::Verify, &sealed.event, &delivery(&signed_by_text), Some(&billing));
    assert_eq!(verified_by_text, verified_by_bytes);
    let verified = verified_by_text.expect("verified");
    assert_eq!(
        (verified.verified.as_deref(), verified.event.as_slice()),
        (Some("hooks-1"), original.as_bytes())
    );
}

#[test]
fn both_forms_refuse_alike() {
    let mut service = Sealer::new(&policy(true).to_string(), &keys().to_string());
    let original = event().to_string();
    let billing = principal(BILLING);
    for (operation, path, event, expected) in [
        (Operation::Seal, "/events/orders", "{\"data\":", ProblemKind::MalformedJson),
        (Operation::Verify, "/inbox/orders", original.as_str(), ProblemKind::SignatureMissing),
        (
            Operation::Open,
            "/consume/orders",
            original.as_str(),
            ProblemKind::SealedFieldRejected,
        ),
        (Operation::Sign, "/events/nowhere", original.as_str(), ProblemKind::NoRule),
    ] {
        let exchange = exchange(path, request_headers("acme", BILLING, &[]));
        let by_bytes = service.bytes(operation, event.as_bytes(), &exchange, Some(&billing));
        let by_text = service.text(operation, event, &exchange, Some(&billing));
        assert_eq!(by_text, by_bytes, "{operation:?} {path}");
        assert_eq!(by_text.map_err(|p| p.kind).expect_err("refused"), expected, "{operation:?} {path}");
    }
}
