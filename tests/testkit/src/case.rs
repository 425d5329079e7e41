//! The case format (`tests/cases/README.md`). Unknown members are errors: a misspelt
//! expectation must fail loudly, not silently check nothing.

use crate::jose;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// One conformance case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows (read by people; the runner prints it on failure).
    pub description: String,
    /// The policy: the plugin configuration.
    pub config: Value,
    /// The JWK Set in `EVENTSEAL_KEYS`.
    pub keys: Value,
    /// Keys the filter does not have.
    #[serde(default)]
    pub foreign_keys: Option<Value>,
    /// Who the client is.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// What the client sends.
    pub request: Request,
    /// Standard Webhooks headers to compute at run time.
    #[serde(default)]
    pub sign_request: Option<SignRequest>,
    /// How many times the identical request is sent.
    #[serde(default)]
    pub repeat: Option<u32>,
    /// What the upstream answers.
    #[serde(default)]
    pub upstream_response: Option<Response>,
    /// The outcome.
    pub expect: Expect,
    /// The outcome in the Envoy filter's hold mode, where it differs from `expect`
    /// (framing, a problem instead of a reset, signing).
    #[serde(default)]
    pub expect_hold: Option<Expect>,
}

/// The client as the policy's principal source identifies it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal id.
    pub id: String,
    /// The JWT claims, for a JWT principal.
    pub claims: Option<Map<String, Value>>,
}

/// How the Envoy filter treats the headers of a body it decides on (`envoy.headers`,
/// docs/CONFIG.md). Every case runs in both modes in the harness and in Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `"forward"`: headers go on before the body is read (the default).
    Forward,
    /// `"hold"`: headers wait for the decision; Envoy sets `allow_on_headers_stop_iteration`.
    Hold,
}

impl Mode {
    /// Both modes, forward first.
    pub const BOTH: [Mode; 2] = [Mode::Forward, Mode::Hold];

    /// The suffix runners add to a case's name in this mode.
    pub fn suffix(self) -> &'static str {
        match self {
            Mode::Forward => "",
            Mode::Hold => "-hold",
        }
    }
}

/// The client's identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// mTLS peer URI SAN.
    #[serde(default)]
    pub spiffe: Option<String>,
    /// JWT claims that `jwt_authn` verified.
    #[serde(default)]
    pub jwt: Option<Map<String, Value>>,
}

/// The client's request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Headers, lower-case names to values.
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// The body: a JSON value, or a string sent raw.
    #[serde(default)]
    pub body: Option<Value>,
    /// In how many chunks the body arrives.
    #[serde(default)]
    pub body_chunks: Option<usize>,
}

/// The upstream's response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// `:status`.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// The body, as in [`Request::body`].
    #[serde(default)]
    pub body: Option<Value>,
    /// In how many chunks the body arrives.
    #[serde(default)]
    pub body_chunks: Option<usize>,
}

/// A Standard Webhooks signature the runner computes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The key: HS256 (`v1`), or Ed25519 with its private key (`v1a`).
    pub kid: String,
    /// `webhook-id`.
    pub id: String,
    /// Added to now for `webhook-timestamp`.
    #[serde(default)]
    pub timestamp_offset_seconds: i64,
    /// `body` or `malformed`.
    #[serde(default)]
    pub tamper: Option<String>,
}

/// The expected outcome: exactly one of the first four, and optionally counters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// A problem+json local reply.
    #[serde(default)]
    pub local_reply: Option<LocalReplyExpect>,
    /// The exchange went through.
    #[serde(default)]
    pub forwarded: Option<ForwardedExpect>,
    /// The stream was reset (a refused response body).
    #[serde(default)]
    pub reset: Option<Map<String, Value>>,
    /// The filter refused its configuration.
    #[serde(default)]
    pub config_refused: Option<ConfigRefusedExpect>,
    /// Counter values after the case.
    #[serde(default)]
    pub metrics: Option<Map<String, Value>>,
}

/// A refusal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalReplyExpect {
    /// HTTP status.
    pub status: u16,
    /// Problem `type`.
    pub problem_type: String,
    /// The problem's `request_id`.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Text the problem's `detail` must contain (where two refusals share a type).
    #[serde(default)]
    pub detail_contains: Option<String>,
    /// Whether the upstream saw any of the body.
    #[serde(default)]
    pub upstream_reached: bool,
}

/// A forwarded exchange.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardedExpect {
    /// What the upstream received.
    #[serde(default)]
    pub upstream: Option<MessageExpect>,
    /// What the client received.
    #[serde(default)]
    pub client: Option<MessageExpect>,
    /// The filter never held anything back.
    #[serde(default)]
    pub streamed: bool,
}

