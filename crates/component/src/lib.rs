#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

/// The guest bindings wit-bindgen generates for `wit/`: the only unsafe code of the crate.
#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "eventseal",
    });

    use super::Component;
    export!(Component);
}

use bindings::exports::eventseal::seal::sealing as wit;
use eventseal_core::{
    BodyJob, ConfigError, Decision, Direction, Engine, FieldOutcome, FieldResult, KeySource, KeyringError, MemoryReplayCache, Operation,
    Policy, Principal, Problem, ProblemKind, Report, RequestHead,
};
use serde_json::Value;
use std::cell::RefCell;

/// The component: its only export is the `sealer` resource.
struct Component;

impl wit::Guest for Component {
    type Sealer = Sealer;
}

/// A policy with its keyring, and the signature ids it accepted (the `sealer` resource).
pub struct Sealer {
    engine: Engine,
    replay: RefCell<MemoryReplayCache>,
}

impl wit::GuestSealer for Sealer {
    fn create(policy: String, keyring: String) -> Result<wit::Sealer, wit::ConfigError> {
        Sealer::new(&policy, &keyring).map(wit::Sealer::new)
    }

    fn seal(&self, event: Vec<u8>, exchange: wit::Exchange, principal: Option<wit::Principal>) -> Result<wit::Outcome, wit::Problem> {
        self.run(Operation::Seal, event, &exchange, principal)
    }

    fn open(&self, event: Vec<u8>, exchange: wit::Exchange, principal: Option<wit::Principal>) -> Result<wit::Outcome, wit::Problem> {
        self.run(Operation::Open, event, &exchange, principal)
    }

    fn sign(&self, event: Vec<u8>, exchange: wit::Exchange, principal: Option<wit::Principal>) -> Result<wit::Outcome, wit::Problem> {
        self.run(Operation::Sign, event, &exchange, principal)
    }

    fn verify(&self, event: Vec<u8>, exchange: wit::Exchange, principal: Option<wit::Principal>) -> Result<wit::Outcome, wit::Problem> {
        self.run(Operation::Verify, event, &exchange, principal)
    }

