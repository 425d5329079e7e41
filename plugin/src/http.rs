//! One HTTP stream: route it, admit its producer, buffer the bodies a rule decides on, hand
//! each whole body to the exchange, and deliver the decision. Nothing here decides anything.
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

use crate::exchange::{Decided, Exchange, header, principal};
use crate::host;
use crate::kms::{self, Paused};
use crate::metrics::Counter;
use crate::vm::{Held, HeldStream, Vm};
use eventseal_core::{Decision, Direction, DocumentError, EnvoyHeaders, PROBLEM_CONTENT_TYPE, Problem, ProblemKind, Report, RequestHead};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// The filter of one HTTP stream, as the SDK holds it: its state is shared with the KMS
/// key source, which resumes the stream when a call it waits for completes.
pub struct HttpFilter {
    stream: Rc<RefCell<HttpStream>>,
}

impl HttpFilter {
    /// Stream `id` of `vm`.
    pub fn new(vm: Vm, id: u32) -> Self {
        let stream = Rc::new_cyclic(|me: &Weak<RefCell<HttpStream>>| {
            RefCell::new(HttpStream {
                vm,
                id,
                me: me.clone(),
                exchange: None,
                replied: false,
                paused: None,
            })
        });
        Self { stream }
    }
}

/// The filter state of one HTTP stream.
pub struct HttpStream {
    vm: Vm,
    /// The stream's context id.
    id: u32,
    /// Itself, for the list of streams waiting for the KMS.
    me: Weak<RefCell<HttpStream>>,
    /// `None`: no rule matched (or not yet routed); the stream passes untouched.
    exchange: Option<Exchange>,
    /// A local reply was sent; everything after it passes (it is our own reply).
    replied: bool,
    /// A whole body (direction, size) paused until the KMS calls it waits for complete.
    paused: Option<(Direction, usize)>,
}

impl HttpStream {
    /// `envoy.headers: hold`: the headers of a body the rule decides on wait for the decision.
    fn holds(&self) -> bool {
        self.vm.engine.policy().envoy_headers == EnvoyHeaders::Hold
    }

    /// Answers the client with the problem (already recorded) and stops the stream here.
    /// From a response body (response headers already forwarded) Envoy cannot replace the
    /// response and resets the stream instead: the refused body is never passed on either way.
    fn reply(&mut self, problem: &Problem, body: &str) -> Action {
        let retry_after = problem.retry_after.map(|s| s.to_string());
        let mut headers = vec![("content-type", PROBLEM_CONTENT_TYPE)];
        if let Some(seconds) = retry_after.as_deref() {
            headers.push(("retry-after", seconds));
        }
        self.replied = true;
        host::send_local_reply(problem.status, &headers, body.as_bytes());
        Action::Pause
    }

    /// Records a refusal of the exchange (`stage` `None`: its admission) and answers with it.
    fn refuse(&mut self, stage: Option<Direction>, problem: &Problem, report: &Report) -> Action {
        let Some(exchange) = self.exchange.as_ref() else {
            return Action::Continue;
        };
        let body = exchange.refused(&self.vm, stage, problem, report);
        self.reply(problem, &body)
    }

