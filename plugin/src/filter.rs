//! One HTTP exchange: route it, admit its producer, buffer the bodies a rule touches, hand
//! each whole body to core, and apply the decision. Nothing here decides anything.
//!
//! Envoy with proxy-wasm ABI 0.2.1 shapes the flow. Headers are forwarded when their
//! callback returns: pausing them would also keep every body callback from running (the
//! host turns `StopIteration` into `StopAllIterationAndWatermark`). So the producer is
//! admitted and, if the rule may rewrite the body, `content-length` removed in the headers
//! callback, which then continues; body callbacks pause (Envoy buffers) until the end of the
//! stream, and the whole body is decided on then. A refused request body is answered with
//! a problem+json local reply and never reaches the upstream (which has seen the headers
//! only, then a reset); a refused response body cannot become a 502 any more, so Envoy
//! resets the stream and the client gets nothing of it.

use crate::kms::{Prepared, Waiter};
use crate::metrics;
use crate::property::decode_value;
use crate::replay::SharedReplayCache;
use crate::root::{Shared, log, now_ms};
use eventseal_core::{
    AuditFacts, BodyJob, Decision, Direction, DocumentError, KmsKeys, PROBLEM_CONTENT_TYPE, Principal, PrincipalSource, Problem,
    ProblemKind, Report, RequestHead, Rule, RuleId,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::UNIX_EPOCH;

/// Where `jwt_authn` writes verified JWT payloads (`payload_in_metadata`).
const JWT_AUTHN_METADATA: &str = "envoy.filters.http.jwt_authn";

/// The request a rule matched, kept for the body decisions of both directions.
struct Matched {
    /// The rule that matched.
    rule: RuleId,
    method: String,
    path: String,
    authority: String,
    /// Request headers as received, names in lower case.
    request_headers: Vec<(String, String)>,
    /// Response headers, once they arrive.
    response_headers: Vec<(String, String)>,
    principal: Option<Principal>,
    request_id: Option<String>,
    /// Buffering the request body until its end.
    request_pending: bool,
    /// Buffering the response body until its end.
    response_pending: bool,
    /// Size of the request body seen so far (for trailers, which carry no size).
    request_body_size: usize,
    /// Size of the response body seen so far.
    response_body_size: usize,
}

impl Matched {
    fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            headers: &self.request_headers,
        }
    }
}

/// The filter of one HTTP stream, as the SDK holds it: its state is shared with the KMS
/// key source, which resumes the stream when a call it waits for completes.
pub struct Exchange {
    stream: Rc<RefCell<Stream>>,
}

impl Exchange {
    /// Stream `id` of the VM that `shared` was configured for.
    pub fn new(shared: Shared, id: u32) -> Self {
        let stream = Rc::new_cyclic(|me| {
            RefCell::new(Stream {
                shared,
                id,
                me: me.clone(),
                matched: None,
                replied: false,
                paused: None,
            })
        });
        Self { stream }
    }
}

/// The filter state of one HTTP stream.
pub struct Stream {
    shared: Shared,
    /// The stream's context id.
    id: u32,
    /// Itself, for the list of streams waiting for the KMS.
    me: Weak<RefCell<Stream>>,
    /// `None`: no rule matched (or not yet routed); the stream passes untouched.
    matched: Option<Matched>,
    /// A local reply was sent; everything after it passes (it is our own reply).
    replied: bool,
    /// A whole body (direction, size) paused until the KMS calls it waits for complete.
    paused: Option<(Direction, usize)>,
}

impl Stream {
    fn rule(&self) -> Option<&Rule> {
        let m = self.matched.as_ref()?;
        Some(self.shared.engine.rule(m.rule))
    }

