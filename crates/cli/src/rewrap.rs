//! `eventseal rewrap`: moves the data keys of an event's KMS envelopes to the latest version
//! of their Transit key (FORMAT.md §10.4, docs/OPERATIONS.md "Retiring an old version").
//!
//! For every string in the event that is an `eventseal.vault-transit` envelope, the wrapped
//! data key goes to Transit's `rewrap` and the answer replaces the encrypted-key segment;
//! nothing else in the event changes, byte for byte. The data keys and the fields'
//! plaintext are never seen here: `rewrap` returns a ciphertext only.

use crate::Failure;
use eventseal_core::{VAULT_TRANSIT_KID_PREFIX, WrappedKey, with_wrapped_key, wrapped_key_of};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
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
    let mut envelopes = Vec::new();
    collect(&value, &mut envelopes);
    let mut out = text.to_owned();
    let mut count = 0;
    for envelope in envelopes {
        let Some((kid, wrapped)) = wrapped_key_of(&envelope) else {
            continue;
        };
        let (mount, key) = kid
            .strip_prefix(VAULT_TRANSIT_KID_PREFIX)
            .and_then(|source| source.rsplit_once('/'))
            .ok_or_else(|| Failure::new(format!("kid {kid:?} is not transit:<mount>/<key>")))?;
        let rewrapped = rewrap(authority, mount, key, &wrapped, token)?;
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

/// `POST /v1/<mount>/rewrap/<key>`: the same data key, wrapped under the latest version.
fn rewrap(authority: &str, mount: &str, key: &str, wrapped: &WrappedKey, token: &Zeroizing<String>) -> Result<WrappedKey, Failure> {
    let path = format!("/v1/{mount}/rewrap/{key}");
    let body = serde_json::json!({ "ciphertext": wrapped.as_str() }).to_string();
    let (status, reply) =
        post(authority, &path, token, body.as_bytes()).map_err(|e| Failure::new(format!("cannot reach the KMS at {authority}: {e}")))?;
    if status != 200 {
        let errors = serde_json::from_slice::<Value>(&reply)
            .ok()
            .and_then(|v| v.get("errors").map(Value::to_string))
            .unwrap_or_default();
        return Err(Failure::new(format!(
            "the KMS answered {status} to rewrap on {mount}/{key} ({wrapped}) {errors}"
        )));
    }
    serde_json::from_slice::<Value>(&reply)
        .ok()
        .and_then(|v| v["data"]["ciphertext"].as_str().map(str::to_owned))
        .and_then(|c| WrappedKey::parse(&c).ok())
        .ok_or_else(|| Failure::new(format!("the KMS's rewrap answer on {mount}/{key} has no Transit ciphertext")))
}

/// One HTTP/1.1 request (`Connection: close`): the status and the body.
fn post(authority: &str, path: &str, token: &Zeroizing<String>, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let head = Zeroizing::new(format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-type: application/json\r\n\
         x-vault-token: {}\r\ncontent-length: {}\r\n\r\n",
        token.as_str(),
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/1.1 response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let payload = &raw[split + 4..];
    let chunked = head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    Ok((
        status,
        if chunked {
            dechunk(payload).ok_or_else(bad)?
        } else {
            payload.to_vec()
        },
    ))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
