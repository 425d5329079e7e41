//! `eventseal rewrap`: moves the data keys of an event's KMS envelopes to the latest version
//! of their Transit key (FORMAT.md §10.4, docs/OPERATIONS.md "Retiring an old version").
//!
//! For every string in the event that is an `eventseal.vault-transit` envelope, the wrapped
//! data key goes to Transit's `rewrap` and the answer replaces the encrypted-key segment;
//! nothing else in the event changes, byte for byte. The data keys and the fields'
//! plaintext are never seen here: `rewrap` returns a ciphertext only.

use crate::{Failure, strings};
use eventseal_core::{SecretBytes, TransitRewrap, with_wrapped_key, wrapped_key_of};
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
    let (text, value) = strings::parse(event)?;
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
    let mut envelopes: Vec<String> = Vec::new();
    for (_, envelope) in strings::find(&value, &|s| wrapped_key_of(s).is_some()) {
        if !envelopes.contains(&envelope) {
            envelopes.push(envelope);
        }
    }
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
        count += strings::replace(&mut out, &envelope, &new)?;
    }
    Ok((out.into_bytes(), count))
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
