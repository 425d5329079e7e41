//! The policy: which requests a rule matches and what it does to their bodies. This module
//! is the model; `parse` reads it from the configuration document (`docs/CONFIG.md`).

mod parse;

use crate::json::Limits;
use crate::keyring::{Keyring, KeyringError};
use crate::kms::VaultTransit;
use crate::nats::SubjectPattern;
use crate::pointer::FieldPath;
use crate::problem::Direction;
use crate::secret::SecretBytes;
use core::fmt;
use serde_json::Value;

/// Why a configuration was refused. Nothing of it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration is not JSON.
    NotJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// A member is missing, unknown or of the wrong form.
    Invalid {
        /// JSON Pointer of the offending member.
        at: String,
        /// What was expected there.
        expected: String,
    },
    /// The keyring is invalid.
    Keyring(KeyringError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson { line, column } => write!(f, "configuration is not valid JSON (line {line}, column {column})"),
            Self::Invalid { at, expected } => {
                let at = if at.is_empty() { "(root)" } else { at };
                write!(f, "configuration {at}: expected {expected}")
            }
            Self::Keyring(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<KeyringError> for ConfigError {
    fn from(e: KeyringError) -> Self {
        Self::Keyring(e)
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Rules in order; the first that matches a request applies.
    pub rules: Vec<Rule>,
    /// Body limits.
    pub limits: Limits,
    /// Where the caller's identity comes from.
    pub principal: PrincipalSource,
    /// Where the keyring comes from.
    pub keys: KeySource,
    /// The KMS key source that seals (envelope encryption), if any (`keys.vault_transit`).
    pub vault_transit: Option<VaultTransit>,
    /// Signature timestamp tolerance in seconds, either side of now.
    pub tolerance_secs: u64,
    /// The most signature ids the replay memory holds (`signatures.replay_capacity`).
    pub replay_capacity: usize,
    /// Where the filter ships its audit records, batched, besides the proxy log.
    pub audit: Option<AuditDelivery>,
    /// How the Envoy filter treats the headers of a body it decides on (`envoy.headers`).
    pub envoy_headers: EnvoyHeaders,
    /// What the rules match: HTTP requests, or NATS messages (`protocol`).
    pub protocol: Protocol,
}

/// What a policy's rules match (`protocol`, docs/CONFIG.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// `"http"`: rules match requests; bodies are request and response bodies.
    #[default]
    Http,
    /// `"nats"`: rules match NATS subjects; bodies are message payloads, a publish travels
    /// as [`Direction::Request`] and a delivery as [`Direction::Response`].
    Nats,
}

/// How the Envoy filter treats the headers of a message whose body it decides on
/// (`envoy.headers`, docs/CONFIG.md). Hosts other than Envoy see the whole message at once
/// and ignore it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvoyHeaders {
    /// `"forward"`: the headers go on before the body is read (proxy-wasm ABI 0.2.1 as
    /// Envoy before 1.35 and Istio's `WasmPlugin` run it): `content-length` is removed, a
    /// refused request body reaches the upstream as headers then a reset, a refused
    /// response body resets the stream, and signing is refused at load.
    #[default]
    Forward,
    /// `"hold"`: the headers wait until the body is decided (Envoy >= 1.35 with
    /// `allow_on_headers_stop_iteration: true` in the filter's `PluginConfig`):
    /// `content-length` is set to the new length, signature headers are added, and every
    /// refusal is a problem+json local reply before anything was forwarded.
    Hold,
}

/// Batched delivery of audit records to an HTTP collector (the Envoy filter's `audit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDelivery {
    /// The Envoy cluster of the collector.
    pub cluster: String,
    /// The request path records are POSTed to.
    pub path: String,
    /// The `:authority` of those requests.
    pub authority: String,
    /// Records per request; a full batch is sent at the next tick.
    pub batch_records: usize,
    /// Records kept while the collector is down; beyond it the oldest are dropped (and counted).
    pub buffer_records: usize,
    /// Longest wait before buffered records are sent, in milliseconds.
    pub flush_interval_ms: u64,
    /// Timeout of one delivery request, in milliseconds.
    pub timeout_ms: u64,
}

impl AuditDelivery {
    /// Defaults for everything but the cluster.
    pub fn new(cluster: impl Into<String>) -> Self {
        let cluster = cluster.into();
        Self {
            authority: cluster.clone(),
            cluster,
            path: "/audit".to_owned(),
            batch_records: 50,
            buffer_records: 1000,
            flush_interval_ms: 1000,
            timeout_ms: 2000,
        }
    }
}

