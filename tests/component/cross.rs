//! The component and the filter are one product: what either seals and signs, the other
//! verifies and opens, and both decide the same input the same way. The filter runs as it
//! ships (`eventseal_proxy_wasm.wasm`) in the harness, the component as it ships.

use crate::{component, filter, slug};
use eventseal_harness::component::{Exchange, Outcome, Principal, Problem, Sealer};
use eventseal_harness::{Headers, HttpExchange, HttpOutcome, Plugin, PluginConfig};
use serde_json::{Value, json};

pub const BILLING: &str = "spiffe://example.org/ns/billing/sa/consumer";
pub const SEALED: [&str; 2] = ["/data/card/number", "/data/customer/email"];

pub fn keys() -> Value {
    json!({"keys": [
        {"kty": "oct", "kid": "orders-1", "alg": "A256GCM", "k": "YZ2-X6kWTy-yh0zt5zxbfZE7hPA78Wb3nQPmBMhR6NE", "status": "primary"},
        {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "status": "primary"}
    ]})
}

/// The policy of the gateway and of the services. The filter cannot sign (proxy-wasm
/// forwards headers before the body), so only the services' copy signs: publishers'
/// events are sealed (and signed by services); deliveries on `/inbox` are verified and
/// opened for billing, on `/consume` only opened; `/relay` (services) only signs.
pub fn policy(service: bool) -> Value {
    let context = json!({"type": {"body": "/type"}, "tenant": {"header": "x-tenant"}});
    let readers = json!(["spiffe://example.org/ns/billing/*"]);
    let mut rules = vec![
        json!({"name": "publish", "match": {"methods": ["POST"], "path": "/events/orders"}, "context": context,
               "seal": {"fields": SEALED}, "sign": service}),
        json!({"name": "deliver", "match": {"methods": ["POST"], "path": "/inbox/orders"}, "context": context,
               "verify": true, "open": {"fields": SEALED, "readers": readers}}),
        json!({"name": "consume", "match": {"methods": ["POST"], "path": "/consume/orders"}, "context": context,
               "open": {"fields": SEALED, "readers": readers}}),
    ];
    if service {
        rules.push(json!({"name": "relay", "match": {"methods": ["POST"], "path": "/relay"}, "sign": true}));
    }
    json!({"principal": {"source": "header", "header": "x-client"}, "rules": rules})
}

pub fn event() -> Value {
    json!({
        "specversion": "1.0", "id": "evt-1", "type": "com.example.order.created", "source": "/shop",
        "data": {"order_id": "o-1", "amount": 129.5,
                 "card": {"number": "4111 1111 1111 1111", "expiry": "12/29"},
                 "customer": {"email": "ada@example.org", "name": "Ada"}}
    })
}

fn gateway() -> Plugin {
    filter()
        .plugin(
            PluginConfig::new()
                .configuration(policy(false).to_string())
                .env("EVENTSEAL_KEYS", keys().to_string()),
        )
        .expect("the filter starts with the shared policy")
}

fn service() -> Sealer {
    component()
        .create(&policy(true).to_string(), &keys().to_string())
        .expect("the component instantiates")
        .unwrap_or_else(|e| panic!("configuration refused: {}", e.message))
}

/// The request headers both hosts see: the filter as an HTTP request, the component as
/// its `exchange.headers` (pseudo-headers become method, path and authority).
pub fn request_headers(tenant: &str, client: &str, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-tenant".to_owned(), tenant.to_owned()),
        ("x-client".to_owned(), client.to_owned()),
    ];
    headers.extend(extra.iter().cloned());
    headers
}

pub fn exchange(path: &str, headers: Vec<(String, String)>) -> Exchange {
    Exchange {
        method: "POST".into(),
        path: path.into(),
        authority: "gateway.example".into(),
        headers,
        response: None,
    }
}