/// One side of a forwarded exchange.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageExpect {
    /// Response status (client only).
    #[serde(default)]
    pub status: Option<u16>,
    /// Byte for byte what was sent.
    #[serde(default)]
    pub unchanged_bytes: bool,
    /// The JSON body after opening the `sealed` pointers.
    #[serde(default)]
    pub body: Option<Value>,
    /// Pointers that hold envelopes.
    #[serde(default)]
    pub sealed: Map<String, Value>,
    /// Headers with exact values.
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Headers that must be absent.
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// Signatures that must verify.
    #[serde(default)]
    pub signature: Option<SignatureExpect>,
}

/// One sealed field of a forwarded body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedExpect {
    /// The plaintext.
    pub value: Value,
    /// The bound context.
    pub context: Map<String, Value>,
    /// The key that sealed it.
    #[serde(default)]
    pub kid: Option<String>,
}

/// Signatures of a forwarded message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureExpect {
    /// Keys that each must have signed.
    pub kids: Vec<String>,
}

/// A refused configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRefusedExpect {
    /// JSON Pointer the error names.
    pub at: String,
}

/// An envelope to compute, from `{"$sealed": {...}}` in a body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedInput {
    /// The plaintext.
    pub value: Value,
    /// The pointer bound in the header.
    pub pointer: String,
    /// The context bound in the header.
    #[serde(default)]
    pub context: Map<String, Value>,
    /// The key.
    pub kid: String,
    /// `flip_tag`, `flip_ciphertext` or `flip_header`.
    #[serde(default)]
    pub tamper: Option<String>,
}

impl Case {
    /// Reads `tests/cases/<name>.json`.
    ///
    /// # Panics
    ///
    /// When the file cannot be read or is not a valid case.
    pub fn load(name: &str) -> Case {
        Case::load_from(&crate::generate::cases_dir(), name)
    }

    /// Reads `<dir>/<name>.json`.
    ///
    /// # Panics
    ///
    /// When the file cannot be read or is not a valid case.
    pub fn load_from(dir: &std::path::Path, name: &str) -> Case {
        let path = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let case: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        Case::from_value(&path.display().to_string(), case)
    }

    /// A case built in memory (for example from a vector), checked like a case file.
    ///
    /// # Panics
    ///
    /// When `case` is not a valid case.
    pub fn from_value(name: &str, case: Value) -> Case {
        let case: Case = serde_json::from_value(case).unwrap_or_else(|e| panic!("{name}: not a valid case: {e}"));
        for e in std::iter::once(&case.expect).chain(&case.expect_hold) {
            let kinds = [
                e.local_reply.is_some(),
                e.forwarded.is_some(),
                e.reset.is_some(),
                e.config_refused.is_some(),
            ];
            assert_eq!(
                kinds.iter().filter(|k| **k).count(),
                1,
                "{name}: expect and expect_hold need exactly one of local_reply, forwarded, reset, config_refused"
            );
        }
        case
    }

    /// The case in `mode`: in hold mode the policy says `"envoy": {"headers": "hold"}` and
    /// `expect_hold` (if given) is the outcome.
    pub fn in_mode(mut self, mode: Mode) -> Case {
        if mode == Mode::Hold {
            self.config["envoy"] = serde_json::json!({"headers": "hold"});
            if let Some(expect) = self.expect_hold.take() {
                self.expect = expect;
            }
        }
        self
    }

    /// Who the client is to the policy's principal source (`principal`): the mTLS peer, the
    /// verified JWT's claim (with all its claims), or a header the edge sets. Read from the
    /// case's own data, as a host would find it.
    ///
    /// # Panics
    ///
    /// When the policy names a principal source this reader does not know.
    pub fn caller(&self, headers: &[(String, String)]) -> Option<Caller> {
        let source = self.config.get("principal")?;
        let identity = self.identity.as_ref();
        match source.get("source").and_then(Value::as_str)? {
            "mtls" => identity?.spiffe.clone().map(|id| Caller { id, claims: None }),
            "header" => {
                let name = source.get("header").and_then(Value::as_str)?;
                let value = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
                value.map(|id| Caller { id, claims: None })
            }
            "jwt" => {
                let claims = identity?.jwt.clone()?;
                let claim = source.get("claim").and_then(Value::as_str).unwrap_or("sub");
                let id = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some(Caller { id, claims: Some(claims) })
            }
            other => panic!("unknown principal source {other:?}"),
        }
    }

    /// Whether the policy holds headers: the host then sets Envoy's
    /// `allow_on_headers_stop_iteration`, as a deployment that matches its policy does.
    pub fn holds_headers(&self) -> bool {
        self.config.pointer("/envoy/headers").and_then(Value::as_str) == Some("hold")
    }
}

