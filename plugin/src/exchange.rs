//! One exchange a rule matched, whatever transport carries it: the request it matched on,
//! who sent it, and one [`Side`] per direction. Deciding on a whole body (with the KMS when
//! the policy has one) and recording each decision (audit record, counters, log line) live
//! here, so that every stream type reuses them; delivering a decision is the stream's.

use crate::host::{self, log};
use crate::kms::Prepared;
use crate::metrics;
use crate::property::decode_value;
use crate::replay::SharedReplayCache;
use crate::vm::Vm;
use eventseal_core::{
    AuditFacts, BodyJob, CallId, Decision, Direction, KmsKeys, Principal, PrincipalSource, Problem, ProblemKind, Report, RequestHead, Rule,
    RuleId,
};
use proxy_wasm::types::LogLevel;
use serde_json::Value;

/// Where `jwt_authn` writes verified JWT payloads (`payload_in_metadata`).
const JWT_AUTHN_METADATA: &str = "envoy.filters.http.jwt_authn";

/// What travels in one direction of an exchange.
#[derive(Debug, Default)]
pub struct Side {
    /// The headers travelling with the body, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body is being buffered until its end, to be decided on whole.
    pub pending: bool,
    /// Size of the body seen so far (trailers carry none).
    pub body_size: usize,
}

/// An exchange a rule matched, kept for the decisions on both of its bodies.
#[derive(Debug)]
pub struct Exchange {
    /// The rule that matched.
    pub rule: RuleId,
    method: String,
    path: String,
    authority: String,
    subject: Option<String>,
    /// The caller, if the policy identifies one.
    pub principal: Option<Principal>,
    /// `x-request-id`, for problems and audit records.
    pub request_id: Option<String>,
    request: Side,
    response: Side,
}

/// A body's decision, or the KMS calls it must wait for first.
pub enum Decided {
    /// Decided: apply it.
    Now(Decision),
    /// Paused until these KMS calls complete.
    Wait(Vec<CallId>),
}

impl Exchange {
    /// The exchange `rule` matched, on this request line and headers, from `principal`.
    pub fn new(
        rule: RuleId,
        method: String,
        path: String,
        authority: String,
        headers: Vec<(String, String)>,
        principal: Option<Principal>,
    ) -> Self {
        let request_id = header(&headers, "x-request-id").map(str::to_owned);
        Self {
            rule,
            method,
            path,
            authority,
            subject: None,
            principal,
            request_id,
            request: Side {
                headers,
                ..Side::default()
            },
            response: Side::default(),
        }
    }

    /// The NATS message `rule` matched, travelling in `direction`, from `principal` (the
    /// client of the connection). Its `Nats-Msg-Id` header, if any, names it in the audit.
    pub fn message(rule: RuleId, direction: Direction, subject: &str, headers: &[(String, String)], principal: Option<Principal>) -> Self {
        // A message is its own head: its headers are matched on, and travel with its body.
        let mut exchange = Self::new(rule, String::new(), String::new(), String::new(), headers.to_vec(), principal);
        exchange.request_id = header(headers, "nats-msg-id").map(str::to_owned);
        exchange.subject = Some(subject.to_owned());
        if direction == Direction::Response {
            exchange.response.headers = headers.to_vec();
        }
        exchange
    }

