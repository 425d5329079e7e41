//! The decisions for one exchange: which rule applies, who may send, and what happens to
//! each body. Hosts (the proxy-wasm filter, the component, the CLI) only move bytes.

use crate::datakey::{DataKey, DataKeyLookup, NoDataKeys, WrappedKey};
use crate::document::{Edit, FieldOutcome, OpenError, SealError, SealingKey, open_spans, seal_spans, withhold_spans};
use crate::envelope::{Context, Rejection, wrapped_key_of};
use crate::event::{Event, splice};
use crate::json::DocumentError;
use crate::keyring::{KeyId, KeyStatus, Keyring};
use crate::pointer::FieldPath;
use crate::policy::{ContextSource, Denied, FieldSet, Grant, Match, OnError, OpenGroup, PathMatch, Policy, Rule};
use crate::problem::{Direction, Problem, ProblemKind};
use crate::replay::{Admission, DEFAULT_REPLAY_CAPACITY, ReplayBucket, ReplaySlot, bucket_count};
use crate::webhook::{self, VerifyError, WebhookHeaders};
use serde_json::Value;
use std::collections::HashMap;

/// Who is calling: an id (SPIFFE id, JWT subject, trusted header) and JWT claims if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The identity that producer and reader globs are matched against.
    pub id: String,
    /// JWT claims (an object), or `Null`.
    pub claims: Value,
}

/// The request line and headers a rule is matched against. Header names are lower case.
/// A NATS message has a `subject` and its headers, and nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query string included.
    pub path: &'a str,
    /// `:authority`.
    pub authority: &'a str,
    /// Request headers.
    pub headers: &'a [(String, String)],
    /// The NATS subject (NATS messages only).
    pub subject: Option<&'a str>,
}

impl<'a> RequestHead<'a> {
    /// A NATS message's subject and headers, as rules match them.
    pub fn nats(subject: &'a str, headers: &'a [(String, String)]) -> Self {
        Self {
            subject: Some(subject),
            headers,
            ..Self::default()
        }
    }

    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(self.headers, name)
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Remembers accepted signature ids until they expire, to refuse replays.
pub trait ReplayCache {
    /// Records `id` until `expires_at` (Unix seconds), if it is new and there is room
    /// (see [`crate::replay`]).
    fn admit(&mut self, id: &str, expires_at: i64, now: i64) -> Admission;
}

/// A replay cache in process memory, for single-process hosts and tests, bounded as
/// [`crate::replay`] says: buckets are allocated as ids arrive, at most `bucket_count`.
#[derive(Debug)]
pub struct MemoryReplayCache {
    buckets: HashMap<usize, ReplayBucket>,
    bucket_count: usize,
}

impl MemoryReplayCache {
    /// A cache of at most `capacity` ids (rounded up to whole buckets).
    pub fn new(capacity: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            bucket_count: bucket_count(capacity),
        }
    }

    /// Ids held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.buckets.values().map(ReplayBucket::len).sum()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl ReplayCache for MemoryReplayCache {
    fn admit(&mut self, id: &str, expires_at: i64, now: i64) -> Admission {
        let slot = ReplaySlot::of(id, self.bucket_count);
        let bucket = self.buckets.entry(slot.bucket).or_default();
        let admission = bucket.admit(slot, expires_at, now);
        if bucket.is_empty() {
            self.buckets.remove(&slot.bucket);
        }
        admission
    }
}

/// One body to decide on.
pub struct BodyJob<'a> {
    /// The rule that matched the request.
    pub rule: &'a Rule,
    /// Request or response body.
    pub direction: Direction,
    /// The request (context headers come from it in both directions).
    pub request: RequestHead<'a>,
    /// The headers travelling with this body (request or response headers).
    pub headers: &'a [(String, String)],
    /// The caller, if the policy identifies one.
    pub principal: Option<&'a Principal>,
    /// The whole body.
    pub body: &'a [u8],
    /// Now, in Unix seconds, from the host clock.
    pub now: i64,
}