    /// Decides on a whole body and applies the decision, in the callback of context
    /// `running`. `headers_writable`: we are in the headers callback (a stream without a
    /// body), the only time headers can still change.
    fn finish(&mut self, direction: Direction, body: &[u8], body_size: usize, headers_writable: bool, running: u32) -> Action {
        let Some(exchange) = self.exchange.as_ref() else {
            return Action::Continue;
        };
        if body.len() != body_size {
            // The proxy holds a body it did not hand over (a host error): deciding on what
            // arrived would forward the rest unread. Refuse instead, as for any unreadable input.
            let detail = format!("the proxy handed over {} of {body_size} body bytes", body.len());
            let problem = Problem::new(ProblemKind::SealFailed, direction, detail);
            return self.refuse(Some(direction), &problem, &Report::default());
        }
        // Calls go from this stream only in its own callback: the SDK delivers an answer
        // to the context whose callback sent the call.
        let sender = (running == self.id).then_some(self.id);
        let decision = match exchange.decide(&self.vm, direction, body, sender) {
            Decided::Now(decision) => decision,
            Decided::Wait(calls) => {
                if let Some(kms) = self.vm.kms.as_deref() {
                    let me: Weak<RefCell<dyn Paused>> = self.me.clone();
                    kms.borrow_mut().wait(&calls, &(self.id, me));
                }
                self.paused = Some((direction, body_size));
                return Action::Pause;
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
                    return self.refuse(Some(direction), &problem, &report);
                }
                exchange.forwarded(&self.vm, direction, &report);
                if let Some(new_body) = new_body {
                    host::set_body(direction, body_size, &new_body);
                    if headers_writable {
                        // Held headers (or none sent yet): frame the new body exactly.
                        host::set_header(direction, "content-length", Some(&new_body.len().to_string()));
                    }
                }
                for (name, value) in &set_headers {
                    host::set_header(direction, name, Some(value));
                }
                Action::Continue
            }
            Decision::Refuse { problem, report } => self.refuse(Some(direction), &problem, &report),
        }
    }

    /// The headers of `direction` (kept in its side) when the rule decides on its body:
    /// start buffering the body, or decide at once when there is none.
    fn on_headers(&mut self, direction: Direction, end_of_stream: bool) -> Action {
        let holds = self.holds();
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let rewrites = exchange.rule(&self.vm).rewrites_body();
        if end_of_stream {
            // Never held: with no body there is nothing to wait for.
            return self.finish(direction, &[], 0, true, self.id);
        }
        if holds {
            exchange.side_mut(direction).pending = true;
            if self.vm.hold.borrow().missing() {
                self.fail_unheld();
                return Action::Pause;
            }
            let me: HeldStream = self.me.clone();
            self.vm.hold.borrow_mut().watch(self.id, host::now_ms(), me);
            return Action::Pause;
        }
        // proxy-wasm ABI 0.2.1 forwards headers before any body callback (a paused headers
        // callback would hold the body back from the filter too), so this is the last
        // chance to touch them: the body may change length, and the codec frames it anew.
        if rewrites {
            host::set_header(direction, "content-length", None);
        }
        exchange.side_mut(direction).pending = true;
        Action::Continue
    }

    /// A body chunk: keep buffering until the end, refusing as soon as it exceeds the limit.
    fn on_body(&mut self, direction: Direction, body_size: usize, end_of_stream: bool) -> Action {
        let limit = self.vm.engine.policy().limits.max_body_bytes;
        if self.replied {
            return Action::Continue;
        }
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let side = exchange.side_mut(direction);
        side.body_size = body_size;
        if !side.pending {
            return Action::Continue;
        }
        if self.holds() {
            // A body callback while the headers wait: Envoy has allow_on_headers_stop_iteration.
            self.vm.hold.borrow_mut().confirm();
        }
        if body_size > limit {
            let problem = Problem::document(&DocumentError::TooLarge { limit }, direction);
            return self.refuse(Some(direction), &problem, &Report::default());
        }
        if !end_of_stream {
            // Envoy keeps the chunks; the whole body is read once, at the end.
            return Action::Pause;
        }
        self.end_of_body(direction)
    }

    /// Trailers end a body that was being buffered.
    fn on_trailers(&mut self, direction: Direction) -> Action {
        match self.exchange.as_ref() {
            Some(exchange) if exchange.side(direction).pending && !self.replied => self.end_of_body(direction),
            _ => Action::Continue,
        }
    }

    /// The body is complete: read it whole and decide.
    fn end_of_body(&mut self, direction: Direction) -> Action {
        let Some(exchange) = self.exchange.as_mut() else {
            return Action::Continue;
        };
        let side = exchange.side_mut(direction);
        side.pending = false;
        let body_size = side.body_size;
        let body = host::body(direction, body_size);
        let holds = self.holds();
        self.finish(direction, &body, body_size, holds, self.id)
    }

    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let engine = Rc::clone(&self.vm.engine);
        // Most requests match no rule, and most of those are told apart by their path alone:
        // one value read, not the whole header map decoded into owned strings.
        if !engine.may_route(&host::header_value(Direction::Request, ":path").unwrap_or_default()) {
            return Action::Continue;
        }
        let headers = host::headers(Direction::Request);
        let pseudo = |name: &str| header(&headers, name).unwrap_or_default().to_owned();
        let (method, path, authority) = (pseudo(":method"), pseudo(":path"), pseudo(":authority"));
        let head = RequestHead {
            method: &method,
            path: &path,
            authority: &authority,
            headers: &headers,
            subject: None,
        };
        let Some(id) = engine.route(&head) else {
            // No rule: nothing is buffered, parsed or changed.
            return Action::Continue;
        };
        let rule = engine.rule(id);
        let principal = principal(&self.vm, &headers);
        let exchange = self.exchange.insert(Exchange::new(id, method, path, authority, headers, principal));
        if let Err(problem) = engine.admit(rule, exchange.principal.as_ref()) {
            return self.refuse(None, &problem, &Report::default());
        }
        if !rule.decides(Direction::Request) {
            if rule.producers.is_some() {
                // No body decision follows on the request: the admission is the decision.
                exchange.audit(&self.vm, None, &Report::default(), None);
            }
            return Action::Continue;
        }
        self.on_headers(Direction::Request, end_of_stream)
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        match self.exchange.as_mut() {
            Some(exchange) if exchange.rule(&self.vm).decides(Direction::Response) => {
                exchange.side_mut(Direction::Response).headers = host::headers(Direction::Response);
                self.on_headers(Direction::Response, end_of_stream)
            }
            _ => Action::Continue,
        }
    }
}