/// Where the keyring comes from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KeySource {
    /// A JWK Set written in the policy itself (development only: the host warns).
    Inline(Value),
    /// A JWK Set in this environment variable (Envoy: `vm_config.environment_variables`).
    Env(String),
    /// No local keyring: only the KMS key source (`keys` has `vault_transit` alone).
    None,
}

/// Where the principal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrincipalSource {
    /// No principal: rules that name producers or readers deny everyone.
    None,
    /// The URI SAN of the mTLS peer certificate (for example a SPIFFE id).
    PeerCertificate,
    /// A request header that the edge in front is trusted to set.
    TrustedHeader(String),
    /// The payload that Envoy's `jwt_authn` put in metadata under this name.
    Jwt {
        /// `payload_in_metadata` of the jwt_authn provider.
        payload: String,
        /// The claim used as the principal id (usually `sub`).
        claim: String,
    },
}

/// A rule: a request match, the directions it applies to, and its actions.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name, used in logs, audit records and metrics.
    pub name: String,
    /// Which requests the rule applies to.
    pub matcher: Match,
    /// Apply to request bodies (NATS: to publishes).
    pub request: bool,
    /// Apply to response bodies (NATS: to deliveries).
    pub response: bool,
    /// If set, only these principals may send requests on this route.
    pub producers: Option<Vec<Grant>>,
    /// Values bound into every envelope sealed or opened by this rule.
    pub context: Vec<(String, ContextSource)>,
    /// Verify a Standard Webhooks signature first.
    pub verify: bool,
    /// Fields to seal.
    pub seal: Option<FieldSet>,
    /// Field groups to open, each for its readers.
    pub open: Vec<OpenGroup>,
    /// Sign the body last.
    pub sign: bool,
    /// What a failure does.
    pub on_error: OnError,
}

/// One thing a rule does to an exchange, in the order it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Admit the producer (`producers`), on the request headers.
    Admit,
    /// Verify a Standard Webhooks signature.
    Verify,
    /// Seal fields.
    Seal,
    /// Open fields for their readers.
    Open,
    /// Sign the body.
    Sign,
}

impl Operation {
    /// The body operations, in the order the engine applies them.
    pub const ON_BODIES: [Operation; 4] = [Self::Verify, Self::Seal, Self::Open, Self::Sign];

    /// Stable lowercase name, for audit records and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admit => "admit",
            Self::Verify => "verify",
            Self::Seal => "seal",
            Self::Open => "open",
            Self::Sign => "sign",
        }
    }
}

impl Rule {
    /// Whether the rule carries `operation`.
    pub fn carries(&self, operation: Operation) -> bool {
        match operation {
            Operation::Admit => self.producers.is_some(),
            Operation::Verify => self.verify,
            Operation::Seal => self.seal.is_some(),
            Operation::Open => !self.open.is_empty(),
            Operation::Sign => self.sign,
        }
    }

    /// The operations the rule applies to a body, in order.
    pub fn body_operations(&self) -> impl Iterator<Item = Operation> + '_ {
        Operation::ON_BODIES.into_iter().filter(|op| self.carries(*op))
    }

    /// Whether the rule's `request` / `response` setting covers bodies travelling in `direction`.
    pub fn applies_to(&self, direction: Direction) -> bool {
        match direction {
            Direction::Request => self.request,
            Direction::Response => self.response,
        }
    }

    /// Whether the rule decides on the bodies travelling in `direction`: a host buffers them
    /// whole and hands them to the engine; others pass untouched.
    pub fn decides(&self, direction: Direction) -> bool {
        self.applies_to(direction) && self.has_body_actions()
    }

    /// Whether the rule touches bodies in this direction at all.
    pub fn has_body_actions(&self) -> bool {
        self.body_operations().next().is_some()
    }

    /// Whether a body it forwards may differ from the one received (sealed, opened or
    /// masked fields); verifying and signing never change the bytes.
    pub fn rewrites_body(&self) -> bool {
        self.seal.is_some() || !self.open.is_empty()
    }

    /// Whether the rule needs the body parsed as JSON.
    pub fn needs_json(&self) -> bool {
        self.seal.is_some() || !self.open.is_empty()
    }
}