/// What was done, for metrics and the audit trail. Holds no values and no secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per-field outcomes.
    pub fields: Vec<FieldOutcome>,
    /// The key whose signature verified.
    pub verified_by: Option<KeyId>,
    /// Whether that key is not the primary signing key: the sender still signs with a key
    /// being rotated out.
    pub verified_by_non_primary: bool,
    /// The key of each field opened under a `retired` key, one entry per field: these
    /// envelopes should be resealed (FORMAT.md §5.1, `eventseal reseal`).
    pub retired_opens: Vec<KeyId>,
    /// Whether the body was signed.
    pub signed: bool,
    /// `forward_unchanged` let a failure through; this is why.
    pub forwarded_despite: Option<ProblemKind>,
    /// The event's id: CloudEvents `id` in the body, else the `ce-id` header.
    pub event_id: Option<String>,
    /// The event's type: CloudEvents `type` in the body, else the `ce-type` header.
    pub event_type: Option<String>,
}

/// The decision on one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send it on.
    Forward {
        /// The new body, or `None` to forward the original bytes.
        body: Option<Vec<u8>>,
        /// Headers to set (replacing any with the same name).
        set_headers: Vec<(String, String)>,
        /// What was done.
        report: Report,
    },
    /// Answer with this problem instead; nothing is forwarded.
    Refuse {
        /// The refusal.
        problem: Problem,
        /// What was done before the refusal.
        report: Report,
    },
}

/// The data keys a host supplies to [`Engine::decide_with`] when the policy has a KMS key source.
#[derive(Clone, Copy)]
pub struct KmsKeys<'a> {
    /// The data key that seals, leased from the cache for [`KmsNeeds::seals`] values.
    pub seal: Option<&'a DataKey>,
    /// The unwrapped data keys, for opening.
    pub open: &'a dyn DataKeyLookup,
}

impl KmsKeys<'_> {
    /// No KMS keys: what [`Engine::decide`] uses.
    pub fn none() -> Self {
        KmsKeys {
            seal: None,
            open: &NoDataKeys,
        }
    }
}

/// What one body needs from the KMS before it can be decided (see [`Engine::kms_needs`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsNeeds {
    /// How many values it seals with a KMS data key (0: no data key needed).
    pub seals: u64,
    /// The wrapped data keys of the envelopes it may open, each once.
    pub unwrap: Vec<WrappedKey>,
}

/// A body to forward (`None`: the original bytes) and the headers to set on it.
type Forwarded = (Option<Vec<u8>>, Vec<(String, String)>);

/// Names one rule of an engine's policy, as [`Engine::route`] found it: hosts keep this
/// between the callbacks of one exchange instead of a reference or an index of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleId(usize);

/// A policy with its keyring: the only thing a host needs to decide.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    keyring: Keyring,
}

