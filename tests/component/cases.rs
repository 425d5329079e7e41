//! The conformance cases of `tests/cases/` through the component, where they apply.
//!
//! A case describes an exchange through the filter; here the same exchange is described
//! to the component the way a service would: the request (or the upstream's response) is
//! the event, the case's identity is the principal the service authenticated. Inputs are
//! made, and outputs judged, by the checks' own JWE and HMAC code
//! (`eventseal_testkit::jose`), and the case format is its parser
//! (`eventseal_testkit::case`), so every host is held to one reading of the cases.
//!
//! How a case maps to component calls:
//! - each body is decided by the first of `seal`, `open`, `verify`, `sign` that the routed
//!   rule carries; when all four answer `no-rule` (no rule matches, or the rule does not
//!   cover this body), the filter would pass the body through untouched, and so does the
//!   runner;
//! - the request body first; if it goes through, the response body, with the upstream's
//!   response headers as `exchange.response`;
//! - `local_reply` and `reset` compare the problem's status and type; `request_id`,
//!   `streamed`, `content-length` framing and `metrics` are the filter's and are not
//!   checked here;
//! - a policy the filter refuses only because it signs (`config_refused` at `.../sign`)
//!   is one the component takes: signing is the component's job, since the filter cannot
//!   add headers after reading a body.

use crate::case::{Case, MessageExpect, body_bytes, header_pairs, now};
use crate::{component, jose};
use eventseal_harness::Error;
use eventseal_harness::component::{Exchange, Outcome, Principal, Problem, ProblemKind, Sealer};
use serde_json::Value;

/// What the component did with one body.
#[derive(Debug)]
enum Decided {
    /// No operation applies: the filter forwards such a body untouched.
    PassedThrough,
    /// The operation's outcome.
    Forwarded(Outcome),
    /// The refusal.
    Refused(Problem),
}

/// A body that went on, with the headers it went with.
type Delivered = (Vec<u8>, Vec<(String, String)>);

/// The bytes and headers that went on, if the body was not refused.
fn forwarded(decided: &Decided, body: &[u8], headers: &[(String, String)]) -> Option<Delivered> {
    match decided {
        Decided::PassedThrough => Some((body.to_vec(), headers.to_vec())),
        Decided::Forwarded(outcome) => {
            let mut merged: Vec<(String, String)> = headers
                .iter()
                .filter(|(name, _)| !outcome.headers.iter().any(|(set, _)| set.eq_ignore_ascii_case(name)))
                .cloned()
                .collect();
            merged.extend(outcome.headers.iter().cloned());
            Some((outcome.event.clone(), merged))
        }
        Decided::Refused(_) => None,
    }
}

type Operation = fn(&mut Sealer, &[u8], &Exchange, Option<&Principal>) -> Result<Result<Outcome, Problem>, Error>;

