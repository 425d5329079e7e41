//! Judging what came out of the filter against a case's expectations.

use crate::case::{Case, LocalReplyExpect, MessageExpect, Prepared, SealedExpect, now};
use crate::jose;
use eventseal_core::{Context, Keyring, open_value};
use eventseal_harness::{HttpOutcome, LocalReply, Message};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Everything one exchange showed.
pub struct Observed {
    /// How the exchange ended.
    pub outcome: HttpOutcome,
    /// What the upstream received.
    pub upstream: Message,
    /// What the client received (without a local reply).
    pub client: Message,
    /// The local reply, if any.
    pub local_reply: Option<LocalReply>,
    /// Whether the filter paused on any step.
    pub paused: bool,
}

/// Collects differences, then fails once with all of them.
struct Report {
    name: String,
    problems: Vec<String>,
}

impl Report {
    fn new(name: &str) -> Report {
        Report {
            name: name.to_owned(),
            problems: Vec::new(),
        }
    }

    fn expect(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(what());
        }
    }

    fn finish(self, case: &Case, observed: Option<&Observed>) {
        if self.problems.is_empty() {
            return;
        }
        let mut text = format!("case {} failed: {}\n", self.name, case.description);
        for problem in &self.problems {
            let _ = writeln!(text, "  - {problem}");
        }
        if let Some(o) = observed {
            let _ = writeln!(text, "  actual outcome: {:?}", o.outcome);
        }
        panic!("{text}");
    }
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// The plaintexts a case must never see in a log or a problem body.
fn plaintexts(case: &Case) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(sealed) = map.get("$sealed") {
                    out.push(text(&sealed["value"]));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for body in [
        case.request.body.as_ref(),
        case.upstream_response.as_ref().and_then(|r| r.body.as_ref()),
    ]
    .into_iter()
    .flatten()
    {
        walk(body, &mut out);
    }
    if let Some(forwarded) = &case.expect.forwarded {
        for side in [&forwarded.upstream, &forwarded.client].into_iter().flatten() {
            out.extend(side.sealed.values().map(|s| text(&s["value"])));
        }
    }
    // Short values ("10", "true") occur everywhere by chance, so a check for them proves
    // nothing: a case must seal distinct markers of at least 6 characters.
    for plaintext in &out {
        assert!(
            plaintext.len() >= MIN_MARKER,
            "a sealed value of the case is {plaintext:?}: use a distinct marker of {MIN_MARKER} or more characters, so the leak checks can see it"
        );
    }
    out
}

/// The shortest sealed value a case may use (see [`plaintexts`]).
pub const MIN_MARKER: usize = 6;

/// No log line holds a plaintext of the case.
pub fn no_plaintext(name: &str, case: &Case, logs: &[String]) {
    let mut report = Report::new(name);
    for secret in plaintexts(case) {
        for line in logs {
            report.expect(!line.contains(&secret), || {
                format!("the filter logged a plaintext ({secret:?}): {line}")
            });
        }
    }
    report.finish(case, None);
}

/// The configuration was refused, naming the expected location.
pub fn config_refused(name: &str, case: &Case, logs: &[String]) {
    let mut report = Report::new(name);
    match &case.expect.config_refused {
        None => report.expect(false, || format!("the filter refused its configuration: {logs:?}")),
        Some(expected) => {
            let line = logs.iter().find(|l| l.starts_with("eventseal: configuration refused:"));
            // The policy's errors are located in the configuration, the keyring's in the keyring.
            let located = |l: &&String| {
                ["configuration", "keyring"]
                    .iter()
                    .any(|doc| l.contains(&format!("{doc} {}:", expected.at)))
            };
            report.expect(line.is_some_and(|l| located(&l)), || {
                format!(
                    "expected a log line `eventseal: configuration refused: configuration|keyring {}: ...`, got {logs:?}",
                    expected.at
                )
            });
        }
    }
    report.finish(case, None);
}

/// Counter values after the case.
pub fn metrics(name: &str, case: &Case, read: impl Fn(&str) -> Option<u64>) {
    let mut report = Report::new(name);
    for (metric, expected) in case.expect.metrics.iter().flatten() {
        let expected = expected.as_u64();
        let actual = read(metric);
        report.expect(actual == expected, || {
            format!("metric {metric}: expected {expected:?}, got {actual:?}")
        });
    }
    report.finish(case, None);
}