    fn now(&self) -> i64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// Writes one audit record of a decision to the proxy log (pointers and key ids only).
    fn audit(&self, direction: Option<Direction>, report: &Report, outcome: &'static str, reason: Option<ProblemKind>) {
        let (Some(m), Some(rule)) = (self.matched.as_ref(), self.rule()) else {
            return;
        };
        let mut operations = Vec::new();
        match direction {
            None => operations.push("admit"),
            Some(_) => {
                for (on, name) in [
                    (rule.verify, "verify"),
                    (rule.seal.is_some(), "seal"),
                    (!rule.open.is_empty(), "open"),
                    (rule.sign, "sign"),
                ] {
                    if on {
                        operations.push(name);
                    }
                }
            }
        }
        let time_unix_nanos = self.get_current_time().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let facts = AuditFacts {
            time_unix_nanos,
            request_id: m.request_id.as_deref(),
            principal: m.principal.as_ref().map(|p| p.id.as_str()),
            rule: Some(&rule.name),
            direction,
            event_id: report.event_id.as_deref(),
            event_type: report.event_type.as_deref(),
            operations,
            fields: &report.fields,
            other_kids: report.verified_by.iter().map(|k| k.as_str().to_owned()).collect(),
            outcome,
            reason: reason.map(ProblemKind::slug),
        };
        self.shared
            .audit
            .borrow_mut()
            .record(&self.shared.engine, &self.shared.metrics, &facts);
    }