fn decide(name: &str, sealer: &mut Sealer, body: &[u8], exchange: &Exchange, principal: Option<&Principal>) -> Decided {
    let operations: [Operation; 4] = [Sealer::seal, Sealer::open, Sealer::verify, Sealer::sign];
    for operation in operations {
        match operation(sealer, body, exchange, principal).unwrap_or_else(|e| panic!("{name}: {e}")) {
            Err(problem) if problem.kind == ProblemKind::NoRule => {}
            Err(problem) => return Decided::Refused(problem),
            Ok(outcome) => return Decided::Forwarded(outcome),
        }
    }
    Decided::PassedThrough
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The request headers and body, signed as `sign_request` says.
fn prepare_request(case: &Case, sets: &[&Value]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = header_pairs(&case.request.headers);
    let mut body = case.request.body.as_ref().map_or_else(Vec::new, |b| body_bytes(b, sets));
    if let Some(sign) = &case.sign_request {
        let timestamp = now() + sign.timestamp_offset_seconds;
        let signature = match sign.tamper.as_deref() {
            Some("malformed") => "v1,this is not base64!".to_owned(),
            _ => jose::webhook_signature_by(sets, &sign.kid, &sign.id, timestamp, &body),
        };
        if sign.tamper.as_deref() == Some("body") {
            body.push(b'\n');
        }
        headers.push(("webhook-id".to_owned(), sign.id.clone()));
        headers.push(("webhook-timestamp".to_owned(), timestamp.to_string()));
        headers.push(("webhook-signature".to_owned(), signature));
    }
    (headers, body)
}

/// The principal the service would pass: what the policy's principal source finds.
fn principal(case: &Case, headers: &[(String, String)]) -> Option<Principal> {
    case.caller(headers).map(|caller| Principal {
        id: caller.id,
        claims: caller.claims.map(|claims| Value::Object(claims).to_string()).unwrap_or_default(),
    })
}

/// Plaintexts that must never appear in a problem.
fn plaintexts(case: &Case) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(sealed)) = map.get("$sealed")
                    && let Some(v) = sealed.get("value")
                {
                    out.push(v.as_str().map_or_else(|| v.to_string(), str::to_owned));
                }
                map.values().for_each(|v| collect(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(case.request.body.as_ref().unwrap_or(&Value::Null), &mut out);
    if let Some(response) = &case.upstream_response {
        collect(response.body.as_ref().unwrap_or(&Value::Null), &mut out);
    }
    if let Some(forwarded) = &case.expect.forwarded {
        for side in [&forwarded.upstream, &forwarded.client].into_iter().flatten() {
            for expected in side.sealed.values() {
                let v = &expected["value"];
                out.push(v.as_str().map_or_else(|| v.to_string(), str::to_owned));
            }
        }
    }
    for text in &out {
        assert!(
            text.len() >= eventseal_testkit::check::MIN_MARKER,
            "a sealed value of the case is {text:?}: use a distinct marker, so the leak checks can see it"
        );
    }
    out
}

fn set(doc: &mut Value, pointer: &str, value: Value) -> bool {
    match doc.pointer_mut(pointer) {
        Some(slot) => {
            *slot = value;
            true
        }
        None => false,
    }
}

/// Checks one forwarded message against its expectation; returns the problems found.
fn check_message(
    side: &str,
    expected: &MessageExpect,
    sent: &[u8],
    got: &(Vec<u8>, Vec<(String, String)>),
    sets: &[&Value],
) -> Vec<String> {
    let (body, headers) = got;
    let mut problems = Vec::new();
    if expected.unchanged_bytes && body.as_slice() != sent {
        problems.push(format!("{side}: body changed: {}", String::from_utf8_lossy(body)));
    }
    let mut doc: Option<Value> = serde_json::from_slice(body).ok();
    for (pointer, sealed) in &expected.sealed {
        let Some(envelope) = doc
            .as_ref()
            .and_then(|d| d.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            problems.push(format!("{side}: no envelope at {pointer}"));
            continue;
        };
        match jose::open(sets, &envelope) {
            Ok((protected, value)) => {
                if protected["ptr"] != Value::String(pointer.clone()) {
                    problems.push(format!("{side}: {pointer} is bound to {}", protected["ptr"]));
                }
                if protected["ctx"] != sealed["context"] {
                    problems.push(format!(
                        "{side}: {pointer} context {} instead of {}",
                        protected["ctx"], sealed["context"]
                    ));
                }
                if let Some(kid) = sealed.get("kid").filter(|k| !k.is_null())
                    && &protected["kid"] != kid
                {
                    problems.push(format!("{side}: {pointer} sealed by {} instead of {kid}", protected["kid"]));
                }
                if value != sealed["value"] {
                    problems.push(format!("{side}: {pointer} opens to {value} instead of {}", sealed["value"]));
                }
                if let Some(d) = doc.as_mut() {
                    set(d, pointer, value);
                }
            }
            Err(why) => problems.push(format!("{side}: {pointer} does not open: {why}")),
        }
    }
    if let Some(expected_body) = &expected.body
        && doc.as_ref() != Some(expected_body)
    {
        problems.push(format!("{side}: body {} instead of {expected_body}", String::from_utf8_lossy(body)));
    }
    // Framing is the proxy's: the component hands back bytes, not an HTTP message.
    let framing = |name: &str| name.eq_ignore_ascii_case("content-length");
    for (name, value) in expected.headers.iter().filter(|(name, _)| !framing(name)) {
        let want = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        if header(headers, name) != Some(want.as_str()) {
            problems.push(format!("{side}: header {name} is {:?}, not {want:?}", header(headers, name)));
        }
    }
    for name in expected.headers_absent.iter().filter(|name| !framing(name)) {
        if header(headers, name).is_some() {
            problems.push(format!("{side}: header {name} is present"));
        }
    }
    if let Some(signature) = &expected.signature {
        let id = header(headers, "webhook-id").unwrap_or_default();
        let timestamp: i64 = header(headers, "webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        let given: Vec<&str> = header(headers, "webhook-signature").unwrap_or_default().split(' ').collect();
        if (now() - timestamp).abs() > 300 {
            problems.push(format!("{side}: signature timestamp {timestamp} is not now"));
        }
        for kid in &signature.kids {
            let expected = jose::webhook_signature_by(sets, kid, id, timestamp, body);
            if !given.contains(&expected.as_str()) {
                problems.push(format!("{side}: no signature by {kid}"));
            }
        }
    }
    problems
}

fn check_refusal(problem: &Problem, status: u16, problem_type: Option<&str>) -> Vec<String> {
    let slug = crate::slug(problem.kind);
    let mut problems = Vec::new();
    if problem.status != status {
        problems.push(format!(
            "status {} instead of {status} ({slug}: {})",
            problem.status, problem.detail
        ));
    }
    if let Some(expected) = problem_type
        && format!("urn:eventseal:problem:{slug}") != expected
    {
        problems.push(format!("problem {slug} instead of {expected} ({})", problem.detail));
    }
    problems
}

/// Runs `tests/cases/<name>.json` through the component.
pub fn run(name: &str) {
    run_case(name, &Case::load(name));
}

/// The Standard Webhooks vectors (`v1`, `v1a`, from the independent generator) as cases,
/// through the component.
#[test]
fn every_webhook_vector_through_the_component() {
    for (name, case) in eventseal_testkit::webhooks::cases() {
        run_case(&name, &Case::from_value(&name, case));
    }
}

/// Runs one case through the component.
fn run_case(name: &str, case: &Case) {
    let sets: Vec<&Value> = [Some(&case.keys), case.foreign_keys.as_ref()].into_iter().flatten().collect();
    let created = component()
        .create(&case.config.to_string(), &case.keys.to_string())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Some(refused) = &case.expect.config_refused {
        match created {
            Ok(_) if refused.at.ends_with("/sign") => {}
            Ok(_) => panic!("{name}: the component took a policy the filter refuses at {}", refused.at),
            Err(e) => assert_eq!(e.at, refused.at, "{name}: {}", e.message),
        }
        return;
    }
    let mut sealer = created.unwrap_or_else(|e| panic!("{name}: configuration refused: {}", e.message));
    let (request_headers, request_body) = prepare_request(case, &sets);
    let who = principal(case, &request_headers);
    let mut exchange = Exchange {
        method: case.request.method.clone(),
        path: case.request.path.clone(),
        authority: case.request.authority.clone(),
        headers: request_headers.clone(),
        response: None,
    };
    let sends = case.repeat.unwrap_or(1).max(1);
    let mut request = Decided::PassedThrough;
    for send in 1..=sends {
        request = decide(name, &mut sealer, &request_body, &exchange, who.as_ref());
        if send < sends {
            assert!(
                !matches!(request, Decided::Refused(_)),
                "{name}: send {send} of {sends} was refused: {request:?}"
            );
        }
    }
    let secrets = plaintexts(case);
    let mut problems = Vec::new();
    let leaks = |problem: &Problem| {
        for secret in &secrets {
            assert!(!problem.detail.contains(secret.as_str()), "{name}: the problem reveals {secret:?}");
        }
    };

    let upstream = forwarded(&request, &request_body, &request_headers);
    let response = match (&request, &case.upstream_response) {
        (Decided::Refused(_), _) => None,
        (_, Some(answer)) => Some((
            header_pairs(&answer.headers),
            answer.body.as_ref().map_or_else(Vec::new, |b| body_bytes(b, &sets)),
        )),
        (_, None) => Some((Vec::new(), Vec::new())),
    };
    let client = response.as_ref().map(|(headers, body)| {
        exchange.response = Some(headers.clone());
        let decided = decide(name, &mut sealer, body, &exchange, who.as_ref());
        let forwarded = forwarded(&decided, body, headers);
        (decided, forwarded)
    });

    let expect = &case.expect;
    if let Some(reply) = &expect.local_reply {
        let refusal = match (&request, &client) {
            (Decided::Refused(problem), _) | (_, Some((Decided::Refused(problem), _))) => Some(problem),
            _ => None,
        };
        match refusal {
            Some(problem) => {
                leaks(problem);
                problems.extend(check_refusal(problem, reply.status, Some(&reply.problem_type)));
                if let Some(part) = &reply.detail_contains
                    && !problem.detail.contains(part.as_str())
                {
                    problems.push(format!("detail {:?} does not contain {part:?}", problem.detail));
                }
            }
            None => problems.push(format!("not refused: request {request:?}, response {client:?}")),
        }
    } else if expect.reset.is_some() {
        match (&request, &client) {
            (Decided::Refused(problem), _) => problems.push(format!("the request was refused ({:?})", problem.kind)),
            (_, Some((Decided::Refused(problem), _))) => {
                leaks(problem);
                problems.extend(check_refusal(problem, 502, None));
            }
            _ => problems.push(format!("the response was not refused: {client:?}")),
        }
    } else if let Some(expected) = &expect.forwarded {
        match (&upstream, &client) {
            (Some(upstream), Some((_, Some(to_client)))) => {
                if let Some(side) = &expected.upstream {
                    problems.extend(check_message("upstream", side, &request_body, upstream, &sets));
                }
                if let (Some(side), Some((_, sent))) = (&expected.client, &response) {
                    problems.extend(check_message("client", side, sent, to_client, &sets));
                }
            }
            _ => {
                for problem in [&request].into_iter().chain(client.as_ref().map(|(d, _)| d)) {
                    if let Decided::Refused(p) = problem {
                        leaks(p);
                    }
                }
                problems.push(format!("refused: request {request:?}, response {client:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{name}: {}\n{}", case.description, problems.join("\n"));
}
