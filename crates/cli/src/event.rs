//! `eventseal seal|open|verify`: one event file through the embedded filter, exactly as
//! Envoy would run it, and `eventseal sign`, which signs with core (the filter cannot).

use crate::filter::{Filter, Request};
use eventseal::Failure;
use eventseal_core::{Engine, KeyUse, Keyring, Policy, PrincipalSource, RequestHead};
use eventseal_harness::{HttpOutcome, PropertyPath, PropertyValue};
use serde_json::{Map, Value, json};

/// Where `jwt_authn` writes verified JWT payloads.
const JWT_AUTHN_METADATA: &str = "envoy.filters.http.jwt_authn";

/// What the event should undergo; the matched rule must do it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Seal fields.
    Seal,
    /// Open fields for the principal.
    Open,
    /// Verify the Standard Webhooks signature.
    Verify,
}

impl Operation {
    /// The operation the matched rule must carry.
    fn of_rule(self) -> eventseal_core::Operation {
        match self {
            Self::Seal => eventseal_core::Operation::Seal,
            Self::Open => eventseal_core::Operation::Open,
            Self::Verify => eventseal_core::Operation::Verify,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Seal => "seals",
            Self::Open => "opens",
            Self::Verify => "verifies",
        }
    }
}

/// Which body the event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// The request body a client sends.
    Request,
    /// The response body an upstream answers with.
    Response,
}

/// The exchange to simulate around the event.
#[derive(Debug)]
pub struct Exchange {
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// `name: value` headers.
    pub headers: Vec<String>,
    /// The caller's identity.
    pub principal: Option<String>,
    /// JWT claims (a JSON object) for a `jwt` principal source.
    pub claims: Option<String>,
    /// Which body; default: the request, unless the rule applies to responses only.
    pub direction: Option<Direction>,
}