    /// The caller, from wherever the policy says it comes from.
    fn principal(&self, headers: &[(String, String)]) -> Option<Principal> {
        match &self.shared.engine.policy().principal {
            PrincipalSource::PeerCertificate => {
                property_text(&["connection", "uri_san_peer_certificate"]).map(|id| Principal { id, claims: Value::Null })
            }
            PrincipalSource::TrustedHeader(name) => header(headers, name).map(|id| Principal {
                id: id.to_owned(),
                claims: Value::Null,
            }),
            PrincipalSource::Jwt { payload, claim } => {
                let path = ["metadata", "filter_metadata", JWT_AUTHN_METADATA, payload.as_str()];
                let claims = property(&path).map(|bytes| decode_value(&bytes));
                let id = match claims.as_ref().and_then(|c| c.get(claim)) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    // Envoy refuses a whole payload that holds a null claim: ask for the one claim.
                    _ => property_text(&[path[0], path[1], path[2], path[3], claim.as_str()]),
                };
                id.map(|id| Principal {
                    id,
                    claims: claims.unwrap_or(Value::Null),
                })
            }
            _ => None,
        }
    }

    /// Answers the client with the problem and stops the stream here. From a response body
    /// (response headers already forwarded) Envoy cannot replace the response and resets
    /// the stream instead: the refused body is never passed on either way.
    fn refuse(&mut self, direction: Direction, problem: &Problem) -> Action {
        self.shared.metrics.add(&metrics::refused(problem.kind));
        let request_id = self.matched.as_ref().and_then(|m| m.request_id.clone());
        let rule = self.rule().map(|r| r.name.clone()).unwrap_or_default();
        log(
            LogLevel::Info,
            &format!(
                "eventseal: refused {} on rule {rule:?}: {} {} ({})",
                direction.as_str(),
                problem.status,
                problem.kind.slug(),
                problem.detail
            ),
        );
        let body = problem.to_json(request_id.as_deref());
        let retry_after = problem.retry_after.map(|s| s.to_string());
        let mut headers = vec![("content-type", PROBLEM_CONTENT_TYPE)];
        if let Some(seconds) = retry_after.as_deref() {
            headers.push(("retry-after", seconds));
        }
        self.replied = true;
        self.send_http_response(u32::from(problem.status), headers, Some(body.as_bytes()));
        Action::Pause
    }

    /// Decides on a whole body and applies the decision, in the callback of context
    /// `running`. `headers_writable`: we are in the headers callback (a stream without a
    /// body), the only time headers can still change.
    fn finish(&mut self, direction: Direction, body: &[u8], body_size: usize, headers_writable: bool, running: u32) -> Action {
        let engine = std::rc::Rc::clone(&self.shared.engine);
        let now = self.now();
        let Some(m) = self.matched.as_ref() else {
            return Action::Continue;
        };
        let rule = engine.rule(m.rule);
        let headers = match direction {
            Direction::Request => &m.request_headers,
            Direction::Response => &m.response_headers,
        };
        let job = BodyJob {
            rule,
            direction,
            request: m.head(),
            headers,
            principal: m.principal.as_ref(),
            body,
            now,
        };
        let decision = match self.shared.kms.as_deref() {
            None => engine.decide(&job, &mut SharedReplayCache),
            Some(kms) => {
                // Ask what the body needs from the KMS before deciding: verifying records the
                // signature id in the replay cache, so a body is decided once, when it can be.
                let now_ms = now_ms();
                let needs = engine.kms_needs(&job);
                let mut kms = kms.borrow_mut();
                // Calls go from this stream only in its own callback: the SDK delivers an
                // answer to the context whose callback sent the call.
                let sender = (running == self.id).then_some(self.id);
                match kms.prepare(now_ms, &needs, sender) {
                    Prepared::Ready(seal) => {
                        let keys = KmsKeys {
                            seal: seal.as_deref(),
                            open: &kms.lookup(now_ms),
                        };
                        engine.decide_with(&job, &mut SharedReplayCache, keys)
                    }
                    Prepared::Wait(calls) => {
                        kms.wait(&calls, &(self.id, self.me.clone()));
                        drop(kms);
                        self.paused = Some((direction, body_size));
                        return Action::Pause;
                    }
                    Prepared::Unavailable(retry_after) => Decision::Refuse {
                        problem: Problem::kms_unavailable(&kms.transit().source(), direction, retry_after),
                        report: Report::default(),
                    },
                }
            }
        };
        match decision {
            Decision::Forward {
                body: new_body,
                set_headers,
                report,
            } => {
                if !set_headers.is_empty() && !headers_writable {
                    // Headers already went on; never forward a body without the headers its
                    // decision requires. Configuration refuses `sign`, so this is a backstop.
                    let detail = "headers cannot be set after the body in proxy-wasm ABI 0.2.1";
                    let problem = Problem::new(ProblemKind::SignFailed, direction, detail);
                    self.audit(Some(direction), &report, "refused", Some(problem.kind));
                    return self.refuse(direction, &problem);
                }
                self.shared.metrics.add(&metrics::forwarded(&report));
                let outcome = if report.forwarded_despite.is_some() {
                    "forwarded_unchanged"
                } else {
                    "allowed"
                };
                self.audit(Some(direction), &report, outcome, report.forwarded_despite);
                if let Some(kind) = report.forwarded_despite {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "eventseal: forwarded {} unchanged on rule {:?} despite {}",
                            direction.as_str(),
                            rule.name,
                            kind.slug()
                        ),
                    );
                }
                if let Some(new_body) = new_body {
                    match direction {
                        Direction::Request => self.set_http_request_body(0, body_size, &new_body),
                        Direction::Response => self.set_http_response_body(0, body_size, &new_body),
                    }
                }
                for (name, value) in &set_headers {
                    match direction {
                        Direction::Request => self.set_http_request_header(name, Some(value)),
                        Direction::Response => self.set_http_response_header(name, Some(value)),
                    }
                }
                Action::Continue
            }
            Decision::Refuse { problem, report } => {
                self.audit(Some(direction), &report, "refused", Some(problem.kind));
                self.refuse(direction, &problem)
            }
        }
    }

    /// A KMS call this stream waited for completed (`failed`: with this `Retry-After`).
    /// Runs under the stream's own context, in the callback of context `running`: decides
    /// on the paused body and resumes it, or waits on (another call), or refuses with 503.
    pub fn resume(&mut self, failed: Option<u32>, running: u32) {
        let Some((direction, body_size)) = self.paused.take() else {
            return;
        };
        if self.replied {
            return;
        }
        let action = match (failed, self.shared.kms.as_deref()) {
            (Some(retry_after), Some(kms)) => {
                let source = kms.borrow().transit().source();
                let problem = Problem::kms_unavailable(&source, direction, retry_after);
                self.audit(Some(direction), &Report::default(), "refused", Some(problem.kind));
                self.refuse(direction, &problem)
            }
            _ => {
                let body = match direction {
                    Direction::Request => self.get_http_request_body(0, body_size),
                    Direction::Response => self.get_http_response_body(0, body_size),
                }
                .unwrap_or_default();
                self.finish(direction, &body, body_size, false, running)
            }
        };
        if matches!(action, Action::Continue) {
            let _ = match direction {
                Direction::Request => hostcalls::resume_http_request(),
                Direction::Response => hostcalls::resume_http_response(),
            };
        }
    }

    /// A body chunk: keep buffering until the end, refusing as soon as it exceeds the limit.
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let limit = self.shared.engine.policy().limits.max_body_bytes;
        if self.replied {
            return Action::Continue;
        }
        let Some(m) = self.matched.as_mut() else {
            return Action::Continue;
        };
        let pending = match direction {
            Direction::Request => {
                m.request_body_size = body_size;
                m.request_pending
            }
            Direction::Response => {
                m.response_body_size = body_size;
                m.response_pending
            }
        };
        if !pending {
            return Action::Continue;
        }
        if body_size > limit {
            let problem = Problem::new(
                ProblemKind::PayloadTooLarge,
                direction,
                DocumentError::TooLarge { limit }.to_string(),
            );
            self.audit(Some(direction), &Report::default(), "refused", Some(problem.kind));
            return self.refuse(direction, &problem);
        }
        if !end_of_stream {
            // Envoy keeps the chunks; the whole body is read once, at the end.
            return Action::Pause;
        }
        self.end_of_body(direction, body_size)
    }

    /// The body is complete: read it whole and decide.
    fn end_of_body(&mut self, direction: Direction, body_size: usize) -> Action {
        if let Some(m) = self.matched.as_mut() {
            match direction {
                Direction::Request => m.request_pending = false,
                Direction::Response => m.response_pending = false,
            }
        }
        let body = match direction {
            Direction::Request => self.get_http_request_body(0, body_size),
            Direction::Response => self.get_http_response_body(0, body_size),
        }
        .unwrap_or_default();
        self.finish(direction, &body, body_size, false, self.id)
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = request_headers();
        let pseudo = |name: &str| header(&headers, name).unwrap_or_default().to_owned();
        let (method, path, authority) = (pseudo(":method"), pseudo(":path"), pseudo(":authority"));
        let engine = std::rc::Rc::clone(&self.shared.engine);
        let head = RequestHead {
            method: &method,
            path: &path,
            authority: &authority,
            headers: &headers,
        };
        let Some(id) = engine.route(&head) else {
            // No rule: nothing is buffered, parsed or changed.
            return Action::Continue;
        };
        let rule = engine.rule(id);
        let index = id;
        let principal = self.principal(&headers);
        let request_id = header(&headers, "x-request-id").map(str::to_owned);
        let buffer_request = rule.request && rule.has_body_actions();
        self.matched = Some(Matched {
            rule: index,
            method,
            path,
            authority,
            request_headers: headers,
            response_headers: Vec::new(),
            principal,
            request_id,
            request_pending: false,
            response_pending: false,
            request_body_size: 0,
            response_body_size: 0,
        });
        let admitted = engine.admit(rule, self.matched.as_ref().and_then(|m| m.principal.as_ref()));
        if let Err(problem) = admitted {
            self.audit(None, &Report::default(), "refused", Some(problem.kind));
            return self.refuse(Direction::Request, &problem);
        }
        if !buffer_request {
            if rule.producers.is_some() {
                // No body decision follows on the request: the admission is the decision.
                self.audit(None, &Report::default(), "allowed", None);
            }
            return Action::Continue;
        }
        if end_of_stream {
            return self.finish(Direction::Request, &[], 0, true, self.id);
        }
        // proxy-wasm ABI 0.2.1 forwards headers before any body callback (a paused headers
        // callback would hold the body back from the filter too), so this is the last
        // chance to touch them: the body may change length, and the codec frames it anew.
        if rule.rewrites_body() {
            self.set_http_request_header("content-length", None);
        }
        if let Some(m) = self.matched.as_mut() {
            m.request_pending = true;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.matched.as_ref() {
            Some(m) if m.request_pending && !self.replied => {
                let size = m.request_body_size;
                self.end_of_body(Direction::Request, size)
            }
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let Some(rule) = self.rule() else {
            return Action::Continue;
        };
        if !(rule.response && rule.has_body_actions()) {
            return Action::Continue;
        }
        let rewrites = rule.rewrites_body();
        let headers = response_headers();
        if let Some(m) = self.matched.as_mut() {
            m.response_headers = headers;
        }
        if end_of_stream {
            return self.finish(Direction::Response, &[], 0, true, self.id);
        }
        if rewrites {
            self.set_http_response_header("content-length", None);
        }
        if let Some(m) = self.matched.as_mut() {
            m.response_pending = true;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        match self.matched.as_ref() {
            Some(m) if m.response_pending && !self.replied => {
                let size = m.response_body_size;
                self.end_of_body(Direction::Response, size)
            }
            _ => Action::Continue,
        }
    }
}

impl Context for Exchange {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let shared = self.stream.borrow().shared.clone();
        let id = self.stream.borrow().id;
        kms_answered(&shared, id, token_id, body_size);
    }

    fn on_done(&mut self) -> bool {
        // Envoy cancels the KMS calls this stream sent when it deletes the context; the
        // streams waiting for them still need them.
        let stream = self.stream.borrow();
        if let Some(kms) = stream.shared.kms.as_deref() {
            kms.borrow_mut().sender_gone(stream.id);
        }
        true
    }
}

impl HttpContext for Exchange {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_http_request_headers(num_headers, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_http_request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.stream.borrow_mut().on_http_request_trailers(num_trailers)
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_http_response_headers(num_headers, end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_http_response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        self.stream.borrow_mut().on_http_response_trailers(num_trailers)
    }
}

/// The answer to KMS call `token` arrived in context `own`: report it, and resume every
/// stream that waited for it.
pub fn kms_answered(shared: &Shared, own: u32, token: u32, body_size: usize) {
    let Some(kms) = shared.kms.as_deref() else { return };
    let (waiters, failed) = kms.borrow_mut().answered(now_ms(), token, body_size);
    wake(waiters, failed, own);
}

/// Resumes paused streams, each under its own context, then makes `own` (the context whose
/// callback runs) the effective context again. A stream that is gone is skipped.
pub fn wake(waiters: Vec<Waiter>, failed: Option<u32>, own: u32) {
    for (id, stream) in waiters {
        let Some(stream) = stream.upgrade() else { continue };
        if hostcalls::set_effective_context(id).is_err() {
            continue;
        }
        // Borrowed means it is the stream whose callback runs now: it is not paused.
        if let Ok(mut stream) = stream.try_borrow_mut() {
            stream.resume(failed, own);
        }
    }
    let _ = hostcalls::set_effective_context(own);
}

/// The stream context of a VM whose configuration was refused: fail closed.
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.send_http_response(
            503,
            vec![("content-type", "text/plain")],
            Some(b"eventseal: filter not configured\n"),
        );
        Action::Pause
    }
}

/// Header pairs as text, reusing the host's buffers (this runs on every request, matched or
/// not). Values that are not UTF-8 are read lossily rather than trapping.
fn text_pairs(pairs: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(mut name, value)| {
            name.make_ascii_lowercase();
            let value = String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}

fn request_headers() -> Vec<(String, String)> {
    text_pairs(hostcalls::get_map_bytes(proxy_wasm::types::MapType::HttpRequestHeaders).unwrap_or_default())
}

fn response_headers() -> Vec<(String, String)> {
    text_pairs(hostcalls::get_map_bytes(proxy_wasm::types::MapType::HttpResponseHeaders).unwrap_or_default())
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A property's raw bytes; absent or unreadable (Envoy: serialization failure) is `None`.
fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A string-valued property; an empty value counts as absent.
fn property_text(path: &[&str]) -> Option<String> {
    property(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .filter(|s| !s.is_empty())
}