impl Engine {
    /// Pairs a policy with the keyring it was validated against.
    pub fn new(policy: Policy, keyring: Keyring) -> Self {
        Self { policy, keyring }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The first rule whose match fits the request, if any.
    pub fn route(&self, request: &RequestHead<'_>) -> Option<RuleId> {
        self.policy.rules.iter().position(|rule| matches(rule, request)).map(RuleId)
    }

    /// Whether an HTTP request to `path` could match any rule: the one part of a match that
    /// needs nothing else of the request. Most requests a filter sees match no rule, and
    /// for them it need not read the other headers at all.
    pub fn may_route(&self, path: &str) -> bool {
        self.policy
            .rules
            .iter()
            .any(|rule| rule.matcher.subject.is_none() && path_fits(&rule.matcher, path))
    }

    /// The first rule whose match fits a message travelling in `direction` and that applies
    /// to it: on NATS, publishes and deliveries are matched each on their own subject.
    pub fn route_in(&self, request: &RequestHead<'_>, direction: Direction) -> Option<RuleId> {
        self.policy
            .rules
            .iter()
            .position(|rule| rule.applies_to(direction) && matches(rule, request))
            .map(RuleId)
    }

    /// The rule [`Engine::route`] named. An id is only meaningful to the engine that gave it.
    pub fn rule(&self, id: RuleId) -> &Rule {
        &self.policy.rules[id.0]
    }

    /// Whether the principal may send on this rule's route (403 before anything is forwarded).
    ///
    /// # Errors
    /// A [`Problem`] of kind [`ProblemKind::ProducerForbidden`].
    pub fn admit(&self, rule: &Rule, principal: Option<&Principal>) -> Result<(), Problem> {
        match &rule.producers {
            Some(grants) if !granted(grants, principal) => Err(Problem::new(
                ProblemKind::ProducerForbidden,
                Direction::Request,
                format!("principal {} may not send on rule {:?}", shown(principal), rule.name),
            )),
            _ => Ok(()),
        }
    }

    /// Decides on one whole body: verify, seal, open, sign, in that order, all or nothing.
    pub fn decide(&self, job: &BodyJob<'_>, replay: &mut dyn ReplayCache) -> Decision {
        self.decide_with(job, replay, KmsKeys::none())
    }

    /// What this body needs from the KMS key source of the policy: how many fields it seals,
    /// and which wrapped data keys the fields it may open carry. Empty without a KMS, and for
    /// bodies that [`Engine::decide_with`] will refuse anyway. Changes nothing (no replay
    /// cache), so a host can ask, pause the stream for the KMS, then decide.
    pub fn kms_needs(&self, job: &BodyJob<'_>) -> KmsNeeds {
        let mut needs = KmsNeeds::default();
        let Some(transit) = &self.policy.vault_transit else { return needs };
        let rule = job.rule;
        if !rule.needs_json() || job.body.len() > self.policy.limits.max_body_bytes {
            return needs;
        }
        let Ok(event) = Event::parse(job.body, &self.policy.limits) else {
            return needs;
        };
        // A body that cannot be read on the way to a field needs nothing: the decision refuses it.
        if let Some(seal) = &rule.seal {
            let Ok((spans, _)) = event.select(&seal.fields) else { return needs };
            needs.seals = u64::try_from(spans.len()).unwrap_or(u64::MAX);
        }
        let Ok(wrapped) = wrapped_keys(rule, job.principal, &event, &transit.source()) else {
            return KmsNeeds::default();
        };
        // Over the limit the decision refuses the body (`too_many_unwraps`): ask for nothing.
        if wrapped.len() <= transit.limits.max_unwraps_per_body {
            needs.unwrap = wrapped;
        }
        needs
    }

    /// The refusal of a body that carries more distinct wrapped data keys to open than one
    /// body may use: each may cost a KMS call, and anyone who can send envelopes chooses
    /// them (FORMAT.md §11). Refused whether or not they are cached, so the outcome does not
    /// depend on what this worker happens to hold.
    fn too_many_unwraps(&self, job: &BodyJob<'_>, event: &Event<'_>) -> Result<(), Problem> {
        let Some(transit) = self.policy.vault_transit.as_ref() else {
            return Ok(());
        };
        let source = transit.source();
        let count = wrapped_keys(job.rule, job.principal, event, &source)
            .map_err(|e| Problem::document(&e, job.direction))?
            .len();
        let limit = transit.limits.max_unwraps_per_body;
        if count <= limit {
            return Ok(());
        }
        let detail = format!(
            "the event carries {count} data keys of {} to unwrap; at most {limit} are unwrapped per body",
            source.as_str()
        );
        Err(Problem::new(ProblemKind::SealedFieldRejected, job.direction, detail))
    }

    /// Decides on one whole body like [`Engine::decide`], sealing with the KMS data key in
    /// `keys` and opening with its unwrapped keys. A data key the host did not supply gives
    /// `503 kms-unavailable`, never a plaintext or half-sealed body.
    pub fn decide_with(&self, job: &BodyJob<'_>, replay: &mut dyn ReplayCache, keys: KmsKeys<'_>) -> Decision {
        let mut report = Report::default();
        match self.apply(job, replay, keys, &mut report) {
            Ok((body, set_headers)) => Decision::Forward { body, set_headers, report },
            Err(problem)
                if job.rule.on_error == OnError::ForwardUnchanged
                    && job.rule.seal.is_none()
                    && problem.kind != ProblemKind::ReaderForbidden =>
            {
                report.fields.clear();
                report.forwarded_despite = Some(problem.kind);
                Decision::Forward {
                    body: None,
                    set_headers: Vec::new(),
                    report,
                }
            }
            Err(problem) => Decision::Refuse { problem, report },
        }
    }

    /// The stages in order: verify, then the JSON stages (seal, open), then sign.
    fn apply(&self, job: &BodyJob<'_>, replay: &mut dyn ReplayCache, keys: KmsKeys<'_>, report: &mut Report) -> Result<Forwarded, Problem> {
        let limits = &self.policy.limits;
        report.event_id = header(job.headers, "ce-id").map(str::to_owned);
        report.event_type = header(job.headers, "ce-type").map(str::to_owned);
        if job.body.len() > limits.max_body_bytes {
            let too_large = DocumentError::TooLarge {
                limit: limits.max_body_bytes,
            };
            return Err(Problem::document(&too_large, job.direction));
        }
        if job.rule.verify {
            let (kid, status) = self.verify_stage(job, replay)?;
            report.verified_by = Some(kid);
            report.verified_by_non_primary = status != KeyStatus::Primary;
        }
        let new_body = if job.rule.needs_json() && !job.body.iter().all(u8::is_ascii_whitespace) {
            self.field_stages(job, keys, report)?
        } else {
            None
        };
        report.retired_opens = report
            .fields
            .iter()
            .filter(|f| f.result == crate::FieldResult::Opened)
            .filter_map(|f| f.kid.as_ref())
            .filter(|kid| self.keyring.get(kid.as_str()).is_some_and(|k| k.status() == KeyStatus::Retired))
            .cloned()
            .collect();
        let mut set_headers = Vec::new();
        if job.rule.sign {
            set_headers = self.sign_stage(job, new_body.as_deref().unwrap_or(job.body))?;
            report.signed = true;
        }
        Ok((new_body, set_headers))
    }

    /// Verifies the Standard Webhooks signature and records its id against replays; the key
    /// that verified, and its status.
    fn verify_stage(&self, job: &BodyJob<'_>, replay: &mut dyn ReplayCache) -> Result<(KeyId, KeyStatus), Problem> {
        let headers = WebhookHeaders {
            id: header(job.headers, webhook::ID_HEADER),
            timestamp: header(job.headers, webhook::TIMESTAMP_HEADER),
            signature: header(job.headers, webhook::SIGNATURE_HEADER),
        };
        let tolerance = self.policy.tolerance_secs;
        let verified =
            webhook::verify(&self.keyring, headers, job.body, job.now, tolerance).map_err(|e| Problem::verify(&e, job.direction))?;
        let expires_at = verified.timestamp.saturating_add(i64::try_from(tolerance).unwrap_or(i64::MAX));
        match replay.admit(verified.id, expires_at, job.now) {
            Admission::New => {}
            Admission::Replayed => return Err(Problem::verify(&VerifyError::Replayed, job.direction)),
            Admission::Full { retry_after } => return Err(Problem::replay_cache_full(job.direction, retry_after)),
        }
        Ok((verified.kid.clone(), verified.status))
    }

    /// Reads the event once, then seals and opens its fields: the new body, or `None` when
    /// no field changed.
    fn field_stages(&self, job: &BodyJob<'_>, keys: KmsKeys<'_>, report: &mut Report) -> Result<Option<Vec<u8>>, Problem> {
        let direction = job.direction;
        // NATS messages rarely carry a content type: only one that is there must be JSON.
        let content_type = header(job.headers, "content-type");
        let nats_without_type = job.request.subject.is_some() && content_type.is_none();
        if !nats_without_type && !is_json_media_type(content_type) {
            return Err(Problem::new(
                ProblemKind::UnsupportedMediaType,
                direction,
                "content-type must be application/json or application/*+json",
            ));
        }
        let event = Event::parse(job.body, &self.policy.limits).map_err(|e| Problem::document(&e, direction))?;
        let EventFacts { context, id, kind } = self
            .context(job.rule, &job.request, &event)
            .map_err(|e| Problem::document(&e, direction))?;
        report.event_id = id.or(report.event_id.take());
        report.event_type = kind.or(report.event_type.take());
        let mut edits: Vec<Edit> = Vec::new();
        if let Some(seal) = &job.rule.seal {
            let context = context
                .as_ref()
                .map_err(|name| Problem::seal(&SealError::ContextMissing { name: name.clone() }, direction))?;
            let (sealed, outcomes) = self.seal_stage(job, &event, seal, context, keys)?;
            claim(&mut edits, sealed, outcomes, &mut report.fields);
        }
        if !job.rule.open.is_empty() {
            self.too_many_unwraps(job, &event)?;
        }
        for group in &job.rule.open {
            let (opened, outcomes) = self.open_stage(job, &event, group, context.as_ref(), keys)?;
            claim(&mut edits, opened, outcomes, &mut report.fields);
        }
        if edits.is_empty() {
            return Ok(None);
        }
        edits.sort_by_key(|(range, _)| range.start);
        Ok(Some(splice(event.text(), &edits)))
    }

    /// Seals the rule's fields with the keyring's primary key or the KMS data key.
    fn seal_stage(
        &self,
        job: &BodyJob<'_>,
        event: &Event<'_>,
        seal: &FieldSet,
        context: &Context,
        keys: KmsKeys<'_>,
    ) -> Result<(Vec<Edit>, Vec<FieldOutcome>), Problem> {
        let key = match (&self.policy.vault_transit, keys.seal) {
            (None, _) => SealingKey::Keyring(&self.keyring),
            (Some(_), Some(key)) => SealingKey::DataKey(key),
            (Some(transit), None) => return Err(Problem::kms_unavailable(&transit.source(), job.direction, 1)),
        };
        seal_spans(event, &seal.fields, seal.required, key, context).map_err(|e| Problem::seal(&e, job.direction))
    }

    /// Opens one group's fields for a granted reader; for anyone else, leaves them sealed,
    /// masks them, or refuses, as the group says.
    fn open_stage(
        &self,
        job: &BodyJob<'_>,
        event: &Event<'_>,
        group: &OpenGroup,
        context: Result<&Context, &String>,
        keys: KmsKeys<'_>,
    ) -> Result<(Vec<Edit>, Vec<FieldOutcome>), Problem> {
        let direction = job.direction;
        if !granted(&group.readers, job.principal) {
            let withheld = match &group.denied {
                Denied::Refuse => {
                    let detail = format!("principal {} may not open {}", shown(job.principal), group.fields.fields[0]);
                    return Err(Problem::new(ProblemKind::ReaderForbidden, Direction::Request, detail));
                }
                Denied::Mask(mask) => withhold_spans(event, &group.fields.fields, Some(mask)),
                Denied::LeaveSealed => withhold_spans(event, &group.fields.fields, None),
            };
            return withheld.map_err(|e| Problem::open(&e, direction));
        }
        let context = context.map_err(|name| Problem::open(&OpenError::ContextMissing { name: name.clone() }, direction))?;
        let fields = &group.fields;
        open_spans(event, &fields.fields, fields.required, &self.keyring, keys.open, context).map_err(|e| match &e {
            OpenError::Field {
                rejection: Rejection::NeedsDataKey { source, .. },
                ..
            } => Problem::kms_unavailable(source, direction, 1),
            _ => Problem::open(&e, direction),
        })
    }

    /// Signs the body that is forwarded: the Standard Webhooks headers to set.
    fn sign_stage(&self, job: &BodyJob<'_>, body: &[u8]) -> Result<Vec<(String, String)>, Problem> {
        let id = header(job.headers, webhook::ID_HEADER)
            .map(str::to_owned)
            .unwrap_or_else(new_message_id);
        let signature = webhook::sign(&self.keyring, &id, job.now, body).map_err(|e| Problem::sign(&e, job.direction))?;
        Ok(vec![
            (webhook::ID_HEADER.to_owned(), id),
            (webhook::TIMESTAMP_HEADER.to_owned(), job.now.to_string()),
            (webhook::SIGNATURE_HEADER.to_owned(), signature),
        ])
    }

    /// The rule's context for this event (or the name of the first value that is missing),
    /// and the event's CloudEvents `id` and `type`: read together in one pass over the event.
    ///
    /// # Errors
    /// A [`DocumentError`] if a value on the way to a context value cannot be read: a
    /// context is never built from a body read in part.
    fn context(&self, rule: &Rule, request: &RequestHead<'_>, event: &Event<'_>) -> Result<EventFacts, DocumentError> {
        let paths: Vec<&FieldPath> = rule
            .context
            .iter()
            .filter_map(|(_, source)| match source {
                ContextSource::Body(path) => Some(path),
                _ => None,
            })
            .collect();
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let mut values = if paths.is_empty() { Vec::new() } else { event.values_at(&paths)? }
            .into_iter()
            .map(text);
        let shown = |v: Option<String>| v.map(|s| if s.len() > 256 { s.chars().take(256).collect() } else { s });
        let (event_id, event_type) = (shown(text(event.member("id")?)), shown(text(event.member("type")?)));
        let mut context = Context::new();
        for (name, source) in &rule.context {
            let value = match source {
                ContextSource::Literal(v) => Some(v.clone()),
                ContextSource::Header(h) => request.header(h).map(str::to_owned),
                ContextSource::SubjectToken(n) => request.subject.and_then(|s| s.split('.').nth(n - 1)).map(str::to_owned),
                ContextSource::Body(_) => values.next().flatten(),
            };
            match value {
                Some(value) => context.insert(name.clone(), value),
                None => {
                    return Ok(EventFacts {
                        context: Err(name.clone()),
                        id: event_id,
                        kind: event_type,
                    });
                }
            }
        }
        Ok(EventFacts {
            context: Ok(context),
            id: event_id,
            kind: event_type,
        })
    }
}

/// What a rule reads from an event besides its fields.
struct EventFacts {
    /// The rule's context, or the name of the first context value that is missing.
    context: Result<Context, String>,
    /// The CloudEvents `id`.
    id: Option<String>,
    /// The CloudEvents `type`.
    kind: Option<String>,
}

/// Adds one action's edits, leaving out any field an earlier action already claimed (the
/// first action on a field wins), and records the outcomes that took effect.
fn claim(edits: &mut Vec<Edit>, new: Vec<Edit>, outcomes: Vec<FieldOutcome>, report: &mut Vec<FieldOutcome>) {
    let overlaps = |r: &std::ops::Range<usize>, edits: &[Edit]| edits.iter().any(|(e, _)| r.start < e.end && e.start < r.end);
    let claimed: Vec<bool> = new.iter().map(|(r, _)| overlaps(r, edits)).collect();
    let mut edited = claimed.iter();
    for outcome in outcomes {
        // Absent fields have no edit; every other outcome pairs with its edit (or mask) in order.
        let skip = match outcome.result {
            crate::FieldResult::Absent | crate::FieldResult::Withheld => false,
            _ => edited.next().copied().unwrap_or(false),
        };
        if !skip {
            report.push(outcome);
        }
    }
    edits.extend(new.into_iter().zip(claimed).filter(|(_, c)| !c).map(|(e, _)| e));
}

fn matches(rule: &Rule, request: &RequestHead<'_>) -> bool {
    let m = &rule.matcher;
    let method_ok = m.methods.is_empty() || m.methods.iter().any(|x| x.eq_ignore_ascii_case(request.method));
    let path_ok = path_fits(m, request.path);
    let host_ok = m.host.as_deref().is_none_or(|host| {
        let authority = request.authority.to_ascii_lowercase();
        let without_port = authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority.as_str(), |(h, _)| h);
        if host.contains(':') {
            authority == host
        } else {
            without_port == host
        }
    });
    let headers_ok = m.headers.iter().all(|(name, value)| request.header(name) == Some(value.as_str()));
    let subject_ok = m
        .subject
        .as_ref()
        .is_none_or(|pattern| request.subject.is_some_and(|s| pattern.matches(s)));
    method_ok && path_ok && host_ok && headers_ok && subject_ok
}