    /// The request the rule matched on (a NATS message: its subject and headers).
    pub fn head(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            headers: &self.request.headers,
            subject: self.subject.as_deref(),
        }
    }

    /// The side of `direction`.
    pub fn side(&self, direction: Direction) -> &Side {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    /// The side of `direction`, to change.
    pub fn side_mut(&mut self, direction: Direction) -> &mut Side {
        match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    /// The matched rule.
    pub fn rule<'v>(&self, vm: &'v Vm) -> &'v Rule {
        vm.engine.rule(self.rule)
    }

    /// Writes the audit record of a decision: `stage` `None` for the admission on the
    /// request headers; `refused` the refusal, if it was one.
    pub fn audit(&self, vm: &Vm, stage: Option<Direction>, report: &Report, refused: Option<ProblemKind>) {
        let facts = AuditFacts {
            time_unix_nanos: host::now_nanos(),
            request_id: self.request_id.as_deref(),
            principal: self.principal.as_ref().map(|p| p.id.as_str()),
            ..AuditFacts::decision(self.rule(vm), stage, report, refused)
        };
        vm.audit(&facts);
    }

    /// Records a refusal (audit record, counters, log line) in one step, and returns the
    /// problem+json body to answer with.
    pub fn refused(&self, vm: &Vm, stage: Option<Direction>, problem: &Problem, report: &Report) -> String {
        self.audit(vm, stage, report, Some(problem.kind));
        vm.metrics.add(&metrics::refused(problem.kind));
        log(
            LogLevel::Info,
            &format!(
                "eventseal: refused {} on rule {:?}: {} {} ({})",
                stage.unwrap_or(Direction::Request).as_str(),
                self.rule(vm).name,
                problem.status,
                problem.kind.slug(),
                problem.detail
            ),
        );
        problem.to_json(self.request_id.as_deref())
    }

    /// Records a body that is forwarded: counters, audit record, and a warning when
    /// `on_error: forward_unchanged` let a failure through.
    pub fn forwarded(&self, vm: &Vm, direction: Direction, report: &Report) {
        vm.metrics.add(&metrics::forwarded(report));
        self.audit(vm, Some(direction), report, None);
        if let Some(kind) = report.forwarded_despite {
            log(
                LogLevel::Warn,
                &format!(
                    "eventseal: forwarded {} unchanged on rule {:?} despite {}",
                    direction.as_str(),
                    self.rule(vm).name,
                    kind.slug()
                ),
            );
        }
    }

    /// Decides on the whole body of `direction`. With a KMS key source, asks first what the
    /// body needs from it (verifying records the signature id in the replay cache, so a body
    /// is decided once, when it can be); calls go from `sender`, the context whose own
    /// callback runs, or wait for the root's tick when `None`.
    pub fn decide(&self, vm: &Vm, direction: Direction, body: &[u8], sender: Option<u32>) -> Decided {
        let job = BodyJob {
            rule: self.rule(vm),
            direction,
            request: self.head(),
            headers: &self.side(direction).headers,
            principal: self.principal.as_ref(),
            body,
            now: host::now_secs(),
        };
        let mut replay = SharedReplayCache::new(vm.engine.policy().replay_capacity, &vm.metrics);
        let Some(kms) = vm.kms.as_deref() else {
            return Decided::Now(vm.engine.decide(&job, &mut replay));
        };
        let now_ms = host::now_ms();
        let needs = vm.engine.kms_needs(&job);
        let mut kms = kms.borrow_mut();
        match kms.prepare(now_ms, &needs, sender) {
            Prepared::Ready(seal) => {
                let keys = KmsKeys {
                    seal: seal.as_deref(),
                    open: &kms.lookup(now_ms),
                };
                Decided::Now(vm.engine.decide_with(&job, &mut replay, keys))
            }
            Prepared::Wait(calls) => Decided::Wait(calls),
            Prepared::Unavailable(retry_after) => Decided::Now(Decision::Refuse {
                problem: Problem::kms_unavailable(&kms.transit().source(), direction, retry_after),
                report: Report::default(),
            }),
        }
    }
}

/// The caller, from wherever the policy says it comes from: the mTLS peer, a JWT that
/// `jwt_authn` verified, or a header the edge is trusted to set.
pub fn principal(vm: &Vm, headers: &[(String, String)]) -> Option<Principal> {
    match &vm.engine.policy().principal {
        PrincipalSource::PeerCertificate => {
            host::property_text(&["connection", "uri_san_peer_certificate"]).map(|id| Principal { id, claims: Value::Null })
        }
        PrincipalSource::TrustedHeader(name) => header(headers, name).map(|id| Principal {
            id: id.to_owned(),
            claims: Value::Null,
        }),
        PrincipalSource::Jwt { payload, claim } => {
            let path = ["metadata", "filter_metadata", JWT_AUTHN_METADATA, payload.as_str()];
            let claims = host::property(&path).map(|bytes| decode_value(&bytes));
            let id = match claims.as_ref().and_then(|c| c.get(claim)) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                // Envoy refuses a whole payload that holds a null claim: ask for the one claim.
                _ => host::property_text(&[path[0], path[1], path[2], path[3], claim.as_str()]),
            };
            id.map(|id| Principal {
                id,
                claims: claims.unwrap_or(Value::Null),
            })
        }
        _ => None,
    }
}

/// The first value of a header (names in lower case).
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