pub fn principal(id: &str) -> Principal {
    Principal {
        id: id.into(),
        claims: String::new(),
    }
}

fn through_gateway(plugin: &Plugin, path: &str, headers: &[(String, String)], body: &[u8]) -> HttpOutcome {
    let mut all: Headers = [
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway.example"),
        (":scheme", "https"),
    ]
    .into();
    for (name, value) in headers {
        all.add(name.clone(), value.clone());
    }
    all.add("content-length", body.len().to_string());
    plugin
        .run_http(HttpExchange::new(all).request_body(body.to_vec()))
        .expect("the harness runs the exchange")
}

fn signature_headers(outcome: &Outcome) -> Vec<(String, String)> {
    outcome.headers.iter().filter(|(n, _)| n.starts_with("webhook-")).cloned().collect()
}

fn is_envelope(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| s.split('.').count() == 5)
}

#[test]
fn the_filter_verifies_and_opens_what_the_component_sealed_and_signed() {
    let mut service = service();
    let headers = request_headers("acme", "shop", &[]);
    let sealed = service
        .seal(event().to_string().as_bytes(), &exchange("/events/orders", headers), None)
        .expect("no trap")
        .unwrap_or_else(|p| panic!("refused: {p:?}"));
    let body: Value = serde_json::from_slice(&sealed.event).expect("JSON");
    assert!(SEALED.iter().all(|p| is_envelope(body.pointer(p))), "{body}");
    assert!(sealed.signed);

    let headers = request_headers("acme", BILLING, &signature_headers(&sealed));
    let outcome = through_gateway(&gateway(), "/inbox/orders", &headers, &sealed.event);
    let upstream = outcome.forwarded_request().unwrap_or_else(|| panic!("refused: {outcome:?}"));
    let opened: Value = serde_json::from_slice(&upstream.body).expect("JSON");
    assert_eq!(opened, event());
}

#[test]
fn the_component_opens_what_the_filter_sealed() {
    let headers = request_headers("acme", "shop", &[]);
    let outcome = through_gateway(&gateway(), "/events/orders", &headers, event().to_string().as_bytes());
    let upstream = outcome.forwarded_request().unwrap_or_else(|| panic!("refused: {outcome:?}"));
    let body: Value = serde_json::from_slice(&upstream.body).expect("JSON");
    assert!(SEALED.iter().all(|p| is_envelope(body.pointer(p))), "{body}");

    let headers = request_headers("acme", BILLING, &[]);
    let opened = service()
        .open(&upstream.body, &exchange("/consume/orders", headers), Some(&principal(BILLING)))
        .expect("no trap")
        .unwrap_or_else(|p| panic!("refused: {p:?}"));
    assert_eq!(serde_json::from_slice::<Value>(&opened.event).expect("JSON"), event());
    assert!(opened.fields.iter().all(|f| f.kid.as_deref() == Some("orders-1")));
}

#[test]
fn the_filter_refuses_a_policy_that_signs_and_the_component_takes_it() {
    let refused = filter().plugin(
        PluginConfig::new()
            .configuration(policy(true).to_string())
            .env("EVENTSEAL_KEYS", keys().to_string()),
    );
    assert!(
        refused.is_err(),
        "the filter cannot sign: it must refuse such a policy at load time"
    );
    let _ = service();
}

/// What a host did with a delivery: the body it forwarded, or its refusal.
#[derive(Debug, PartialEq)]
enum Decided {
    Forwarded(Vec<u8>),
    Refused { status: u16, kind: String },
}

fn by_component(result: Result<Outcome, Problem>) -> Decided {
    match result {
        Ok(outcome) => Decided::Forwarded(outcome.event),
        Err(problem) => Decided::Refused {
            status: problem.status,
            kind: slug(problem.kind),
        },
    }
}

