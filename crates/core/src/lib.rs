#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod audit;
mod document;
mod engine;
mod envelope;
mod event;
mod json;
mod keyring;
mod pointer;
mod policy;
mod problem;
mod secret;
mod webhook;

pub use audit::{AuditChain, AuditFacts, BreakReason, ChainBreak, ChainSummary, verify_audit_log};
pub use document::{FieldOutcome, FieldResult, OpenError, SealError, open_fields, seal_fields};
pub use engine::{BodyJob, Decision, Engine, MemoryReplayCache, Principal, ReplayCache, Report, RequestHead, glob_matches};
pub use envelope::{Context, Rejection, SealFailure, open_bytes, open_value, seal_bytes, seal_value};
pub use event::Event;
pub use json::{DocumentError, Limits};
pub use keyring::{Key, KeyId, KeyStatus, KeyUse, Keyring, KeyringError, MAX_SEALS_PER_KEY};
pub use pointer::{FieldPath, PointerError};
pub use policy::{
    AuditDelivery, ConfigError, ContextSource, Denied, FieldSet, Grant, KeySource, Match, OnError, OpenGroup, PathMatch, Policy,
    PrincipalSource, Rule,
};
pub use problem::{Direction, PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
pub use secret::SecretBytes;
pub use webhook::{SignError, Verified, VerifyError, WebhookHeaders, sign, verify};

/// The envelope specification (`docs/FORMAT.md`).
#[doc = include_str!("../../../docs/FORMAT.md")]
pub mod format {}
