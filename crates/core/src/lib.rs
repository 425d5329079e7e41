#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod audit;
mod datakey;
mod document;
mod engine;
mod envelope;
mod event;
mod json;
mod keyring;
mod kms;
mod pointer;
mod policy;
mod problem;
mod secret;
mod webhook;

pub use audit::{AuditChain, AuditFacts, BreakReason, ChainBreak, ChainSummary, verify_audit_log};
pub use datakey::{
    DataKey, DataKeyError, DataKeyLookup, MAX_WRAPPED_KEY_LEN, NoDataKeys, Unwrap, VAULT_TRANSIT_ALG, VAULT_TRANSIT_KID_PREFIX, WrappedKey,
};
pub use document::{FieldOutcome, FieldResult, OpenError, SealError, open_fields, seal_fields};
pub use engine::{
    BodyJob, Decision, Engine, KmsKeys, KmsNeeds, MemoryReplayCache, Principal, ReplayCache, Report, RequestHead, RuleId, glob_matches,
};
pub use envelope::{
    Context, Rejection, SealFailure, open_bytes, open_bytes_with, open_value, open_value_with, seal_bytes, seal_bytes_with, seal_value,
    seal_value_with, with_wrapped_key, wrapped_key_of,
};
pub use event::Event;
pub use json::{DocumentError, Limits};
pub use keyring::{Key, KeyId, KeyStatus, KeyUse, Keyring, KeyringError, MAX_SEALS_PER_KEY};
pub use kms::{Call, CallId, DataKeyCache, DataKeyLimits, Lease, Need, Outcome, RewrapError, TransitCall, TransitRewrap, VaultTransit};
pub use pointer::{FieldPath, PointerError};
pub use policy::{
    AuditDelivery, ConfigError, ContextSource, Denied, FieldSet, Grant, KeySource, Match, OnError, OpenGroup, Operation, PathMatch, Policy,
    PrincipalSource, Rule,
};
pub use problem::{Direction, PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
pub use secret::SecretBytes;
pub use webhook::{SignError, Verified, VerifyError, WebhookHeaders, sign, verify};

/// The envelope specification (`docs/FORMAT.md`).
#[doc = include_str!("../../../docs/FORMAT.md")]
pub mod format {}