fn by_filter(outcome: &HttpOutcome) -> Decided {
    if let Some(reply) = outcome.local_reply() {
        let problem: Value = serde_json::from_slice(&reply.body).expect("a problem+json body");
        let kind = problem["type"].as_str().unwrap_or_default();
        return Decided::Refused {
            status: reply.status,
            kind: kind.trim_start_matches("urn:eventseal:problem:").to_owned(),
        };
    }
    Decided::Forwarded(outcome.forwarded_request().expect("forwarded or refused").body.clone())
}

/// One delivery to `/inbox/orders`, and what both hosts must do with it.
struct Delivery {
    what: &'static str,
    body: Vec<u8>,
    tenant: &'static str,
    client: &'static str,
    signed: bool,
    /// `forwarded`, or the problem slug of the refusal.
    expected: &'static str,
}

#[test]
fn both_hosts_decide_every_delivery_the_same_way() {
    let mut service = service();
    let sealed = service
        .seal(
            event().to_string().as_bytes(),
            &exchange("/events/orders", request_headers("acme", "shop", &[])),
            None,
        )
        .expect("no trap")
        .expect("sealed");
    let mut plaintext_card = serde_json::from_slice::<Value>(&sealed.event).expect("JSON");
    plaintext_card["data"]["card"]["number"] = json!("4111 1111 1111 1111");
    let mut moved = serde_json::from_slice::<Value>(&sealed.event).expect("JSON");
    moved["data"]["card"]["number"] = moved["data"]["customer"]["email"].clone();

    // Each delivery is signed on its own (`/relay`), so every one has a fresh webhook-id
    // and the hosts' replay caches stay out of it.
    let delivery = |what, body: &[u8], tenant, client, signed, expected| Delivery {
        what,
        body: body.to_vec(),
        tenant,
        client,
        signed,
        expected,
    };
    let other = "spiffe://example.org/ns/shop/sa/x";
    let deliveries = [
        delivery("opens for billing", &sealed.event, "acme", BILLING, true, "forwarded"),
        delivery("left sealed for another reader", &sealed.event, "acme", other, true, "forwarded"),
        delivery(
            "wrong tenant context",
            &sealed.event,
            "globex",
            BILLING,
            true,
            "sealed-field-rejected",
        ),
        delivery(
            "moved envelope",
            moved.to_string().as_bytes(),
            "acme",
            BILLING,
            true,
            "sealed-field-rejected",
        ),
        delivery(
            "plaintext in place of an envelope",
            plaintext_card.to_string().as_bytes(),
            "acme",
            BILLING,
            true,
            "sealed-field-rejected",
        ),
        delivery("unsigned", &sealed.event, "acme", BILLING, false, "signature-missing"),
        delivery("not JSON", b"{\"data\":", "acme", BILLING, true, "malformed-json"),
    ];
    let gateway = gateway();
    let mut differences = Vec::new();
    for Delivery {
        what,
        body,
        tenant,
        client,
        signed,
        expected,
    } in deliveries
    {
        let signature = if signed {
            let relay = service
                .sign(&body, &exchange("/relay", request_headers(tenant, client, &[])), None)
                .expect("no trap")
                .expect("signed");
            signature_headers(&relay)
        } else {
            Vec::new()
        };
        let headers = request_headers(tenant, client, &signature);
        let by_gateway = by_filter(&through_gateway(&gateway, "/inbox/orders", &headers, &body));
        let by_service = by_component(
            service
                .open(&body, &exchange("/inbox/orders", headers), Some(&principal(client)))
                .expect("no trap"),
        );
        let as_expected = match &by_gateway {
            Decided::Forwarded(_) => expected == "forwarded",
            Decided::Refused { kind, .. } => kind == expected,
        };
        if by_gateway != by_service || !as_expected {
            differences.push(format!(
                "{what}: expected {expected}; filter {by_gateway:?}, component {by_service:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// RFC 8037 Appendix A.1: an Ed25519 private key `d` and its public key `x`.
const ED_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn ed_key(x: &str, d: Option<&str>) -> Value {
    let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "hooks-ed", "alg": "EdDSA", "use": "sig", "x": x, "status": "primary"});
    if let Some(d) = d {
        jwk["d"] = json!(d);
    }
    jwk
}

/// A gateway that only verifies, with `keys`, its clock `skew` seconds ahead of now.
fn verifying_gateway(keys: &Value, skew: u64) -> Plugin {
    let policy = json!({"rules": [{"name": "hooks", "match": {"methods": ["POST"], "path": "/hooks"}, "verify": true}]});
    filter()
        .plugin(
            PluginConfig::new()
                .configuration(policy.to_string())
                .env("EVENTSEAL_KEYS", keys.to_string())
                .start_time(std::time::SystemTime::now() + std::time::Duration::from_secs(skew)),
        )
        .expect("the verifying gateway starts")
}

/// The problem type slug and detail of a refusal.
fn refusal(outcome: &HttpOutcome) -> (u16, String, String) {
    let reply = outcome.local_reply().unwrap_or_else(|| panic!("not refused: {outcome:?}"));
    let problem: Value = serde_json::from_slice(&reply.body).expect("problem+json");
    let kind = problem["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:eventseal:problem:");
    (
        reply.status,
        kind.to_owned(),
        problem["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_gateway_with_only_the_public_key_verifies_v1a_the_component_signed_and_refuses_the_rest() {
    // The service's keyring: the shared sealing key, and the Ed25519 private key.
    let service_keys = json!({"keys": [keys()["keys"][0].clone(), ed_key(ED_X, Some(ED_D))]});
    let mut signer = component()
        .create(&policy(true).to_string(), &service_keys.to_string())
        .expect("the component instantiates")
        .unwrap_or_else(|e| panic!("configuration refused: {}", e.message));
    let body = br#"{"type":"invoice.paid","id":"evt-9"}"#;
    let signed = signer
        .sign(body, &exchange("/relay", request_headers("acme", "shop", &[])), None)
        .expect("no trap")
        .unwrap_or_else(|p| panic!("refused: {p:?}"));
    let headers = signature_headers(&signed);
    let signature = headers.iter().find(|(n, _)| n == "webhook-signature").map(|(_, v)| v.as_str());
    assert!(signature.is_some_and(|s| s.starts_with("v1a,") && !s.contains(' ')), "{headers:?}");
    let public_only = json!({"keys": [ed_key(ED_X, None)]});
    let send = |gateway: &Plugin, body: &[u8]| through_gateway(gateway, "/hooks", &headers, body);

    let outcome = send(&verifying_gateway(&public_only, 0), body);
    let upstream = outcome.forwarded_request().unwrap_or_else(|| panic!("refused: {outcome:?}"));
    assert_eq!(upstream.body, body, "forwarded unchanged");

    let tampered = send(&verifying_gateway(&public_only, 0), br#"{"type":"invoice.paid","id":"evt-8"}"#);
    assert_eq!(refusal(&tampered), (401, "signature-invalid".into(), "no valid signature".into()));
    let late = send(&verifying_gateway(&public_only, 600), body);
    assert_eq!(refusal(&late).0, 401);
    assert_eq!(refusal(&late).1, "signature-expired");
    let other_key = json!({"keys": [ed_key("DAOPqiwZ5nCZ5XMCdnZ1sW5z6IrV9H8mSNF_LpXsW10", None)]});
    let wrong = send(&verifying_gateway(&other_key, 0), body);
    assert_eq!(refusal(&wrong), (401, "signature-invalid".into(), "no valid signature".into()));
    let hmac_only = send(&verifying_gateway(&keys(), 0), body);
    let (status, kind, detail) = refusal(&hmac_only);
    assert_eq!((status, kind.as_str()), (401, "signature-invalid"));
    assert!(detail.starts_with("no signature this keyring can check"), "{detail}");
}