fn parse_headers(raw: &[String]) -> Result<Vec<(String, String)>, Failure> {
    raw.iter()
        .map(|h| {
            let (name, value) = h
                .split_once(':')
                .filter(|(n, _)| !n.trim().is_empty())
                .ok_or_else(|| Failure::new(format!("header {h:?} is not 'name: value'")))?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

/// Envoy's CEL-unwrapped form of a `google.protobuf.Struct` (what `jwt_authn` stores).
fn property_value(value: &Value) -> PropertyValue {
    match value {
        Value::String(s) => PropertyValue::String(s.clone()),
        Value::Bool(b) => PropertyValue::Bool(*b),
        Value::Number(n) => PropertyValue::Double(n.as_f64().unwrap_or_default()),
        Value::Array(items) => PropertyValue::List(items.iter().map(property_value).collect()),
        Value::Object(map) => PropertyValue::Map(map.iter().map(|(k, v)| (k.clone(), property_value(v))).collect()),
        Value::Null => PropertyValue::String(String::new()),
    }
}

/// Runs `event` through the filter and returns the body as forwarded.
///
/// # Errors
/// A one-line [`Failure`]: an invalid policy, keyring or argument, a route the policy does
/// not cover, or the filter's refusal (its problem+json).
pub fn run(operation: Operation, policy_text: &str, keyring_text: &str, exchange: &Exchange, event: &[u8]) -> Result<Vec<u8>, Failure> {
    // The policy is checked here first so that its errors are one line with a location.
    let policy = Policy::from_json(policy_text).map_err(|e| Failure::new(format!("policy: {e}")))?;
    let keyring = policy
        .load_keyring(|_| Some(keyring_text.to_owned()))
        .map_err(|e| Failure::new(format!("keyring: {e}")))?;
    let engine = Engine::new(policy, keyring);
    let mut headers = parse_headers(&exchange.headers)?;
    let mut properties: Vec<(PropertyPath, PropertyValue)> = Vec::new();
    let claims = match &exchange.claims {
        Some(text) => Some(serde_json::from_str::<Map<String, Value>>(text).map_err(|_| Failure::new("--claims must be a JSON object"))?),
        None => None,
    };
    match (&engine.policy().principal, &exchange.principal, claims) {
        (_, None, None) => {}
        (PrincipalSource::PeerCertificate, Some(id), None) => {
            properties.push((["connection", "uri_san_peer_certificate"].into(), id.as_str().into()));
        }
        (PrincipalSource::TrustedHeader(name), Some(id), None) => headers.push((name.clone(), id.clone())),
        (PrincipalSource::Jwt { payload, claim }, id, claims) => {
            let mut claims = claims.unwrap_or_default();
            if let Some(id) = id {
                claims.insert(claim.clone(), Value::String(id.clone()));
            }
            let path = ["metadata", "filter_metadata", JWT_AUTHN_METADATA, payload.as_str()];
            properties.push((path.into(), property_value(&Value::Object(claims))));
        }
        (_, _, Some(_)) => return Err(Failure::new("--claims needs a policy whose principal source is \"jwt\"")),
        (_, Some(_), None) => return Err(Failure::new("--principal needs a policy with a \"principal\" source")),
    }
    let head_headers: Vec<(String, String)> = headers.clone();
    let head = RequestHead {
        method: &exchange.method,
        path: &exchange.path,
        authority: "eventseal.local",
        headers: &head_headers,
        subject: None,
    };
    let route = format!("{} {}", exchange.method, exchange.path);
    let rule = engine
        .route(&head)
        .map(|id| engine.rule(id))
        .ok_or_else(|| Failure::new(format!("no rule of the policy matches {route} (set --method, --path, -H)")))?;
    if !rule.carries(operation.of_rule()) {
        return Err(Failure::new(format!(
            "rule {:?} (matching {route}) never {} anything",
            rule.name,
            operation.verb()
        )));
    }
    let direction = exchange
        .direction
        .unwrap_or(if rule.applies_to(eventseal_core::Direction::Request) {
            Direction::Request
        } else {
            Direction::Response
        });
    let on = match direction {
        Direction::Request => eventseal_core::Direction::Request,
        Direction::Response => eventseal_core::Direction::Response,
    };
    if !rule.applies_to(on) {
        return Err(Failure::new(format!(
            "rule {:?} does not apply to {} bodies (see --direction)",
            rule.name,
            on.as_str()
        )));
    }

    let filter = Filter::start(policy_text, keyring_text)?;
    let request = Request {
        method: &exchange.method,
        path: &exchange.path,
        headers,
        body: (direction == Direction::Request).then_some(event),
        response_body: (direction == Direction::Response).then_some(event),
        properties,
    };
    match filter.exchange(&request)? {
        HttpOutcome::LocalReply(reply) => Err(Failure::problem(reply.body_text())),
        HttpOutcome::Forwarded { request, response } => Ok(match direction {
            Direction::Request => request.body,
            Direction::Response => response.body,
        }),
        HttpOutcome::Reset { .. } => {
            // A refused response body resets the stream in Envoy; the reason is in the log.
            let reason = filter
                .logs()
                .into_iter()
                .find(|l| l.starts_with("eventseal: refused"))
                .map_or_else(|| "no reason logged".to_owned(), |l| l.trim_start_matches("eventseal: ").to_owned());
            Err(Failure::new(format!(
                "the filter refused the response body, so Envoy would reset the stream: {reason}"
            )))
        }
        _ => Err(Failure::new("the filter held the event back and never released it")),
    }
}

/// Signs `event` with the keyring's primary signing key (and its active ones), as
/// Standard Webhooks headers: `v1` for an HS256 key, `v1a` for an Ed25519 key.
///
/// # Errors
/// An invalid keyring, no signing key, an invalid id, or a failing random generator.
pub fn sign(keyring_text: &str, id: Option<String>, timestamp: Option<i64>, event: &[u8]) -> Result<[(&'static str, String); 3], Failure> {
    let keyring = Keyring::from_jwks(keyring_text).map_err(|e| Failure::new(format!("keyring: {e}")))?;
    if !keyring.primary(KeyUse::Sign).is_some_and(eventseal_core::Key::can_sign) {
        return Err(Failure::new(
            "keyring: no primary signing key that can sign (HS256, or Ed25519 with its private key d)",
        ));
    }
    let id = match id {
        Some(id) => id,
        None => {
            let mut bytes = [0u8; 12];
            getrandom::fill(&mut bytes).map_err(|_| Failure::new("the system random number generator failed"))?;
            format!("msg_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
    };
    let timestamp = match timestamp {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| Failure::new("the system clock is before 1970"))?
            .as_secs()
            .try_into()
            .unwrap_or(i64::MAX),
    };
    let signature = eventseal_core::sign(&keyring, &id, timestamp, event).map_err(|e| Failure::new(format!("cannot sign: {e}")))?;
    Ok([
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ])
}

/// The three headers as one JSON object.
pub fn headers_json(headers: &[(&'static str, String); 3]) -> Value {
    let mut out = json!({});
    for (name, value) in headers {
        out[*name] = Value::String(value.clone());
    }
    out
}
