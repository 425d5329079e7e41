//! The batch operations (`seal-many`, `open-many`, `sign-many`) decide each event of a
//! batch as the single operation decides it: what a batch seals, the single form opens
//! to the same bytes and the other way round, a refused event refuses only itself, in
//! its place, and a batch over the bound is refused whole.

use crate::cross::{BILLING, SEALED, event, exchange, keys, policy, principal, request_headers};
use eventseal_harness::component::{BatchOperation, BatchOutcome, Exchange, Operation, Principal, Problem, ProblemKind, Sealer};
use serde_json::{Value, json};

fn sealer() -> Sealer {
    let created = crate::component().create(&policy(true).to_string(), &keys().to_string());
    created
        .expect("no trap")
        .unwrap_or_else(|e| panic!("configuration refused: {}", e.message))
}

fn many(
    sealer: &mut Sealer,
    operation: BatchOperation,
    events: &[String],
    exchange: &Exchange,
    who: Option<&Principal>,
) -> Result<BatchOutcome, Problem> {
    sealer
        .call_many(operation, events, exchange, who)
        .unwrap_or_else(|e| panic!("{operation:?}-many trapped: {e}"))
}

/// Event `i`'s headers, read back from the batch's columns (an empty value is no header).
fn headers(batch: &BatchOutcome, i: usize) -> Vec<(String, String)> {
    let names = &batch.header_names;
    let values = &batch.header_values[i * names.len()..(i + 1) * names.len()];
    names
        .iter()
        .cloned()
        .zip(values.iter().cloned())
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Distinct events, so a batch that mixed them up or repeated one would show.
fn events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut event = event();
            event["id"] = json!(format!("evt-{i}"));
            event["data"]["card"]["number"] = json!(format!("4111 1111 1111 {i:04}"));
            event.to_string()
        })
        .collect()
}

#[test]
fn a_batch_seals_each_event_as_seal_does_and_each_opens_one_by_one_to_its_original() {
    let mut service = sealer();
    let originals = events(5);
    let publish = exchange("/events/orders", request_headers("acme", "shop", &[]));
    let batch = many(&mut service, BatchOperation::Seal, &originals, &publish, None).expect("sealed");
    assert!(batch.refused.is_empty(), "{:?}", batch.refused);
    assert_eq!(batch.events.len(), originals.len());
    assert_eq!(batch.header_names, ["webhook-id", "webhook-timestamp", "webhook-signature"]);
    assert_eq!(batch.header_values.len(), originals.len() * 3);

    let billing = principal(BILLING);
    for (i, (sealed, original)) in batch.events.iter().zip(&originals).enumerate() {
        let doc: Value = serde_json::from_str(sealed).expect("JSON");
        for pointer in SEALED {
            let envelope = doc.pointer(pointer).and_then(Value::as_str).expect("a string");
            assert_eq!(envelope.split('.').count(), 5, "{pointer} is a JWE compact envelope");
        }
        assert!(!sealed.contains("4111 1111") && !sealed.contains("ada@"), "no plaintext: {sealed}");
        // The policy signs what it seals: each event has its own signature and id.
        let delivery = exchange("/inbox/orders", request_headers("acme", BILLING, &headers(&batch, i)));
        let opened = service
            .call_text(Operation::Open, sealed, &delivery, Some(&billing))
            .expect("no trap")
            .expect("opened");
        assert_eq!(&opened.event, original);
    }
    let ids: std::collections::BTreeSet<_> = (0..originals.len())
        .flat_map(|i| headers(&batch, i))
        .filter(|(n, _)| n == "webhook-id")
        .collect();
    assert_eq!(ids.len(), originals.len(), "one fresh webhook-id per event");
}

#[test]
fn a_batch_opens_what_single_calls_sealed() {
    let mut service = sealer();
    let originals = events(4);
    let publish = exchange("/events/orders", request_headers("acme", "shop", &[]));
    let sealed: Vec<String> = originals
        .iter()
        .map(|e| {
            service
                .call_text(Operation::Seal, e, &publish, None)
                .expect("no trap")
                .expect("sealed")
                .event
        })
        .collect();
    // `/consume` opens without verifying: one exchange serves the whole batch.
    let consume = exchange("/consume/orders", request_headers("acme", BILLING, &[]));
    let batch = many(&mut service, BatchOperation::Open, &sealed, &consume, Some(&principal(BILLING))).expect("opened");
    assert!(batch.refused.is_empty(), "{:?}", batch.refused);
    assert_eq!(batch.events, originals);
}

#[test]
fn a_refused_event_refuses_only_itself_in_its_place() {
    let mut service = sealer();
    let mut batch_events = events(3);
    batch_events.insert(1, "{\"data\":".to_owned());
    let publish = exchange("/events/orders", request_headers("acme", "shop", &[]));
    let batch = many(&mut service, BatchOperation::Seal, &batch_events, &publish, None).expect("the batch is answered");
    assert_eq!(batch.refused.len(), 1);
    let refusal = &batch.refused[0];
    assert_eq!(
        (refusal.index, refusal.problem.kind, refusal.problem.status),
        (1, ProblemKind::MalformedJson, 400)
    );
    // The single operation refuses that event the same way.
    let single = service
        .call_text(Operation::Seal, &batch_events[1], &publish, None)
        .expect("no trap")
        .expect_err("refused");
    assert_eq!(single, refusal.problem);
    assert!(batch.events[1].is_empty() && headers(&batch, 1).is_empty());
    for i in [0, 2, 3] {
        assert!(batch.events[i].contains("\"eyJ"), "event {i} sealed");
    }
}

#[test]
fn a_batch_over_the_bound_is_refused_whole_and_the_operation_must_fit_the_rule() {
    let mut service = sealer();
    let publish = exchange("/events/orders", request_headers("acme", "shop", &[]));
    let too_many = vec![event().to_string(); 1025];
    let refused = many(&mut service, BatchOperation::Seal, &too_many, &publish, None).expect_err("refused whole");
    assert_eq!((refused.kind, refused.status), (ProblemKind::PayloadTooLarge, 413));
    assert!(refused.detail.contains("1024"), "{}", refused.detail);
    assert!(many(&mut service, BatchOperation::Seal, &too_many[..1024], &publish, None).is_ok());

    // A rule without `open` refuses each event of an open batch, as `open` would.
    let batch = many(&mut service, BatchOperation::Open, &events(2), &publish, None).expect("answered");
    assert_eq!(
        batch.refused.iter().map(|r| (r.index, r.problem.kind)).collect::<Vec<_>>(),
        [(0, ProblemKind::NoRule), (1, ProblemKind::NoRule)]
    );
}

#[test]
fn a_signed_batch_gets_fresh_ids_even_when_the_exchange_carries_one() {
    let mut service = sealer();
    let relay = exchange(
        "/relay",
        request_headers("acme", "shop", &[("webhook-id".into(), "msg-shared".into())]),
    );
    let batch = many(&mut service, BatchOperation::Sign, &events(3), &relay, None).expect("signed");
    assert!(batch.refused.is_empty(), "{:?}", batch.refused);
    let ids: Vec<String> = (0..3)
        .flat_map(|i| headers(&batch, i))
        .filter(|(n, _)| n == "webhook-id")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.iter().any(|id| id == "msg-shared"), "{ids:?}");
    assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{ids:?}");
}
