//! `eventseal demo`: the main job in one command, with no external service.

use crate::filter::{Filter, Request};
use eventseal::Failure;
use serde_json::Value;

/// The demo policy, keyring and event (`examples/demo/`). The key is public: demo only.
const POLICY: &str = include_str!("../../../examples/demo/policy.json");
const KEYRING: &str = include_str!("../../../examples/demo/keys.json");
/// The default event.
pub const EVENT: &str = include_str!("../../../examples/demo/order.json");

fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

/// Publishes `event` through the filter (sealed on the way in), then reads it back as two
/// consumers (opened on the way out, field by field as each may).
///
/// # Errors
/// When the filter refuses to start or refuses the event.
pub fn run(event: &str) -> Result<(), Failure> {
    let filter = Filter::start(POLICY, KEYRING)?;
    let publish = Request {
        method: "POST",
        path: "/events/orders",
        headers: Vec::new(),
        body: Some(event.as_bytes()),
        response_body: None,
        properties: Vec::new(),
    };
    let outcome = filter.exchange(&publish)?;
    if let Some(reply) = outcome.local_reply() {
        return Err(Failure::new(format!(
            "the filter refused the event with {}: {}",
            reply.status,
            reply.body_text()
        )));
    }
    let sealed = outcome.forwarded_request().map(|m| m.body.clone()).unwrap_or_default();
    println!(
        "== POST /events/orders: what the upstream (broker) receives, sealed by the filter\n{}\n",
        pretty(&sealed)
    );
    for reader in ["billing", "support"] {
        let read = Request {
            method: "GET",
            path: "/events/orders/ord-2041",
            headers: vec![("x-demo-principal".to_owned(), reader.to_owned())],
            body: None,
            response_body: Some(&sealed),
            properties: Vec::new(),
        };
        let outcome = filter.exchange(&read)?;
        if let Some(reply) = outcome.local_reply() {
            return Err(Failure::new(format!(
                "the filter refused {reader} with {}: {}",
                reply.status,
                reply.body_text()
            )));
        }
        let opened = outcome.forwarded_response().map(|m| m.body.clone()).unwrap_or_default();
        println!(
            "== GET /events/orders/ord-2041 as {reader:?}: what the consumer receives, opened by the filter\n{}\n",
            pretty(&opened)
        );
    }
    Ok(())
}
