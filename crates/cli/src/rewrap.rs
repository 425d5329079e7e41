//! `eventseal rewrap`: moves the data keys of an event's KMS envelopes to the latest version
//! of their Transit key (FORMAT.md §10.4, docs/OPERATIONS.md "Retiring an old version").
//!
//! For every string in the event that is an `eventseal.vault-transit` envelope, the wrapped
//! data key goes to Transit's `rewrap` and the answer replaces the encrypted-key segment;
//! nothing else in the event changes, byte for byte. The data keys and the fields'
//! plaintext are never seen here: `rewrap` returns a ciphertext only.

use crate::Failure;
use eventseal_core::{SecretBytes, TransitRewrap, with_wrapped_key, wrapped_key_of};
use serde_json::Value;
use std::time::Duration;
use zeroize::Zeroizing;

/// How long one call to the KMS may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The event with every KMS envelope rewrapped, and how many were.
///
/// `kms` is the KMS address (`http://host:port`); `token` authenticates the calls.
///
/// # Errors
/// A [`Failure`] when the event is not JSON, the KMS cannot be reached, or it refuses a
/// rewrap (the event is then left as it was).
pub fn run(event: &[u8], kms: &str, token: &Zeroizing<String>) -> Result<(Vec<u8>, usize), Failure> {
    let text = std::str::from_utf8(event).map_err(|_| Failure::new("the event is not UTF-8"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| Failure::new(format!("the event is not JSON: {e}")))?;
    let authority = kms
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| {
            Failure::new(format!(
                "--kms {kms:?}: expected http://host:port (for TLS, point it at a local `bao proxy` or Vault Agent listener)"
            ))
        })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        // Transit's own answer (its status and `errors`) says more than a generic error.
        .http_status_as_error(false)
        .build()
        .into();
    let token = SecretBytes::new(token.as_bytes().to_vec());
    let mut envelopes = Vec::new();
    collect(&value, &mut envelopes);
    let mut out = text.to_owned();
    let mut count = 0;
    for envelope in envelopes {
        let Some((kid, wrapped)) = wrapped_key_of(&envelope) else {
            continue;
        };
        let transit = TransitRewrap::for_kid(&kid).ok_or_else(|| Failure::new(format!("kid {kid:?} is not transit:<mount>/<key>")))?;
        let call = transit.call(authority, &wrapped, &token);
        let (status, reply) = post(&agent, &call).map_err(|e| Failure::new(format!("cannot reach the KMS at {authority}: {e}")))?;
        let rewrapped =
            TransitRewrap::outcome(status, &reply).map_err(|e| Failure::new(format!("{e} on {} ({wrapped})", transit.name())))?;
        let new = with_wrapped_key(&envelope, &rewrapped).ok_or_else(|| Failure::new("an envelope changed under us"))?;
        // Envelopes are base64url and dots: their JSON string is the text itself.
        let (old, new) = (format!("\"{envelope}\""), format!("\"{new}\""));
        if !out.contains(&old) {
            return Err(Failure::new(
                "an envelope is written with JSON escapes; rewrite the event without them first",
            ));
        }
        count += out.matches(&old).count();
        out = out.replace(&old, &new);
    }
    Ok((out.into_bytes(), count))
}

/// Every string in `value` that is a KMS envelope, each once.
fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if wrapped_key_of(s).is_some() && !out.contains(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(members) => members.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// Sends one call to the KMS: the status and the body.
fn post(agent: &ureq::Agent, call: &eventseal_core::TransitCall) -> Result<(u16, Vec<u8>), ureq::Error> {
    let mut request = agent.post(format!("http://{}{}", call.authority, call.path));
    for (name, value) in call.headers().into_iter().filter(|(name, _)| !name.starts_with(':')) {
        request = request.header(name, value);
    }
    let mut response = request.send(&call.body[..])?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_vec()?))
}