/// Whether `path` (its query and fragment ignored) fits the match's path condition.
fn path_fits(m: &Match, path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    match &m.path {
        None => true,
        Some(PathMatch::Exact(p)) => path == p,
        Some(PathMatch::Prefix(p)) => path.starts_with(p.as_str()),
    }
}

/// The distinct wrapped data keys of `source` carried by the fields `rule` lets
/// `principal` open in `event`, in order of appearance.
///
/// # Errors
/// A [`DocumentError`] if the body cannot be read on the way to a field.
fn wrapped_keys(rule: &Rule, principal: Option<&Principal>, event: &Event<'_>, source: &KeyId) -> Result<Vec<WrappedKey>, DocumentError> {
    let mut keys: Vec<WrappedKey> = Vec::new();
    for group in rule.open.iter().filter(|g| granted(&g.readers, principal)) {
        for span in event.select(&group.fields.fields)?.0 {
            // A value that is not a string carries no data key; opening refuses it (not-sealed).
            let Ok(envelope) = serde_json::from_str::<std::borrow::Cow<'_, str>>(&event.text()[span.range]) else {
                continue;
            };
            if let Some((kid, wrapped)) = wrapped_key_of(&envelope)
                && kid == source.as_str()
                && !keys.contains(&wrapped)
            {
                keys.push(wrapped);
            }
        }
    }
    Ok(keys)
}