/// Request match; every part that is present must hold.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// Allowed methods (upper case); empty means any.
    pub methods: Vec<String>,
    /// Path condition, on the path without its query string.
    pub path: Option<PathMatch>,
    /// Host (`:authority` without port unless the pattern has one), case-insensitive.
    pub host: Option<String>,
    /// Headers that must be present with exactly these values (names lower case).
    pub headers: Vec<(String, String)>,
    /// NATS subject pattern (NATS rules only).
    pub subject: Option<SubjectPattern>,
}

/// Path condition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathMatch {
    /// The path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
}

/// Where a context value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextSource {
    /// A string (or number) in the event at this JSON Pointer (without wildcards), parsed
    /// once here rather than for every event.
    Body(FieldPath),
    /// A request header (lower case); for NATS, a header of the message.
    Header(String),
    /// A token of the NATS subject, counted from 1.
    SubjectToken(usize),
    /// A fixed value, for example an environment or route name.
    Literal(String),
}

/// Selected fields.
#[derive(Debug, Clone)]
pub struct FieldSet {
    /// Selectors.
    pub fields: Vec<FieldPath>,
    /// A selector that matches nothing is an error.
    pub required: bool,
}

/// Fields that some readers may open.
#[derive(Debug, Clone)]
pub struct OpenGroup {
    /// Selected fields.
    pub fields: FieldSet,
    /// Who may open them; empty means nobody (deny by default).
    pub readers: Vec<Grant>,
    /// What others get.
    pub denied: Denied,
}

/// What a reader who may not open a field gets.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Denied {
    /// The field stays sealed (default).
    LeaveSealed,
    /// The field is replaced by this value.
    Mask(Value),
    /// The whole exchange is refused with 403.
    Refuse,
}

/// One way to be allowed: a principal glob, or a condition on a JWT claim.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Grant {
    /// The principal id matches this glob (`*` matches any characters).
    Principal(String),
    /// The claim at this JSON Pointer equals the value, or is an array containing it.
    Claim {
        /// JSON Pointer into the claims.
        pointer: String,
        /// Required value.
        value: Value,
    },
}

/// What a failing rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnError {
    /// Answer with a problem+json error (default).
    Refuse,
    /// Forward the body unchanged (never half-processed). Not allowed with `seal`.
    ForwardUnchanged,
}

pub(crate) fn invalid(at: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        at: at.to_owned(),
        expected: expected.into(),
    }
}

impl Policy {
    /// Loads the keyring for this policy from its inline JWK Set, or from `env` by variable name.
    ///
    /// # Errors
    /// [`ConfigError`] if the variable is unset or the keyring is invalid, or if a rule needs
    /// a kind of key (sealing, signing) that the keyring has no primary for.
    pub fn load_keyring(&self, env: impl Fn(&str) -> Option<String>) -> Result<Keyring, ConfigError> {
        let keyring = match &self.keys {
            KeySource::Inline(jwks) => Keyring::from_value(jwks, "/keys/inline")?,
            KeySource::Env(name) => {
                let text = env(name).ok_or_else(|| invalid("/keys/env", format!("environment variable {name} to hold a JWK Set")))?;
                Keyring::from_jwks(&text)?
            }
            KeySource::None => Keyring::default(),
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.seal.is_some() && self.vault_transit.is_none() && keyring.primary(crate::KeyUse::Seal).is_none() {
                return Err(invalid(
                    &format!("/rules/{i}/seal"),
                    "a keyring with a primary A256GCM key, or a vault_transit key source",
                ));
            }
            if rule.sign && !keyring.primary(crate::KeyUse::Sign).is_some_and(crate::Key::can_sign) {
                return Err(invalid(
                    &format!("/rules/{i}/sign"),
                    "a keyring with a primary signing key that can sign (HS256, or Ed25519 with its private key)",
                ));
            }
        }
        Ok(keyring)
    }

    /// The KMS token for the `vault_transit` key source, from its environment variable.
    ///
    /// # Errors
    /// [`ConfigError`] at `/keys/vault_transit/token_env` if the variable is unset or empty;
    /// the error never contains the token.
    pub fn load_kms_token(&self, env: impl Fn(&str) -> Option<String>) -> Result<Option<SecretBytes>, ConfigError> {
        let Some(transit) = &self.vault_transit else { return Ok(None) };
        let token = env(&transit.token_env).filter(|t| !t.is_empty()).ok_or_else(|| {
            invalid(
                "/keys/vault_transit/token_env",
                format!("environment variable {} to hold the KMS token", transit.token_env),
            )
        })?;
        Ok(Some(SecretBytes::new(token.into_bytes())))
    }
}
