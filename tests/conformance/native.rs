//! The conformance cases of `tests/cases/` through native eventseal-core, with no wasm and
//! no proxy: this runner plays the host the way the filter does in hold mode (it sees each
//! whole message before anything of it goes on), so every case has the same outcome in
//! core, the harness, the component and Envoy.
//!
//! For each case: the policy and keyring load as the filter loads them; the request is
//! routed with `Engine::route`, its producer admitted with `Engine::admit`, and each body a
//! rule decides on goes to `Engine::decide` with one replay cache for the case's sends; a
//! changed body gets its new `content-length`, signature headers are set, and a refusal is
//! the problem+json answer. What came out is judged by the same checks as every other
//! host (`eventseal_testkit::check`). Counters are the filter's and are not checked here.

use eventseal_core::{
    BodyJob, Decision, Direction, Engine, MemoryReplayCache, PROBLEM_CONTENT_TYPE, Policy, Principal, Problem, RequestHead,
};
use eventseal_harness::{Headers, HttpOutcome, LocalReply, Message};
use eventseal_testkit::case::{Case, Mode, Prepared, prepare_request, prepare_response};
use eventseal_testkit::check::{self, Observed};
use serde_json::Value;

/// One test per case file, each run through native core.
mod cases {
    use super::case as run;
    include!(concat!(env!("OUT_DIR"), "/cases.rs"));
}

/// Runs the case `name` through native core and judges the outcome.
pub fn case(name: &str) {
    let case = Case::load(name).in_mode(Mode::Hold);
    let foreign = case.foreign_keys.clone().unwrap_or(Value::Null);
    let sets = [&case.keys, &foreign];
    let engine = match load(&case) {
        Ok(engine) => engine,
        Err(refused) => {
            check::config_refused(name, &case, &[refused]);
            return;
        }
    };
    let request = prepare_request(&case, &sets);
    let response = prepare_response(case.upstream_response.as_ref(), &sets);
    let mut replay = MemoryReplayCache::default();
    let repeat = case.repeat.unwrap_or(1).max(1);
    for i in 1..=repeat {
        let observed = exchange(&engine, &case, &request, &response, &mut replay);
        if i < repeat {
            assert!(
                matches!(observed.outcome, HttpOutcome::Forwarded { .. }),
                "{name}: send {i} of {repeat} should be forwarded, got {:?}",
                observed.outcome
            );
        } else {
            check::outcome(name, &case, &sets, &request, &response, &observed);
        }
    }
}

/// The engine of the case's policy and keyring, or the line the filter logs when it
/// refuses them.
fn load(case: &Case) -> Result<Engine, String> {
    let refused = |e: &dyn std::fmt::Display| format!("eventseal: configuration refused: {e}");
    let policy = Policy::from_value(&case.config).map_err(|e| refused(&e))?;
    let keys = case.keys.to_string();
    let keyring = policy
        .load_keyring(|name| (name == "EVENTSEAL_KEYS").then(|| keys.clone()))
        .map_err(|e| refused(&e))?;
    Ok(Engine::new(policy, keyring))
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The caller, as the filter finds it: the mTLS peer, the verified JWT, or a header.
fn principal(case: &Case, headers: &[(String, String)]) -> Option<Principal> {
    case.caller(headers).map(|caller| Principal {
        id: caller.id,
        claims: caller.claims.map_or(Value::Null, Value::Object),
    })
}

fn message(headers: &[(String, String)], body: Vec<u8>) -> Message {
    Message {
        headers: Some(headers.iter().map(|(n, v)| (n.clone(), v.clone().into_bytes())).collect()),
        body,
        trailers: None,
        end_of_stream: true,
    }
}

/// The problem+json answer to the client.
fn reply(problem: &Problem, request_id: Option<&str>) -> LocalReply {
    let mut headers: Headers = [
        (":status", problem.status.to_string()),
        ("content-type", PROBLEM_CONTENT_TYPE.to_owned()),
    ]
    .into();
    if let Some(seconds) = problem.retry_after {
        headers.add("retry-after", seconds.to_string());
    }
    LocalReply {
        status: problem.status,
        headers,
        body: problem.to_json(request_id).into_bytes(),
        details: String::new(),
        grpc_status: -1,
    }
}

/// One send of the case: the request, then the upstream's response, each decided whole.
fn exchange(engine: &Engine, case: &Case, request: &Prepared, response: &Prepared, replay: &mut MemoryReplayCache) -> Observed {
    let pseudo = |name: &str| header(&request.headers, name).unwrap_or_default().to_owned();
    let (method, path, authority) = (pseudo(":method"), pseudo(":path"), pseudo(":authority"));
    let head = RequestHead {
        method: &method,
        path: &path,
        authority: &authority,
        headers: &request.headers,
        subject: None,
    };
    let request_id = header(&request.headers, "x-request-id");
    let refused = |problem: &Problem, upstream: Message| {
        let local = reply(problem, request_id);
        Observed {
            outcome: HttpOutcome::LocalReply(local.clone()),
            upstream,
            client: Message::default(),
            local_reply: Some(local),
            paused: false,
        }
    };
    let (mut upstream_headers, mut upstream_body) = (request.headers.clone(), request.body.clone().unwrap_or_default());
    let (mut client_headers, mut client_body) = (response.headers.clone(), response.body.clone().unwrap_or_default());
    if let Some(id) = engine.route(&head) {
        let rule = engine.rule(id);
        let principal = principal(case, &request.headers);
        if let Err(problem) = engine.admit(rule, principal.as_ref()) {
            return refused(&problem, Message::default());
        }
        for direction in [Direction::Request, Direction::Response] {
            if !rule.decides(direction) {
                continue;
            }
            let (headers, body) = match direction {
                Direction::Request => (&mut upstream_headers, &mut upstream_body),
                Direction::Response => (&mut client_headers, &mut client_body),
            };
            let job = BodyJob {
                rule,
                direction,
                request: head,
                headers: headers.as_slice(),
                principal: principal.as_ref(),
                body: body.as_slice(),
                now: eventseal_testkit::case::now(),
            };
            match engine.decide(&job, replay) {
                Decision::Refuse { problem, .. } => {
                    let upstream = match direction {
                        Direction::Request => Message::default(),
                        Direction::Response => message(&upstream_headers, upstream_body),
                    };
                    return refused(&problem, upstream);
                }
                Decision::Forward {
                    body: new_body,
                    set_headers,
                    ..
                } => {
                    if let Some(new_body) = new_body {
                        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("content-length"));
                        headers.push(("content-length".to_owned(), new_body.len().to_string()));
                        *body = new_body;
                    }
                    for (name, value) in set_headers {
                        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                        headers.push((name, value));
                    }
                }
            }
        }
    }
    let (upstream, client) = (message(&upstream_headers, upstream_body), message(&client_headers, client_body));
    Observed {
        outcome: HttpOutcome::Forwarded {
            request: upstream.clone(),
            response: client.clone(),
        },
        upstream,
        client,
        local_reply: None,
        paused: false,
    }
}