/// The exchange's outcome matches the case.
pub fn outcome(name: &str, case: &Case, sets: &[&Value], request: &Prepared, response: &Prepared, observed: &Observed) {
    let mut report = Report::new(name);
    let expect = &case.expect;
    if expect.config_refused.is_some() {
        report.expect(false, || "the filter accepted a configuration it should refuse".to_owned());
    }
    if let Some(local) = &expect.local_reply {
        local_reply(&mut report, case, local, observed);
    }
    if expect.reset.is_some() {
        report.expect(matches!(observed.outcome, HttpOutcome::Reset { .. }), || {
            "expected the stream to be reset".to_owned()
        });
        report.expect(observed.client.body.is_empty(), || {
            format!(
                "the client received body bytes of a refused response: {:?}",
                observed.client.body_text()
            )
        });
    }
    if let Some(forwarded) = &expect.forwarded {
        match &observed.outcome {
            HttpOutcome::Forwarded {
                request: upstream,
                response: client,
            } => {
                if let Some(side) = &forwarded.upstream {
                    message(&mut report, "upstream", side, upstream, request.body.as_deref(), sets);
                }
                if let Some(side) = &forwarded.client {
                    message(&mut report, "client", side, client, response.body.as_deref(), sets);
                }
                for (side, m) in [("upstream", upstream), ("client", client)] {
                    content_length(&mut report, side, m);
                }
            }
            other => report.expect(false, || format!("expected the exchange to be forwarded, got {other:?}")),
        }
        if forwarded.streamed {
            report.expect(!observed.paused, || {
                "the filter paused a stream it should have let through untouched".to_owned()
            });
        }
    }
    report.finish(case, Some(observed));
}

fn local_reply(report: &mut Report, case: &Case, expected: &LocalReplyExpect, observed: &Observed) {
    let Some(reply) = &observed.local_reply else {
        report.expect(false, || format!("expected a {} local reply", expected.status));
        return;
    };
    report.expect(reply.status == expected.status, || {
        format!("status: expected {}, got {}", expected.status, reply.status)
    });
    report.expect(reply.header("content-type") == Some("application/problem+json"), || {
        format!(
            "content-type: expected application/problem+json, got {:?}",
            reply.header("content-type")
        )
    });
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    report.expect(
        body.get("type").and_then(Value::as_str) == Some(expected.problem_type.as_str()),
        || format!("problem type: expected {}, got {}", expected.problem_type, body),
    );
    report.expect(
        body.get("status").and_then(Value::as_u64) == Some(u64::from(expected.status)),
        || format!("problem status: expected {}, got {body}", expected.status),
    );
    if let Some(id) = &expected.request_id {
        report.expect(body.get("request_id").and_then(Value::as_str) == Some(id.as_str()), || {
            format!("request_id: expected {id}, got {body}")
        });
    }
    if let Some(part) = &expected.detail_contains {
        report.expect(
            body.get("detail")
                .and_then(Value::as_str)
                .is_some_and(|d| d.contains(part.as_str())),
            || format!("detail: expected it to contain {part:?}, got {body}"),
        );
    }
    let reached = !observed.upstream.body.is_empty() || observed.upstream.end_of_stream;
    report.expect(reached == expected.upstream_reached, || {
        format!(
            "upstream reached: expected {}, got {} (it received {} body bytes, end of stream {})",
            expected.upstream_reached,
            reached,
            observed.upstream.body.len(),
            observed.upstream.end_of_stream
        )
    });
    let shown = String::from_utf8_lossy(&reply.body);
    for secret in plaintexts(case) {
        report.expect(!shown.contains(&secret), || {
            format!("the problem body shows a plaintext ({secret:?}): {shown}")
        });
    }
}

fn content_length(report: &mut Report, side: &str, m: &Message) {
    if let Some(length) = m.header("content-length") {
        report.expect(length == m.body.len().to_string(), || {
            format!("{side}: content-length {length} does not match the {} body bytes", m.body.len())
        });
    }
}