impl Paused for HttpStream {
    /// A KMS call this stream waited for completed: decides on the paused body and resumes
    /// it, or waits on (another call), or refuses with 503.
    fn resume(&mut self, failed: Option<u32>, running: u32) {
        let Some((direction, body_size)) = self.paused.take() else {
            return;
        };
        if self.replied {
            return;
        }
        let action = match (failed, self.vm.kms.as_deref()) {
            (Some(retry_after), Some(kms)) => {
                let source = kms.borrow().transit().source();
                let problem = Problem::kms_unavailable(&source, direction, retry_after);
                self.refuse(Some(direction), &problem, &Report::default())
            }
            _ => {
                let body = host::body(direction, body_size);
                let holds = self.holds();
                self.finish(direction, &body, body_size, holds, running)
            }
        };
        if matches!(action, Action::Continue) {
            host::resume(direction);
        }
    }
}

impl Held for HttpStream {
    fn fail_unheld(&mut self) {
        if self.replied {
            return;
        }
        // Like a VM whose configuration was refused: closed, with the log line naming the fix.
        self.replied = true;
        self.vm.metrics.add(&[Counter::HoldUnavailable]);
        host::send_local_reply(503, &[("content-type", "text/plain")], NOT_HELD);
    }
}

/// The answer to a held stream when Envoy does not pass bodies while headers wait.
const NOT_HELD: &[u8] = b"eventseal: filter not configured: envoy.headers is hold but Envoy lacks allow_on_headers_stop_iteration\n";

impl Context for HttpFilter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let (kms, id) = {
            let stream = self.stream.borrow();
            (stream.vm.kms.clone(), stream.id)
        };
        if let Some(kms) = kms {
            kms::answered(&kms, id, token_id, body_size);
        }
    }

    fn on_done(&mut self) -> bool {
        // Envoy cancels the KMS calls this stream sent when it deletes the context; the
        // streams waiting for them still need them.
        let stream = self.stream.borrow();
        stream.vm.hold.borrow_mut().forget(stream.id);
        if let Some(kms) = stream.vm.kms.as_deref() {
            kms.borrow_mut().sender_gone(stream.id);
        }
        true
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_body(Direction::Request, body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.stream.borrow_mut().on_trailers(Direction::Request)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.stream.borrow_mut().on_body(Direction::Response, body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.stream.borrow_mut().on_trailers(Direction::Response)
    }
}

/// The stream context of a VM whose configuration was refused: fail closed.
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        host::send_local_reply(503, &[("content-type", "text/plain")], b"eventseal: filter not configured\n");
        Action::Pause
    }
}
