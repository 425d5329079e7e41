#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod audit;
mod datakey;
mod document;
mod engine;
mod envelope;
mod event;
mod gcm;
mod json;
mod keyring;
mod kms;
mod nats;
mod pointer;
mod policy;
mod problem;
mod random;
mod replay;
mod secret;
mod webhook;

// The public API, chosen: what hosts (the filter, the component, the CLI) and other
// implementations need. Everything else stays inside its module.

// Deciding on one exchange: the engine, its inputs and its decision.
pub use engine::{BodyJob, Decision, Engine, KmsKeys, KmsNeeds, MemoryReplayCache, Principal, ReplayCache, Report, RequestHead, RuleId};
// The policy model and its errors (docs/CONFIG.md).
pub use policy::{
    AuditDelivery, ConfigError, ContextSource, Denied, EnvoyHeaders, FieldSet, Grant, KeySource, Match, OnError, OpenGroup, Operation,
    PathMatch, Policy, PrincipalSource, Protocol, Rule,
};
// Replay protection with a fixed memory bound: the bucket rule hosts store (shared data).
pub use replay::{Admission, DEFAULT_REPLAY_CAPACITY, REPLAY_WAYS, ReplayBucket, ReplaySlot, bucket_count};
// Refusals: one problem type and status per error (RFC 9457).
pub use problem::{Direction, PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
// The envelope (docs/FORMAT.md): one value at a time, and whole events.
pub use document::{FieldOutcome, FieldResult, OpenError, SealError, open_fields, seal_fields};
pub use envelope::{
    Context, Rejection, Reseal, ResealError, SealFailure, open_bytes, open_value, open_value_with, reseal, seal_value, seal_value_with,
    with_wrapped_key, wrapped_key_of,
};
pub use event::Event;
pub use json::{DocumentError, Limits};
pub use pointer::{FieldPath, PointerError};
// Keys: keyrings, and KMS data keys with the Vault Transit protocol (no I/O).
pub use datakey::{DataKey, DataKeyError, DataKeyLookup, Unwrap, WrappedKey};
pub use keyring::{Key, KeyId, KeyStatus, KeyUse, Keyring, KeyringError, MAX_SEALS_PER_KEY, public_jwk};
pub use kms::{Call, CallId, DataKeyCache, DataKeyLimits, Lease, Need, Outcome, RewrapError, TransitCall, TransitRewrap, VaultTransit};
pub use secret::SecretBytes;
// Randomness: the OS's generator, or a source the host installs once (the component).
pub use random::{RandomSource, RandomUnavailable, install_random_source};
// Standard Webhooks signatures.
pub use webhook::{ID_HEADER as WEBHOOK_ID_HEADER, SignError, Verified, VerifyError, WebhookHeaders, sign, verify};
// The NATS client protocol as data, for a gateway in front of nats-server (no I/O).
pub use nats::{
    ENVELOPE_HEADER_ALLOWANCE, Frame, FrameError, FrameReader, Gateway, MAX_CONTROL_LINE, MAX_WAITING, Message, SEALED_FIELDS_ALLOWANCE,
    SubjectPattern, Verdict, advertised_max_payload, read_headers, rewrite_info,
};
// The audit trail.
pub use audit::{AuditChain, AuditFacts, BreakReason, ChainBreak, ChainSummary, verify_audit_log};

/// The envelope specification (`docs/FORMAT.md`).
#[doc = include_str!("../../../docs/FORMAT.md")]
pub mod format {}
