//! Runs one case through a filter module in the harness, the way Envoy would drive it.

use crate::case::{Case, Mode, Prepared, chunks, prepare_request, prepare_response};
use crate::check::{self, Observed};
use eventseal_harness::{Error, Headers, HttpStream, Module, Plugin, PluginConfig, PropertyValue, StreamState};
use serde_json::Value;

/// Where `jwt_authn` stores verified payloads.
const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

fn ended(state: StreamState) -> bool {
    matches!(state, StreamState::LocalReply | StreamState::Reset)
}

/// Sends one side (headers, then body chunks) and reports whether the filter paused.
fn send(stream: &mut HttpStream, message: &Prepared, request: bool) -> Result<(StreamState, bool), Error> {
    let headers: Headers = message.headers.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    let mut paused = false;
    let eos = message.body.is_none();
    let mut state = if request {
        stream.send_request_headers(headers, eos)?
    } else {
        stream.send_response_headers(headers, eos)?
    };
    paused |= state == StreamState::Paused;
    if let Some(body) = &message.body {
        let parts = chunks(body, message.chunks);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            if ended(state) {
                break;
            }
            state = if request {
                stream.send_request_body(part, i == last)?
            } else {
                stream.send_response_body(part, i == last)?
            };
            paused |= state == StreamState::Paused;
        }
    }
    Ok((state, paused))
}

/// The claims as Envoy would hand over a `google.protobuf.Struct` (CEL-unwrapped).
fn property_value(value: &Value) -> PropertyValue {
    match value {
        Value::String(s) => PropertyValue::String(s.clone()),
        Value::Bool(b) => PropertyValue::Bool(*b),
        Value::Number(n) => PropertyValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(items) => PropertyValue::List(items.iter().map(property_value).collect()),
        Value::Object(map) => PropertyValue::Map(map.iter().map(|(k, v)| (k.clone(), property_value(v))).collect()),
        Value::Null => panic!("Envoy cannot serialize a null claim; leave it out of the case"),
    }
}

/// One exchange on a new stream of `plugin`.
///
/// # Errors
///
/// When the harness fails (a trap, a host error), not when the filter refuses.
pub fn exchange(plugin: &Plugin, case: &Case, request: &Prepared, response: &Prepared) -> Result<Observed, Error> {
    let mut stream = plugin.http_stream()?;
    if let Some(identity) = &case.identity {
        if let Some(spiffe) = &identity.spiffe {
            stream.set_property(["connection", "uri_san_peer_certificate"], spiffe.as_str())?;
        }
        if let Some(claims) = &identity.jwt {
            let payload = case
                .config
                .pointer("/principal/payload")
                .and_then(Value::as_str)
                .expect("a jwt identity needs principal.payload");
            stream.set_property(
                ["metadata", "filter_metadata", JWT_AUTHN, payload],
                property_value(&Value::Object(claims.clone())),
            )?;
        }
    }
    let (request_state, mut paused) = send(&mut stream, request, true)?;
    let upstream_complete = stream.upstream_request().end_of_stream;
    if !ended(request_state) && upstream_complete {
        let (_, response_paused) = send(&mut stream, response, false)?;
        paused |= response_paused;
    }
    let upstream = stream.upstream_request();
    let client = stream.client_response();
    let local_reply = stream.local_reply();
    let outcome = stream.finish()?;
    Ok(Observed {
        outcome,
        upstream,
        client,
        local_reply,
        paused,
    })
}

/// Runs the case `name` through `module` (the shipped filter) and panics with expected
/// and actual on any difference.
///
/// # Panics
///
/// That is how a case fails.
pub fn case(module: &Module, name: &str) {
    for mode in Mode::BOTH {
        case_in_mode(module, &format!("{name}{}", mode.suffix()), &Case::load(name).in_mode(mode));
    }
}

/// Runs a case built in memory (see [`Case::from_value`]) through the filter in both modes.
///
/// # Panics
///
/// That is how a case fails.
pub fn case_value(module: &Module, name: &str, case: &serde_json::Value) {
    for mode in Mode::BOTH {
        let built = Case::from_value(name, case.clone()).in_mode(mode);
        case_in_mode(module, &format!("{name}{}", mode.suffix()), &built);
    }
}

/// Runs `case` (in one mode) through the filter in the harness and checks it.
fn case_in_mode(module: &Module, name: &str, case: &Case) {
    let foreign = case.foreign_keys.clone().unwrap_or(Value::Null);
    let sets = [&case.keys, &foreign];
    let config = PluginConfig::new()
        .configuration(serde_json::to_vec(&case.config).expect("JSON values serialize"))
        .env("EVENTSEAL_KEYS", case.keys.to_string())
        .allow_on_headers_stop_iteration(case.holds_headers());
    let plugin = match module.plugin(config) {
        Err(Error::ConfigurationRefused { logs }) => {
            let messages: Vec<String> = logs.into_iter().map(|l| l.message).collect();
            check::config_refused(name, case, &messages);
            return;
        }
        Err(e) => panic!("{name}: the filter did not start: {e}"),
        Ok(plugin) => plugin,
    };
    let request = prepare_request(case, &sets);
    let response = prepare_response(case.upstream_response.as_ref(), &sets);
    let repeat = case.repeat.unwrap_or(1).max(1);
    for i in 1..=repeat {
        let observed = exchange(&plugin, case, &request, &response).unwrap_or_else(|e| panic!("{name}: send {i}: {e}"));
        if i < repeat {
            assert!(
                observed.outcome.forwarded_request().is_some(),
                "{name}: send {i} of {repeat} should be forwarded, got {:?}",
                observed.outcome
            );
        } else {
            check::outcome(name, case, &sets, &request, &response, &observed);
        }
    }
    let logs: Vec<String> = plugin.logs().into_iter().map(|l| l.message).collect();
    check::no_plaintext(name, case, &logs);
    check::metrics(name, case, |metric| plugin.metric(metric).map(|m| m.value()));
}