// Turning case data into what a runner sends, shared by every host's runner so all of
// them send the same bytes.

/// Now, in Unix seconds, from the real clock (the harness clock starts there too).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Replaces every `{"$sealed": ...}` with an envelope computed by the runner.
fn expand(value: &Value, sets: &[&Value]) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$sealed") => {
            let input: SealedInput = serde_json::from_value(map["$sealed"].clone()).unwrap_or_else(|e| panic!("bad $sealed: {e}"));
            let key = jose::key_bytes(sets, &input.kid);
            Value::String(jose::seal(
                &key,
                &input.kid,
                &input.pointer,
                &input.context,
                &input.value,
                input.tamper.as_deref(),
            ))
        }
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), expand(v, sets))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| expand(v, sets)).collect()),
        other => other.clone(),
    }
}

/// A body's bytes: a string raw, anything else as compact JSON.
pub fn body_bytes(body: &Value, sets: &[&Value]) -> Vec<u8> {
    match body {
        Value::String(text) => text.as_bytes().to_vec(),
        other => serde_json::to_vec(&expand(other, sets)).expect("JSON values serialize"),
    }
}

/// A case's header object as lower-case name/value pairs (non-strings as JSON text).
pub fn header_pairs(headers: &Map<String, Value>) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                value.as_str().map_or_else(|| value.to_string(), str::to_owned),
            )
        })
        .collect()
}

/// A message ready to send: headers and body chunks.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Headers, pseudo-headers first (`:method`, `:path`, `:authority`, `:scheme`, or
    /// `:status`), then the case's, the signature's, and `content-length` for a body.
    pub headers: Vec<(String, String)>,
    /// The body, if the message has one.
    pub body: Option<Vec<u8>>,
    /// In how many chunks the body goes out.
    pub chunks: usize,
}

/// The request of `case` as a client sends it: `$sealed` inputs sealed, signed as
/// `sign_request` says, with `content-length`.
pub fn prepare_request(case: &Case, sets: &[&Value]) -> Prepared {
    let Request {
        method,
        path,
        authority,
        headers,
        body,
        body_chunks,
    } = &case.request;
    let mut pairs = vec![
        (":method".to_owned(), method.clone()),
        (":path".to_owned(), path.clone()),
        (":authority".to_owned(), authority.clone()),
        (":scheme".to_owned(), "https".to_owned()),
    ];
    pairs.extend(header_pairs(headers));
    let mut body = body.as_ref().map(|b| body_bytes(b, sets));
    if let Some(sign) = &case.sign_request {
        let timestamp = now() + sign.timestamp_offset_seconds;
        let signed = body.clone().unwrap_or_default();
        let signature = match sign.tamper.as_deref() {
            Some("malformed") => "v1,this is not base64!".to_owned(),
            _ => jose::webhook_signature_by(sets, &sign.kid, &sign.id, timestamp, &signed),
        };
        if sign.tamper.as_deref() == Some("body") {
            body.get_or_insert_with(Vec::new).push(b'\n');
        }
        pairs.push(("webhook-id".to_owned(), sign.id.clone()));
        pairs.push(("webhook-timestamp".to_owned(), timestamp.to_string()));
        pairs.push(("webhook-signature".to_owned(), signature));
    }
    if let Some(body) = &body {
        pairs.push(("content-length".to_owned(), body.len().to_string()));
    }
    Prepared {
        headers: pairs,
        body,
        chunks: body_chunks.unwrap_or(1).max(1),
    }
}

/// The upstream's answer of a case (default: `200` without a body), with `content-length`.
pub fn prepare_response(response: Option<&Response>, sets: &[&Value]) -> Prepared {
    let Some(Response {
        status,
        headers,
        body,
        body_chunks,
    }) = response
    else {
        return Prepared {
            headers: vec![(":status".to_owned(), "200".to_owned())],
            body: None,
            chunks: 1,
        };
    };
    let mut pairs = vec![(":status".to_owned(), status.to_string())];
    pairs.extend(header_pairs(headers));
    let body = body.as_ref().map(|b| body_bytes(b, sets));
    if let Some(body) = &body {
        pairs.push(("content-length".to_owned(), body.len().to_string()));
    }
    Prepared {
        headers: pairs,
        body,
        chunks: body_chunks.unwrap_or(1).max(1),
    }
}

/// Splits `body` into `n` chunks of nearly equal size (at least one byte each).
pub fn chunks(body: &[u8], n: usize) -> Vec<&[u8]> {
    if body.is_empty() {
        return vec![body];
    }
    let size = body.len().div_ceil(n.min(body.len()));
    body.chunks(size).collect()
}