fn message(report: &mut Report, side: &str, expected: &MessageExpect, m: &Message, sent: Option<&[u8]>, sets: &[&Value]) {
    if let Some(status) = expected.status {
        let actual = m.header(":status");
        report.expect(actual == Some(status.to_string().as_str()), || {
            format!("{side} status: expected {status}, got {actual:?}")
        });
    }
    if expected.unchanged_bytes {
        let sent = sent.unwrap_or_default();
        report.expect(m.body == sent, || {
            format!(
                "{side} body changed:\n    sent     {}\n    received {}",
                String::from_utf8_lossy(sent),
                m.body_text()
            )
        });
    }
    for (name, value) in &expected.headers {
        let value = text(value);
        report.expect(m.header(name) == Some(value.as_str()), || {
            format!("{side} header {name}: expected {value:?}, got {:?}", m.header(name))
        });
    }
    for name in &expected.headers_absent {
        report.expect(m.header(name).is_none(), || {
            format!("{side} header {name} should be absent, got {:?}", m.header(name))
        });
    }
    if expected.body.is_some() || !expected.sealed.is_empty() {
        match serde_json::from_slice::<Value>(&m.body) {
            Ok(mut received) => {
                for (pointer, sealed) in &expected.sealed {
                    let sealed: SealedExpect =
                        serde_json::from_value(sealed.clone()).unwrap_or_else(|e| panic!("bad sealed expectation: {e}"));
                    if let Some(opened) = open_sealed(report, side, pointer, &sealed, &received, sets)
                        && let Some(slot) = received.pointer_mut(pointer)
                    {
                        *slot = opened;
                    }
                }
                if let Some(body) = &expected.body {
                    report.expect(&received == body, || {
                        format!("{side} body (sealed fields opened):\n    expected {body}\n    got      {received}")
                    });
                }
            }
            Err(e) => report.expect(false, || format!("{side} body is not JSON ({e}): {}", m.body_text())),
        }
    }
    if let Some(signature) = &expected.signature {
        let (id, timestamp, header) = (m.header("webhook-id"), m.header("webhook-timestamp"), m.header("webhook-signature"));
        match (id, timestamp.and_then(|t| t.parse::<i64>().ok()), header) {
            (Some(id), Some(timestamp), Some(header)) => {
                report.expect((now() - timestamp).abs() <= 300, || {
                    format!("{side} webhook-timestamp {timestamp} is not now")
                });
                let offered: Vec<&str> = header.split(' ').collect();
                for kid in &signature.kids {
                    let expected = jose::webhook_signature_by(sets, kid, id, timestamp, &m.body);
                    report.expect(offered.contains(&expected.as_str()), || {
                        format!("{side}: no valid signature by {kid} in {header:?}")
                    });
                }
            }
            _ => report.expect(false, || {
                format!("{side}: webhook-id, webhook-timestamp or webhook-signature missing")
            }),
        }
    }
}

/// Opens the envelope at `pointer` twice, with core and with the runner's own JWE code;
/// both must agree with the expectation. Returns the plaintext.
fn open_sealed(
    report: &mut Report,
    side: &str,
    pointer: &str,
    expected: &SealedExpect,
    received: &Value,
    sets: &[&Value],
) -> Option<Value> {
    let Some(Value::String(envelope)) = received.pointer(pointer) else {
        report.expect(false, || {
            format!("{side} {pointer}: expected an envelope, got {:?}", received.pointer(pointer))
        });
        return None;
    };
    let context: Context = expected.context.iter().map(|(k, v)| (k.clone(), text(v))).collect();
    let keyring = Keyring::from_value(sets[0], "").expect("the case's keys are a valid keyring");
    match open_value(&keyring, pointer, &context, envelope) {
        Ok((value, kid)) => {
            report.expect(value == expected.value, || {
                format!("{side} {pointer}: opened to {value}, expected {}", expected.value)
            });
            if let Some(want) = &expected.kid {
                report.expect(kid.as_str() == want, || {
                    format!("{side} {pointer}: sealed with {kid}, expected {want}")
                });
            }
        }
        Err(e) => report.expect(false, || format!("{side} {pointer}: core cannot open it: {e}")),
    }
    match jose::open(sets, envelope) {
        Ok((header, value)) => {
            let ctx: Map<String, Value> = expected.context.clone();
            report.expect(
                header["ptr"] == Value::String(pointer.to_owned()) && header["ctx"] == Value::Object(ctx),
                || {
                    format!(
                        "{side} {pointer}: header binds {header}, expected this pointer and context {:?}",
                        expected.context
                    )
                },
            );
            report.expect(value == expected.value, || {
                format!("{side} {pointer}: a plain JWE decrypt gives {value}")
            });
        }
        Err(e) => report.expect(false, || format!("{side} {pointer}: not a standard dir/A256GCM JWE: {e}")),
    }
    Some(expected.value.clone())
}