    fn seal_text(
        &self,
        event: String,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::TextOutcome, wit::Problem> {
        self.run_text(Operation::Seal, event, &exchange, principal)
    }

    fn open_text(
        &self,
        event: String,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::TextOutcome, wit::Problem> {
        self.run_text(Operation::Open, event, &exchange, principal)
    }

    fn sign_text(
        &self,
        event: String,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::TextOutcome, wit::Problem> {
        self.run_text(Operation::Sign, event, &exchange, principal)
    }

    fn verify_text(
        &self,
        event: String,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::TextOutcome, wit::Problem> {
        self.run_text(Operation::Verify, event, &exchange, principal)
    }

    fn seal_many(
        &self,
        events: Vec<String>,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::BatchOutcome, wit::Problem> {
        self.run_many(Operation::Seal, events, exchange, principal)
    }

    fn open_many(
        &self,
        events: Vec<String>,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::BatchOutcome, wit::Problem> {
        self.run_many(Operation::Open, events, exchange, principal)
    }

    fn sign_many(
        &self,
        events: Vec<String>,
        mut exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::BatchOutcome, wit::Problem> {
        // One id on many events would make receivers refuse all but the first as replays.
        let body_headers = exchange.response.as_mut().unwrap_or(&mut exchange.headers);
        body_headers.retain(|(name, _)| !name.eq_ignore_ascii_case(eventseal_core::WEBHOOK_ID_HEADER));
        self.run_many(Operation::Sign, events, exchange, principal)
    }
}

/// The most events one batch call takes: bounds what one call holds in the component.
const MAX_BATCH: usize = 1024;

impl Sealer {
    /// Loads the policy, and the keyring from the argument in place of the policy's key source.
    fn new(policy: &str, keyring: &str) -> Result<Self, wit::ConfigError> {
        let policy = Policy::from_json(policy).map_err(|e| config_error(&e, false))?;
        if policy.vault_transit.is_some() {
            // Refused here rather than with a 503 on every call: no call could ever succeed.
            return Err(wit::ConfigError {
                document: wit::ConfigDocument::Policy,
                at: "/keys/vault_transit".to_owned(),
                message: "configuration /keys/vault_transit: the component has no KMS client; \
                          seal with keys from the keyring argument (the Envoy filter seals with a KMS)"
                    .to_owned(),
            });
        }
        let inline = matches!(policy.keys, KeySource::Inline(_));
        let keyring = match (inline, keyring.trim().is_empty()) {
            (true, true) => policy.load_keyring(|_| None),
            (true, false) => {
                return Err(wit::ConfigError {
                    document: wit::ConfigDocument::Policy,
                    at: "/keys".to_owned(),
                    message: "configuration /keys: expected {\"env\": ...} when a keyring is passed (the policy has inline keys)"
                        .to_owned(),
                });
            }
            (false, true) => {
                return Err(wit::ConfigError {
                    document: wit::ConfigDocument::Keyring,
                    at: String::new(),
                    message: "keyring: expected a JWK Set (the policy's keys come from the keyring argument)".to_owned(),
                });
            }
            (false, false) => policy.load_keyring(|_| Some(keyring.to_owned())),
        }
        .map_err(|e| config_error(&e, inline))?;
        // Before anything is sealed. The first sealer of the instance installs it; for the
        // later ones the same function is in place already.
        #[cfg(all(target_os = "wasi", target_env = "p2"))]
        let _ = eventseal_core::install_random_source(host_random);
        Ok(Self {
            replay: RefCell::new(MemoryReplayCache::new(policy.replay_capacity)),
            engine: Engine::new(policy, keyring),
        })
    }

    /// Routes the exchange, admits the principal, checks the rule fits the operation, decides.
    fn run(
        &self,
        operation: Operation,
        event: Vec<u8>,
        exchange: &wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::Outcome, wit::Problem> {
        let principal = principal.map(principal_from).transpose()?;
        let (direction, body_headers) = match &exchange.response {
            None => (Direction::Request, &exchange.headers),
            Some(headers) => (Direction::Response, headers),
        };
        let request = RequestHead {
            method: &exchange.method,
            path: &exchange.path,
            authority: &exchange.authority,
            headers: &exchange.headers,
            subject: None,
        };
        let rule = self
            .engine
            .route(&request)
            .map(|id| self.engine.rule(id))
            .ok_or_else(|| no_rule("no rule of the policy matches this exchange".to_owned()))?;
        // The filter admits producers when the request headers arrive, whatever the rule
        // does to bodies: no body of a refused exchange is processed, in either direction.
        self.engine.admit(rule, principal.as_ref()).map_err(|p| problem(&p))?;
        if !rule.applies_to(direction) {
            return Err(no_rule(format!(
                "rule {:?} does not apply to {} bodies",
                rule.name,
                direction.as_str()
            )));
        }
        if !rule.carries(operation) {
            return Err(no_rule(format!("rule {:?} does not {}", rule.name, operation.as_str())));
        }
        let job = BodyJob {
            rule,
            direction,
            request,
            headers: body_headers,
            principal: principal.as_ref(),
            body: &event,
            now: now(),
        };
        let decision = self.engine.decide(&job, &mut *self.replay.borrow_mut());
        match decision {
            Decision::Forward { body, set_headers, report } => Ok(outcome(body.unwrap_or(event), set_headers, report)),
            Decision::Refuse { problem: p, .. } => Err(problem(&p)),
        }
    }

    /// [`Sealer::run`] on the event's UTF-8 bytes: the text form is the byte form, moved
    /// without a copy either way.
    fn run_text(
        &self,
        operation: Operation,
        event: String,
        exchange: &wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::TextOutcome, wit::Problem> {
        let outcome = self.run(operation, event.into_bytes(), exchange, principal)?;
        // Core returns UTF-8 for UTF-8 input (it splices ASCII envelopes, plaintexts it
        // checked are UTF-8 JSON, and JSON masks), so this refusal is for a core bug only.
        let event = String::from_utf8(outcome.event).map_err(|_| wit::Problem {
            kind: wit::ProblemKind::SealFailed,
            status: 500,
            title: ProblemKind::SealFailed.title().to_owned(),
            detail: format!("the event eventseal would {} is not UTF-8 text", operation.as_str()),
            retry: None,
        })?;
        Ok(wit::TextOutcome {
            event,
            headers: outcome.headers,
            fields: outcome.fields,
            verified: outcome.verified,
            signed: outcome.signed,
            tolerated: outcome.tolerated,
        })
    }

    /// [`Sealer::run_text`] on each event of a batch, each decided on its own.
    fn run_many(
        &self,
        operation: Operation,
        events: Vec<String>,
        exchange: wit::Exchange,
        principal: Option<wit::Principal>,
    ) -> Result<wit::BatchOutcome, wit::Problem> {
        if events.len() > MAX_BATCH {
            return Err(wit::Problem {
                kind: wit::ProblemKind::PayloadTooLarge,
                status: 413,
                title: ProblemKind::PayloadTooLarge.title().to_owned(),
                detail: format!("a batch holds at most {MAX_BATCH} events, this one {}", events.len()),
                retry: None,
            });
        }
        let mut batch = wit::BatchOutcome {
            events: Vec::with_capacity(events.len()),
            header_names: Vec::new(),
            header_values: Vec::new(),
            refused: Vec::new(),
        };
        let mut headers = Vec::with_capacity(events.len());
        for (index, event) in (0u32..).zip(events) {
            match self.run_text(operation, event, &exchange, principal.clone()) {
                Ok(outcome) => {
                    batch.events.push(outcome.event);
                    headers.push(outcome.headers);
                }
                Err(problem) => {
                    batch.events.push(String::new());
                    headers.push(Vec::new());
                    batch.refused.push(wit::BatchRefusal { index, problem });
                }
            }
        }
        // The columns: every name any event got, in the order first seen (one operation
        // sets the same names on every event, unless a tolerated failure skipped some).
        for (name, _) in headers.iter().flatten() {
            if !batch.header_names.contains(name) {
                batch.header_names.push(name.clone());
            }
        }
        for event_headers in headers {
            for name in &batch.header_names {
                let value = event_headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                batch.header_values.push(value.unwrap_or_default());
            }
        }
        Ok(batch)
    }
}

/// Core's randomness from the host's generator, in one `wasi:random/random.get-random-bytes`
/// call per request: core asks for 384 bytes at a time (its nonce pool, 32 nonces), which
/// getrandom on this target fetches 8 bytes a call with `get-random-u64` (48 or 49 calls,
/// as the buffer is aligned), each a call into the host (into JavaScript under Node).
/// Every call asks the host afresh: no generator is kept in the guest. WASI gives no way to
/// report a failure: a host that cannot produce random bytes traps, which ends the call
/// with nothing sealed.
#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn host_random(dest: &mut [u8]) -> Result<(), eventseal_core::RandomUnavailable> {
    let len = u64::try_from(dest.len()).map_err(|_| eventseal_core::RandomUnavailable)?;
    let bytes = wasip2::random::random::get_random_bytes(len);
    // WASI promises exactly `len` bytes; anything else is refused, never padded.
    if bytes.len() != dest.len() {
        return Err(eventseal_core::RandomUnavailable);
    }
    dest.copy_from_slice(&bytes);
    Ok(())
}

/// Unix seconds from the host's WASI wall clock (0 if it reads before 1970).
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn principal_from(principal: wit::Principal) -> Result<Principal, wit::Problem> {
    let claims = if principal.claims.trim().is_empty() {
        Value::Null
    } else {
        match serde_json::from_str::<Value>(&principal.claims) {
            Ok(claims @ Value::Object(_)) => claims,
            // The claims are the caller's own data: say what is wrong, never echo them.
            _ => {
                return Err(wit::Problem {
                    kind: wit::ProblemKind::InvalidClaims,
                    status: 500,
                    title: "Principal claims are malformed".to_owned(),
                    detail: "principal claims must be empty or a JSON object".to_owned(),
                    retry: None,
                });
            }
        }
    };
    Ok(Principal { id: principal.id, claims })
}

fn no_rule(detail: String) -> wit::Problem {
    wit::Problem {
        kind: wit::ProblemKind::NoRule,
        status: 500,
        title: "No rule applies".to_owned(),
        detail,
        retry: None,
    }
}

fn problem(p: &Problem) -> wit::Problem {
    wit::Problem {
        kind: problem_kind(p.kind),
        status: p.status,
        title: p.kind.title().to_owned(),
        detail: p.detail.clone(),
        retry: p.retry_after,
    }
}

fn problem_kind(kind: ProblemKind) -> wit::ProblemKind {
    use wit::ProblemKind as W;
    match kind {
        ProblemKind::MalformedJson => W::MalformedJson,
        ProblemKind::JsonTooDeep => W::JsonTooDeep,
        ProblemKind::UnsupportedMediaType => W::UnsupportedMediaType,
        ProblemKind::PayloadTooLarge => W::PayloadTooLarge,
        ProblemKind::FieldMissing => W::FieldMissing,
        ProblemKind::ContextMissing => W::ContextMissing,
        ProblemKind::SignatureMissing => W::SignatureMissing,
        ProblemKind::SignatureMalformed => W::SignatureMalformed,
        ProblemKind::SignatureExpired => W::SignatureExpired,
        ProblemKind::SignatureInvalid => W::SignatureInvalid,
        ProblemKind::SignatureReplayed => W::SignatureReplayed,
        ProblemKind::ProducerForbidden => W::ProducerForbidden,
        ProblemKind::ReaderForbidden => W::ReaderForbidden,
        ProblemKind::SealedFieldRejected => W::SealedFieldRejected,
        ProblemKind::SealFailed => W::SealFailed,
        ProblemKind::SignFailed => W::SignFailed,
        ProblemKind::KmsUnavailable => W::KmsUnavailable,
        ProblemKind::ReplayCacheFull => W::ReplayCacheFull,
        // A kind newer than this WIT version: refuse as an internal failure; the status
        // and detail still come from core. The test below pins every known kind.
        _ => W::SealFailed,
    }
}

fn field_result(result: FieldResult) -> wit::FieldResult {
    use wit::FieldResult as W;
    match result {
        FieldResult::Sealed => W::Sealed,
        FieldResult::Opened => W::Opened,
        FieldResult::Absent => W::Absent,
        FieldResult::Withheld => W::Withheld,
        FieldResult::Masked => W::Masked,
        // A result newer than this WIT version: the field did not become plaintext here.
        _ => W::Withheld,
    }
}

fn outcome(event: Vec<u8>, headers: Vec<(String, String)>, report: Report) -> wit::Outcome {
    wit::Outcome {
        event,
        headers,
        fields: report.fields.into_iter().map(field_outcome).collect(),
        verified: report.verified_by.map(|kid| kid.as_str().to_owned()),
        signed: report.signed,
        tolerated: report.forwarded_despite.map(problem_kind),
    }
}

fn field_outcome(field: FieldOutcome) -> wit::FieldOutcome {
    wit::FieldOutcome {
        pointer: field.pointer,
        kid: field.kid.map(|kid| kid.as_str().to_owned()),
        result: field_result(field.result),
    }
}

/// A configuration error as the WIT reports it; `inline`: the keyring is part of the policy.
fn config_error(error: &ConfigError, inline: bool) -> wit::ConfigError {
    let message = error.to_string();
    let (document, at) = match error {
        ConfigError::Invalid { at, .. } => (wit::ConfigDocument::Policy, at.clone()),
        ConfigError::Keyring(e) => {
            let document = if inline {
                wit::ConfigDocument::Policy
            } else {
                wit::ConfigDocument::Keyring
            };
            let at = match e {
                KeyringError::Invalid { at, .. } => at.clone(),
                _ => String::new(),
            };
            (document, at)
        }
        _ => (wit::ConfigDocument::Policy, String::new()),
    };
    wit::ConfigError { document, at, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEAL_KEY: &str =
        r#"{"kty":"oct","kid":"k1","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}"#;
    const SIGN_KEY: &str = r#"{"kty":"oct","kid":"h1","alg":"HS256","k":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","status":"primary"}"#;

    fn keyring() -> String {
        format!(r#"{{"keys":[{SEAL_KEY},{SIGN_KEY}]}}"#)
    }

    const POLICY: &str = r#"{"rules": [
        {"name": "publish", "match": {"path": "/orders"}, "context": {"type": {"literal": "order"}},
         "seal": {"fields": ["/card"]}, "sign": true},
        {"name": "consume", "match": {"path": "/inbox"}, "context": {"type": {"literal": "order"}},
         "verify": true, "open": {"fields": ["/card"], "readers": ["billing"], "denied": "mask"}},
        {"name": "replies", "match": {"path": "/replies"}, "apply_to": "response", "context": {"type": {"literal": "order"}},
         "open": {"fields": ["/card"], "readers": [{"claim": "/roles", "contains": "auditor"}]}},
        {"name": "gate", "match": {"path": "/gate"}, "producers": ["shop"], "sign": true},
        {"name": "door", "match": {"path": "/door"}, "producers": ["shop"]}
    ]}"#;

    fn exchange(path: &str, extra: &[(&str, &str)]) -> wit::Exchange {
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(extra.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        wit::Exchange {
            method: "POST".to_owned(),
            path: path.to_owned(),
            authority: "events.example.org".to_owned(),
            headers,
            response: None,
        }
    }

    fn principal(id: &str, claims: &str) -> Option<wit::Principal> {
        Some(wit::Principal {
            id: id.to_owned(),
            claims: claims.to_owned(),
        })
    }

    fn sealer() -> Sealer {
        Sealer::new(POLICY, &keyring()).expect("the test policy loads")
    }

    #[test]
    fn seal_then_verify_and_open_round_trips() {
        let sealer = sealer();
        let event = br#"{"id":"1","card":{"number":"4111"}}"#.to_vec();
        let sealed = sealer.run(Operation::Seal, event, &exchange("/orders", &[]), None).unwrap();
        let doc: Value = serde_json::from_slice(&sealed.event).unwrap();
        assert!(doc["card"].as_str().unwrap().split('.').count() == 5, "a JWE compact string");
        assert!(sealed.signed && sealed.headers.iter().any(|(n, _)| n == "webhook-signature"));
        assert!(matches!(sealed.fields[0].result, wit::FieldResult::Sealed));

        let signature: Vec<(&str, &str)> = sealed.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let inbox = exchange("/inbox", &signature);
        let opened = sealer
            .run(Operation::Open, sealed.event.clone(), &inbox, principal("billing", ""))
            .unwrap();
        assert_eq!(opened.event, br#"{"id":"1","card":{"number":"4111"}}"#);
        assert_eq!(opened.verified.as_deref(), Some("h1"));

        let replayed = sealer
            .run(Operation::Verify, sealed.event, &inbox, principal("billing", ""))
            .unwrap_err();
        assert!(matches!(replayed.kind, wit::ProblemKind::SignatureReplayed) && replayed.status == 401);
    }

    #[test]
    fn readers_are_decided_by_the_policy() {
        let sealer = sealer();
        let sealed = sealer
            .run(Operation::Seal, br#"{"card":"4111"}"#.to_vec(), &exchange("/orders", &[]), None)
            .unwrap();
        let mut reply = exchange("/replies", &[]);
        reply.response = Some(vec![("content-type".to_owned(), "application/json".to_owned())]);
        let auditor = sealer
            .run(
                Operation::Open,
                sealed.event.clone(),
                &reply,
                principal("x", r#"{"roles":["auditor"]}"#),
            )
            .unwrap();
        assert_eq!(auditor.event, br#"{"card":"4111"}"#);
        let other = sealer
            .run(Operation::Open, sealed.event.clone(), &reply, principal("x", ""))
            .unwrap();
        assert_eq!(other.event, sealed.event, "left sealed by default");
        assert!(matches!(other.fields[0].result, wit::FieldResult::Withheld));
    }

    #[test]
    fn the_text_form_runs_the_byte_form() {
        let sealer = sealer();
        let event = r#"{"id":"1","card":{"number":"4111"}}"#;
        let sealed = sealer
            .run_text(Operation::Seal, event.to_owned(), &exchange("/orders", &[]), None)
            .unwrap();
        assert!(matches!(sealed.fields[0].result, wit::FieldResult::Sealed) && sealed.signed);
        let mut reply = exchange("/replies", &[]);
        reply.response = Some(vec![("content-type".to_owned(), "application/json".to_owned())]);
        let auditor = principal("x", r#"{"roles":["auditor"]}"#);
        let by_bytes = sealer
            .run(Operation::Open, sealed.event.clone().into_bytes(), &reply, auditor.clone())
            .unwrap();
        let by_text = sealer.run_text(Operation::Open, sealed.event, &reply, auditor).unwrap();
        assert_eq!((by_text.event.as_str(), by_bytes.event.as_slice()), (event, event.as_bytes()));
    }

    #[test]
    fn operations_fail_closed_when_the_policy_does_not_configure_them() {
        let sealer = sealer();
        let event = br#"{"card":"4111"}"#.to_vec();
        for (operation, path, detail) in [
            (Operation::Seal, "/nowhere", "no rule of the policy matches this exchange"),
            (Operation::Seal, "/inbox", "rule \"consume\" does not seal"),
            (Operation::Verify, "/orders", "rule \"publish\" does not verify"),
            (Operation::Open, "/replies", "rule \"replies\" does not apply to request bodies"),
        ] {
            let err = sealer.run(operation, event.clone(), &exchange(path, &[]), None).unwrap_err();
            assert!(matches!(err.kind, wit::ProblemKind::NoRule), "{operation:?} {path}");
            assert_eq!((err.status, err.detail.as_str()), (500, detail));
        }
    }

    #[test]
    fn producers_are_admitted_before_anything_else() {
        let sealer = sealer();
        let err = sealer
            .run(Operation::Sign, b"{}".to_vec(), &exchange("/gate", &[]), principal("intruder", ""))
            .unwrap_err();
        assert!(matches!(err.kind, wit::ProblemKind::ProducerForbidden) && err.status == 403);
        assert!(
            sealer
                .run(Operation::Sign, b"{}".to_vec(), &exchange("/gate", &[]), principal("shop", ""))
                .is_ok()
        );
        // A rule without body actions still admits producers, as the filter does at the
        // request headers; an admitted caller then learns that nothing would be sealed.
        let err = sealer
            .run(Operation::Seal, b"{}".to_vec(), &exchange("/door", &[]), principal("intruder", ""))
            .unwrap_err();
        assert!(matches!(err.kind, wit::ProblemKind::ProducerForbidden));
        let err = sealer
            .run(Operation::Seal, b"{}".to_vec(), &exchange("/door", &[]), principal("shop", ""))
            .unwrap_err();
        assert!(matches!(err.kind, wit::ProblemKind::NoRule));
    }

    #[test]
    fn refusals_carry_the_filter_status_and_no_value() {
        let sealer = sealer();
        let tampered = br#"{"card":"eyJhbGciOiJkaXIifQ..AAAA.BBBB.CCCC"}"#.to_vec();
        let err = sealer
            .run(Operation::Open, tampered, &exchange("/inbox", &[]), principal("billing", ""))
            .unwrap_err();
        assert!(matches!(err.kind, wit::ProblemKind::SignatureMissing) && err.status == 401);
        let err = sealer
            .run(Operation::Seal, b"{\"card\":".to_vec(), &exchange("/orders", &[]), None)
            .unwrap_err();
        assert!(matches!(err.kind, wit::ProblemKind::MalformedJson) && err.status == 400);
        let err = sealer
            .run(
                Operation::Seal,
                br#"{"card":"4111"}"#.to_vec(),
                &exchange("/orders", &[]),
                principal("p", "[1]"),
            )
            .unwrap_err();
        assert!(matches!(err.kind, wit::ProblemKind::InvalidClaims) && !err.detail.contains("[1]"));
    }

    #[test]
    fn configuration_errors_name_document_and_location() {
        let err = Sealer::new(r#"{"rules": [{"name": "r", "seal": {"fields": ["x"]}}]}"#, &keyring())
            .err()
            .unwrap();
        assert!(matches!(err.document, wit::ConfigDocument::Policy));
        assert_eq!(err.at, "/rules/0/seal/fields/0");
        let err = Sealer::new(POLICY, r#"{"keys":[{"kty":"oct"}]}"#).err().unwrap();
        assert!(matches!(err.document, wit::ConfigDocument::Keyring));
        assert_eq!(err.at, "/keys/0/kid");
        let err = Sealer::new(POLICY, "").err().unwrap();
        assert!(matches!(err.document, wit::ConfigDocument::Keyring));
        let err = Sealer::new(POLICY, &format!(r#"{{"keys":[{SEAL_KEY}]}}"#)).err().unwrap();
        assert_eq!(err.at, "/rules/0/sign", "a signing rule needs an HS256 primary");
        let err = Sealer::new(&keyring(), &keyring()).err().unwrap();
        assert!(!err.message.contains("AAECAwQF"), "no key material in errors: {}", err.message);
    }

    #[test]
    fn a_kms_key_source_is_refused_at_creation() {
        for keys in [
            r#"{"vault_transit": {"cluster": "bao", "key": "orders", "token_env": "BAO_TOKEN"}}"#,
            r#"{"env": "K", "vault_transit": {"cluster": "bao", "key": "orders", "token_env": "BAO_TOKEN"}}"#,
        ] {
            let policy = format!(r#"{{"keys": {keys}, "rules": [{{"name": "s", "seal": {{"fields": ["/a"]}}}}]}}"#);
            let err = Sealer::new(&policy, &keyring()).err().expect("refused");
            assert_eq!(err.at, "/keys/vault_transit", "{}", err.message);
            assert!(matches!(err.document, wit::ConfigDocument::Policy));
        }
    }

    #[test]
    fn inline_keys_and_a_keyring_argument_exclude_each_other() {
        let inline = format!(
            r#"{{"keys": {{"inline": {}}}, "rules": [{{"name": "s", "seal": {{"fields": ["/a"]}}}}]}}"#,
            keyring()
        );
        assert!(Sealer::new(&inline, "").is_ok());
        let err = Sealer::new(&inline, &keyring()).err().unwrap();
        assert_eq!(
            (err.at.as_str(), matches!(err.document, wit::ConfigDocument::Policy)),
            ("/keys", true)
        );
    }

    #[test]
    fn every_core_kind_keeps_its_slug() {
        for kind in ProblemKind::ALL {
            // The WIT case `malformed-json` is the Rust variant `MalformedJson`.
            let camel: String = kind
                .slug()
                .split('-')
                .map(|word| word[..1].to_ascii_uppercase() + &word[1..])
                .collect();
            assert_eq!(format!("{:?}", problem_kind(kind)), format!("ProblemKind::{camel}"));
        }
    }
}