/// Whether any grant admits the principal. No principal, or no grants, admits nobody.
fn granted(grants: &[Grant], principal: Option<&Principal>) -> bool {
    let Some(principal) = principal else { return false };
    grants.iter().any(|grant| match grant {
        Grant::Principal(glob) => glob_matches(glob, &principal.id),
        Grant::Claim { pointer, value } => match principal.claims.pointer(pointer) {
            Some(Value::Array(items)) => items.contains(value),
            Some(claim) => claim == value,
            None => false,
        },
    })
}

fn shown(principal: Option<&Principal>) -> String {
    principal.map_or_else(|| "(none)".to_owned(), |p| format!("{:?}", p.id))
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

fn is_json_media_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A fresh `msg_` id from 128 random bits, for signing events that carry none.
fn new_message_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    // An RNG failure leaves zeros; the id then only loses uniqueness, never authenticity.
    let _ = crate::random::fill(&mut bytes);
    format!("msg_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches(
            "spiffe://example.org/ns/billing/*",
            "spiffe://example.org/ns/billing/sa/api"
        ));
        assert!(!glob_matches(
            "spiffe://example.org/ns/billing/*",
            "spiffe://example.org/ns/shop/sa/api"
        ));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("a*b*c", "aXXbYY"));
        assert!(glob_matches("exact", "exact") && !glob_matches("exact", "exactly"));
    }

    #[test]
    fn media_types() {
        assert!(is_json_media_type(Some("application/json; charset=utf-8")));
        assert!(is_json_media_type(Some("Application/CloudEvents+JSON")));
        assert!(!is_json_media_type(Some("text/plain")));
        assert!(!is_json_media_type(None));
    }

    #[test]
    fn kms_rules_ask_for_data_keys_and_fail_closed_without_them() {
        use crate::{DataKeyCache, Lease, Outcome, SecretBytes, VaultTransit};
        let policy = Policy::from_value(&serde_json::json!({
            "keys": {"vault_transit": {"cluster": "bao", "key": "orders", "token_env": "BAO_TOKEN"}},
            "rules": [
                {"name": "in", "match": {"path": "/in"}, "seal": {"fields": ["/card", "/items/*/price"]}},
                {"name": "out", "match": {"path": "/out"}, "open": {"fields": ["/card", "/items/*/price"], "readers": ["*"]}},
            ],
        }))
        .unwrap();
        let transit: VaultTransit = policy.vault_transit.clone().unwrap();
        let engine = Engine::new(policy, Keyring::default());
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let principal = Principal {
            id: "reader".into(),
            claims: Value::Null,
        };
        let job = |path: &'static str, body: &'static [u8]| BodyJob {
            rule: engine.policy().rules.iter().find(|r| r.name == path).unwrap(),
            direction: Direction::Request,
            request: RequestHead {
                method: "POST",
                path: "/",
                authority: "a",
                headers: &headers,
                subject: None,
            },
            headers: &headers,
            principal: Some(&principal),
            body,
            now: 0,
        };
        let body: &[u8] = br#"{"card": "4111", "items": [{"price": 1}, {"price": 2}]}"#;
        let seal = job("in", body);
        assert_eq!(
            engine.kms_needs(&seal),
            KmsNeeds {
                seals: 3,
                unwrap: Vec::new()
            }
        );
        let Decision::Refuse { problem, .. } = engine.decide(&seal, &mut MemoryReplayCache::default()) else {
            panic!("sealed without a data key")
        };
        assert_eq!((problem.status, problem.retry_after), (503, Some(1)));
        // The host leases a data key from its cache (here issued without a KMS) and decides again.
        let mut cache = DataKeyCache::new(transit.source(), transit.limits, 1);
        let Lease::Start(call) = cache.lease(0, 3) else {
            panic!("expected a call")
        };
        let wrapped = crate::WrappedKey::parse("vault:v1:AAAA").unwrap();
        let issued = crate::DataKey::new(transit.source(), &SecretBytes::new(vec![4; 32]), wrapped.clone()).unwrap();
        cache.complete(0, call.id, Outcome::Key(issued));
        let Lease::Ready { key, .. } = cache.lease(0, 3) else {
            panic!("expected a key")
        };
        let keys = KmsKeys {
            seal: Some(&key),
            open: &NoDataKeys,
        };
        let Decision::Forward { body: Some(sealed), .. } = engine.decide_with(&seal, &mut MemoryReplayCache::default(), keys) else {
            panic!("not sealed")
        };
        assert_eq!(key.seals(), 3);
        let sealed: &'static [u8] = Box::leak(sealed.into_boxed_slice());
        let open = job("out", sealed);
        assert_eq!(
            engine.kms_needs(&open),
            KmsNeeds {
                seals: 0,
                unwrap: vec![wrapped]
            }
        );
        let missing = engine.decide_with(
            &open,
            &mut MemoryReplayCache::default(),
            KmsKeys {
                seal: None,
                open: &DataKeyCache::new(transit.source(), transit.limits, 1).lookup(0),
            },
        );
        assert!(
            matches!(missing, Decision::Refuse { ref problem, .. } if problem.status == 503),
            "{missing:?}"
        );
        let lookup = cache.lookup(0);
        let Decision::Forward { body: Some(opened), .. } =
            engine.decide_with(&open, &mut MemoryReplayCache::default(), KmsKeys { seal: None, open: &lookup })
        else {
            panic!("not opened")
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&opened).unwrap(),
            serde_json::from_slice::<Value>(body).unwrap()
        );
    }

    #[test]
    fn replay_cache_forgets_expired_ids() {
        let mut cache = MemoryReplayCache::default();
        assert_eq!(cache.admit("a", 100, 0), Admission::New);
        assert_eq!(cache.admit("a", 100, 50), Admission::Replayed);
        assert_eq!(cache.admit("a", 300, 101), Admission::New);
    }
}
