//! The policy: which requests a rule matches and what it does to their bodies.
//!
//! `docs/CONFIG.md` documents the schema. Parsing is strict: an unknown member is an error,
//! because a typo in a security policy must not silently turn a rule off.

use crate::json::Limits;
use crate::keyring::{KeyId, Keyring, KeyringError};
use crate::kms::{DataKeyLimits, VaultTransit};
use crate::pointer::FieldPath;
use crate::problem::Direction;
use crate::secret::SecretBytes;
use crate::webhook::DEFAULT_TOLERANCE_SECS;
use core::fmt;
use serde_json::{Map, Value};

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
    /// Where the filter ships its audit records, batched, besides the proxy log.
    pub audit: Option<AuditDelivery>,
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
    /// Apply to request bodies.
    pub request: bool,
    /// Apply to response bodies.
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
    /// A request header (lower case).
    Header(String),
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

/// A configuration node with its JSON location, for precise errors.
#[derive(Clone, Copy)]
struct Node<'a> {
    value: &'a Value,
    at: &'a str,
}

fn invalid(at: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        at: at.to_owned(),
        expected: expected.into(),
    }
}

impl<'a> Node<'a> {
    fn object(self, allowed: &[&str]) -> Result<&'a Map<String, Value>, ConfigError> {
        let map = self.value.as_object().ok_or_else(|| invalid(self.at, "an object"))?;
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let at = format!("{}/{}", self.at, crate::pointer::escape_token(unknown));
            return Err(invalid(&at, format!("one of the members {}", allowed.join(", "))));
        }
        Ok(map)
    }

    fn string(self) -> Result<&'a str, ConfigError> {
        self.value.as_str().ok_or_else(|| invalid(self.at, "a string"))
    }

    fn boolean(self) -> Result<bool, ConfigError> {
        self.value.as_bool().ok_or_else(|| invalid(self.at, "true or false"))
    }

    fn positive(self) -> Result<u64, ConfigError> {
        self.value
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(self.at, "a positive integer"))
    }

    fn array(self) -> Result<&'a Vec<Value>, ConfigError> {
        self.value.as_array().ok_or_else(|| invalid(self.at, "an array"))
    }
}

/// Iterates a member of `map` with its location, if present.
fn member(
    map: &Map<String, Value>,
    parent: &str,
    name: &str,
    f: impl FnOnce(Node<'_>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    match map.get(name) {
        Some(value) => f(Node {
            value,
            at: &format!("{parent}/{name}"),
        }),
        None => Ok(()),
    }
}

fn each(node: Node<'_>, mut f: impl FnMut(Node<'_>) -> Result<(), ConfigError>) -> Result<(), ConfigError> {
    for (i, value) in node.array()?.iter().enumerate() {
        f(Node {
            value,
            at: &format!("{}/{i}", node.at),
        })?;
    }
    Ok(())
}

impl Policy {
    /// Parses a policy document.
    ///
    /// # Errors
    /// [`ConfigError`] naming the JSON location of the first problem.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| ConfigError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        Self::from_value(&doc)
    }

    /// Parses a policy already read as JSON.
    ///
    /// # Errors
    /// [`ConfigError`] naming the JSON location of the first problem.
    pub fn from_value(doc: &Value) -> Result<Self, ConfigError> {
        let root = Node { value: doc, at: "" }.object(&["keys", "principal", "limits", "signatures", "audit", "rules"])?;
        let mut policy = Policy {
            rules: Vec::new(),
            limits: Limits::default(),
            principal: PrincipalSource::None,
            keys: KeySource::Env("EVENTSEAL_KEYS".to_owned()),
            vault_transit: None,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            audit: None,
        };
        member(root, "", "keys", |n| {
            (policy.keys, policy.vault_transit) = parse_key_source(n)?;
            Ok(())
        })?;
        member(root, "", "principal", |n| {
            policy.principal = parse_principal(n)?;
            Ok(())
        })?;
        member(root, "", "limits", |n| {
            let map = n.object(&["max_body_bytes", "max_json_depth"])?;
            member(map, n.at, "max_body_bytes", |n| {
                policy.limits.max_body_bytes = usize::try_from(n.positive()?).map_err(|_| invalid(n.at, "a smaller integer"))?;
                Ok(())
            })?;
            member(map, n.at, "max_json_depth", |n| {
                policy.limits.max_json_depth = usize::try_from(n.positive()?.min(1024)).unwrap_or(1024);
                Ok(())
            })
        })?;
        member(root, "", "signatures", |n| {
            let map = n.object(&["tolerance_seconds"])?;
            member(map, n.at, "tolerance_seconds", |n| {
                policy.tolerance_secs = n.positive()?;
                Ok(())
            })
        })?;
        member(root, "", "audit", |n| {
            policy.audit = Some(parse_audit(n)?);
            Ok(())
        })?;
        let rules = root.get("rules").ok_or_else(|| invalid("/rules", "an array of rules"))?;
        each(
            Node {
                value: rules,
                at: "/rules",
            },
            |n| {
                let rule = parse_rule(n)?;
                if policy.rules.iter().any(|r| r.name == rule.name) {
                    return Err(invalid(&format!("{}/name", n.at), "a name no other rule has"));
                }
                policy.rules.push(rule);
                Ok(())
            },
        )?;
        Ok(policy)
    }

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
            if rule.sign && keyring.primary(crate::KeyUse::Sign).is_none() {
                return Err(invalid(&format!("/rules/{i}/sign"), "a keyring with a primary HS256 key"));
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

fn parse_key_source(n: Node<'_>) -> Result<(KeySource, Option<VaultTransit>), ConfigError> {
    let map = n.object(&["inline", "env", "vault_transit"])?;
    let mut transit = None;
    member(map, n.at, "vault_transit", |t| {
        transit = Some(parse_vault_transit(t)?);
        Ok(())
    })?;
    let keys = match (map.get("inline"), map.get("env")) {
        (Some(jwks), None) => KeySource::Inline(jwks.clone()),
        (None, Some(_)) => {
            let mut name = String::new();
            member(map, n.at, "env", |e| {
                name = e.string()?.to_owned();
                Ok(())
            })?;
            KeySource::Env(name)
        }
        (None, None) if transit.is_some() => KeySource::None,
        _ => {
            return Err(invalid(
                n.at,
                "exactly one of \"inline\" (a JWK Set) or \"env\" (a variable name), optionally with \"vault_transit\"",
            ));
        }
    };
    Ok((keys, transit))
}

fn parse_vault_transit(n: Node<'_>) -> Result<VaultTransit, ConfigError> {
    let map = n.object(&[
        "cluster",
        "authority",
        "mount",
        "key",
        "token_env",
        "timeout_ms",
        "max_seals_per_key",
        "max_key_age_ms",
        "refresh_ahead_ms",
        "cache_keys",
        "cache_ttl_ms",
        "backoff_initial_ms",
        "backoff_max_ms",
        "max_unwraps_per_body",
    ])?;
    let text = |name: &str, expected: &str| -> Result<Option<String>, ConfigError> {
        let mut out = None;
        member(map, n.at, name, |m| {
            let s = m.string()?;
            if s.is_empty() {
                return Err(invalid(m.at, expected));
            }
            out = Some(s.to_owned());
            Ok(())
        })?;
        Ok(out)
    };
    let required = |name: &str, expected: &str| -> Result<String, ConfigError> {
        text(name, expected)?.ok_or_else(|| invalid(&format!("{}/{name}", n.at), expected))
    };
    let cluster = required("cluster", "the Envoy cluster that reaches the KMS")?;
    let key = required("key", "the Transit key name")?;
    let token_env = required("token_env", "the name of the environment variable holding the KMS token")?;
    let mount = text("mount", "the Transit mount path")?.unwrap_or_else(|| "transit".to_owned());
    let authority = text("authority", "the :authority of KMS requests")?.unwrap_or_else(|| cluster.clone());
    if let Err(expected) = KeyId::vault_transit(&mount, "k") {
        return Err(invalid(&format!("{}/mount", n.at), expected));
    }
    if let Err(expected) = KeyId::vault_transit(&mount, &key) {
        return Err(invalid(&format!("{}/key", n.at), expected));
    }
    let mut limits = DataKeyLimits::default();
    let number = |name: &str, min: u64, max: u64, out: &mut u64| {
        member(map, n.at, name, |m| {
            let v = m.positive()?;
            if !(min..=max).contains(&v) {
                return Err(invalid(m.at, format!("an integer from {min} to {max}")));
            }
            *out = v;
            Ok(())
        })
    };
    number("timeout_ms", 10, 600_000, &mut limits.timeout_ms)?;
    number("max_seals_per_key", 1, crate::MAX_SEALS_PER_KEY, &mut limits.max_seals_per_key)?;
    number("max_key_age_ms", 1_000, 30 * 86_400_000, &mut limits.max_key_age_ms)?;
    number("refresh_ahead_ms", 1, 30 * 86_400_000, &mut limits.refresh_ahead_ms)?;
    number("cache_ttl_ms", 1_000, 30 * 86_400_000, &mut limits.cache_ttl_ms)?;
    number("backoff_initial_ms", 1, 3_600_000, &mut limits.backoff_initial_ms)?;
    number("backoff_max_ms", 1, 3_600_000, &mut limits.backoff_max_ms)?;
    let mut cache_keys = limits.cache_keys as u64;
    number("cache_keys", 1, 1_000_000, &mut cache_keys)?;
    limits.cache_keys = usize::try_from(cache_keys).map_err(|_| invalid(&format!("{}/cache_keys", n.at), "a smaller integer"))?;
    let mut max_unwraps = limits.max_unwraps_per_body as u64;
    number("max_unwraps_per_body", 1, 1024, &mut max_unwraps)?;
    limits.max_unwraps_per_body = usize::try_from(max_unwraps).unwrap_or(limits.max_unwraps_per_body);
    if limits.refresh_ahead_ms >= limits.max_key_age_ms {
        return Err(invalid(
            &format!("{}/refresh_ahead_ms", n.at),
            format!("less than max_key_age_ms ({})", limits.max_key_age_ms),
        ));
    }
    if limits.backoff_max_ms < limits.backoff_initial_ms {
        return Err(invalid(
            &format!("{}/backoff_max_ms", n.at),
            format!("at least backoff_initial_ms ({})", limits.backoff_initial_ms),
        ));
    }
    Ok(VaultTransit {
        cluster,
        authority,
        mount,
        key,
        token_env,
        limits,
    })
}

fn parse_audit(n: Node<'_>) -> Result<AuditDelivery, ConfigError> {
    let map = n.object(&["collector", "batch_records", "buffer_records", "flush_interval_ms", "timeout_ms"])?;
    let collector_at = format!("{}/collector", n.at);
    let collector = map
        .get("collector")
        .ok_or_else(|| invalid(&collector_at, "{\"cluster\": <the collector's Envoy cluster>}"))?;
    let collector = Node {
        value: collector,
        at: &collector_at,
    };
    let c = collector.object(&["cluster", "path", "authority"])?;
    let text = |name: &str, out: &mut Option<String>| {
        member(c, collector.at, name, |m| {
            let s = m.string()?;
            if s.is_empty() {
                return Err(invalid(m.at, "a non-empty string"));
            }
            *out = Some(s.to_owned());
            Ok(())
        })
    };
    let (mut cluster, mut path, mut authority) = (None, None, None);
    text("cluster", &mut cluster)?;
    text("path", &mut path)?;
    text("authority", &mut authority)?;
    let cluster = cluster.ok_or_else(|| invalid(&format!("{collector_at}/cluster"), "the collector's Envoy cluster name"))?;
    let mut audit = AuditDelivery::new(cluster);
    if let Some(path) = path {
        if !path.starts_with('/') {
            return Err(invalid(&format!("{collector_at}/path"), "a path starting with '/'"));
        }
        audit.path = path;
    }
    if let Some(authority) = authority {
        audit.authority = authority;
    }
    let count = |m: Node<'_>, max: u64| -> Result<usize, ConfigError> {
        let n = m.positive()?;
        if n > max {
            return Err(invalid(m.at, format!("a positive integer of at most {max}")));
        }
        usize::try_from(n).map_err(|_| invalid(m.at, "a smaller integer"))
    };
    member(map, n.at, "batch_records", |m| {
        audit.batch_records = count(m, 10_000)?;
        Ok(())
    })?;
    member(map, n.at, "buffer_records", |m| {
        audit.buffer_records = count(m, 1_000_000)?;
        Ok(())
    })?;
    member(map, n.at, "flush_interval_ms", |m| {
        audit.flush_interval_ms = m.positive()?.clamp(10, 3_600_000);
        Ok(())
    })?;
    member(map, n.at, "timeout_ms", |m| {
        audit.timeout_ms = m.positive()?.min(600_000);
        Ok(())
    })?;
    if audit.buffer_records < audit.batch_records {
        return Err(invalid(
            &format!("{}/buffer_records", n.at),
            format!("at least batch_records ({})", audit.batch_records),
        ));
    }
    Ok(audit)
}

fn parse_principal(n: Node<'_>) -> Result<PrincipalSource, ConfigError> {
    let map = n.object(&["source", "header", "payload", "claim"])?;
    let text = |name: &str| -> Result<Option<String>, ConfigError> {
        let mut out = None;
        member(map, n.at, name, |m| {
            out = Some(m.string()?.to_owned());
            Ok(())
        })?;
        Ok(out)
    };
    let source = text("source")?.ok_or_else(|| invalid(&format!("{}/source", n.at), "\"mtls\", \"header\" or \"jwt\""))?;
    match source.as_str() {
        "mtls" => Ok(PrincipalSource::PeerCertificate),
        "header" => {
            let header = text("header")?.ok_or_else(|| invalid(&format!("{}/header", n.at), "the trusted header's name"))?;
            Ok(PrincipalSource::TrustedHeader(header.to_ascii_lowercase()))
        }
        "jwt" => Ok(PrincipalSource::Jwt {
            payload: text("payload")?.ok_or_else(|| invalid(&format!("{}/payload", n.at), "jwt_authn's payload_in_metadata name"))?,
            claim: text("claim")?.unwrap_or_else(|| "sub".to_owned()),
        }),
        _ => Err(invalid(&format!("{}/source", n.at), "\"mtls\", \"header\" or \"jwt\"")),
    }
}

fn parse_rule(n: Node<'_>) -> Result<Rule, ConfigError> {
    let map = n.object(&[
        "name",
        "match",
        "apply_to",
        "producers",
        "context",
        "verify",
        "seal",
        "open",
        "sign",
        "on_error",
    ])?;
    let name = map
        .get("name")
        .ok_or_else(|| invalid(&format!("{}/name", n.at), "the rule's name"))?;
    let name = Node {
        value: name,
        at: &format!("{}/name", n.at),
    }
    .string()?
    .to_owned();
    let mut rule = Rule {
        name,
        matcher: Match::default(),
        request: true,
        response: false,
        producers: None,
        context: Vec::new(),
        verify: false,
        seal: None,
        open: Vec::new(),
        sign: false,
        on_error: OnError::Refuse,
    };
    member(map, n.at, "match", |m| {
        rule.matcher = parse_match(m)?;
        Ok(())
    })?;
    member(map, n.at, "apply_to", |m| {
        (rule.request, rule.response) = match m.string()? {
            "request" => (true, false),
            "response" => (false, true),
            "both" => (true, true),
            _ => return Err(invalid(m.at, "\"request\", \"response\" or \"both\"")),
        };
        Ok(())
    })?;
    member(map, n.at, "producers", |m| {
        rule.producers = Some(parse_grants(m)?);
        Ok(())
    })?;
    if let Some(value) = map.get("context") {
        let at = format!("{}/context", n.at);
        let ctx = value.as_object().ok_or_else(|| invalid(&at, "an object of name: source"))?;
        for (name, source) in ctx {
            let at = format!("{at}/{}", crate::pointer::escape_token(name));
            rule.context
                .push((name.clone(), parse_context_source(Node { value: source, at: &at })?));
        }
    }
    member(map, n.at, "verify", |m| {
        rule.verify = m.boolean()?;
        Ok(())
    })?;
    member(map, n.at, "sign", |m| {
        rule.sign = m.boolean()?;
        Ok(())
    })?;
    member(map, n.at, "seal", |m| {
        let fields = m.object(&["fields", "required"])?;
        rule.seal = Some(parse_field_set(m, fields)?);
        Ok(())
    })?;
    member(map, n.at, "open", |m| {
        if m.value.is_array() {
            each(m, |g| {
                rule.open.push(parse_open_group(g)?);
                Ok(())
            })
        } else {
            rule.open.push(parse_open_group(m)?);
            Ok(())
        }
    })?;
    member(map, n.at, "on_error", |m| {
        rule.on_error = match m.string()? {
            "refuse" => OnError::Refuse,
            "forward_unchanged" => OnError::ForwardUnchanged,
            _ => return Err(invalid(m.at, "\"refuse\" or \"forward_unchanged\"")),
        };
        if rule.on_error == OnError::ForwardUnchanged && rule.seal.is_some() {
            return Err(invalid(m.at, "\"refuse\": a rule that seals must never forward plaintext"));
        }
        Ok(())
    })?;
    if !rule.has_body_actions() && rule.producers.is_none() {
        return Err(invalid(
            n.at,
            "at least one of \"verify\", \"seal\", \"open\", \"sign\" or \"producers\"",
        ));
    }
    Ok(rule)
}

fn parse_match(n: Node<'_>) -> Result<Match, ConfigError> {
    let map = n.object(&["methods", "path", "path_prefix", "host", "headers"])?;
    let mut m = Match::default();
    member(map, n.at, "methods", |a| {
        each(a, |s| {
            let method = s.string()?;
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(invalid(s.at, "an HTTP method such as \"POST\""));
            }
            m.methods.push(method.to_ascii_uppercase());
            Ok(())
        })
    })?;
    let path_of = |s: Node<'_>| -> Result<String, ConfigError> {
        let path = s.string()?;
        if !path.starts_with('/') {
            return Err(invalid(s.at, "a path starting with '/'"));
        }
        Ok(path.to_owned())
    };
    member(map, n.at, "path", |s| {
        m.path = Some(PathMatch::Exact(path_of(s)?));
        Ok(())
    })?;
    member(map, n.at, "path_prefix", |s| {
        if m.path.is_some() {
            return Err(invalid(s.at, "only one of \"path\" and \"path_prefix\""));
        }
        m.path = Some(PathMatch::Prefix(path_of(s)?));
        Ok(())
    })?;
    member(map, n.at, "host", |s| {
        m.host = Some(s.string()?.to_ascii_lowercase());
        Ok(())
    })?;
    if let Some(headers) = map.get("headers") {
        let at = format!("{}/headers", n.at);
        let headers = headers
            .as_object()
            .ok_or_else(|| invalid(&at, "an object of header name: exact value"))?;
        for (name, value) in headers {
            let at = format!("{at}/{}", crate::pointer::escape_token(name));
            m.headers
                .push((name.to_ascii_lowercase(), Node { value, at: &at }.string()?.to_owned()));
        }
    }
    Ok(m)
}

fn parse_context_source(n: Node<'_>) -> Result<ContextSource, ConfigError> {
    let map = n.object(&["body", "header", "literal"])?;
    let expected = "exactly one of {\"body\": pointer}, {\"header\": name} or {\"literal\": value}";
    if map.len() != 1 {
        return Err(invalid(n.at, expected));
    }
    let (kind, value) = map.iter().next().ok_or_else(|| invalid(n.at, expected))?;
    let at = format!("{}/{kind}", n.at);
    let text = Node { value, at: &at }.string()?.to_owned();
    Ok(match kind.as_str() {
        "body" => {
            let path = FieldPath::parse(&text).map_err(|e| invalid(&at, format!("a JSON Pointer ({e})")))?;
            if path.has_wildcard() {
                return Err(invalid(&at, "a JSON Pointer without wildcards"));
            }
            ContextSource::Body(path)
        }
        "header" => ContextSource::Header(text.to_ascii_lowercase()),
        _ => ContextSource::Literal(text),
    })
}

fn parse_field_set(n: Node<'_>, map: &Map<String, Value>) -> Result<FieldSet, ConfigError> {
    let mut set = FieldSet {
        fields: Vec::new(),
        required: false,
    };
    let fields = map
        .get("fields")
        .ok_or_else(|| invalid(&format!("{}/fields", n.at), "an array of JSON Pointers"))?;
    let fields_node = Node {
        value: fields,
        at: &format!("{}/fields", n.at),
    };
    each(fields_node, |f| {
        let path = FieldPath::parse(f.string()?).map_err(|e| invalid(f.at, format!("a JSON Pointer ({e})")))?;
        set.fields.push(path);
        Ok(())
    })?;
    if set.fields.is_empty() {
        return Err(invalid(fields_node.at, "at least one JSON Pointer"));
    }
    member(map, n.at, "required", |r| {
        set.required = r.boolean()?;
        Ok(())
    })?;
    Ok(set)
}

fn parse_open_group(n: Node<'_>) -> Result<OpenGroup, ConfigError> {
    let map = n.object(&["fields", "required", "readers", "denied", "mask"])?;
    let fields = parse_field_set(n, map)?;
    let mut group = OpenGroup {
        fields,
        readers: Vec::new(),
        denied: Denied::LeaveSealed,
    };
    member(map, n.at, "readers", |r| {
        group.readers = parse_grants(r)?;
        Ok(())
    })?;
    member(map, n.at, "denied", |d| {
        group.denied = match d.string()? {
            "leave_sealed" => Denied::LeaveSealed,
            "mask" => Denied::Mask(map.get("mask").cloned().unwrap_or(Value::String("[sealed]".to_owned()))),
            "refuse" => Denied::Refuse,
            _ => return Err(invalid(d.at, "\"leave_sealed\", \"mask\" or \"refuse\"")),
        };
        Ok(())
    })?;
    if map.contains_key("mask") && !matches!(group.denied, Denied::Mask(_)) {
        return Err(invalid(&format!("{}/mask", n.at), "\"denied\": \"mask\" alongside a mask value"));
    }
    Ok(group)
}

fn parse_grants(n: Node<'_>) -> Result<Vec<Grant>, ConfigError> {
    let mut grants = Vec::new();
    each(n, |g| {
        if let Some(glob) = g.value.as_str() {
            grants.push(Grant::Principal(glob.to_owned()));
            return Ok(());
        }
        let map = g.object(&["principal", "claim", "equals", "contains"])?;
        if let Some(glob) = map.get("principal") {
            if map.len() != 1 {
                return Err(invalid(
                    g.at,
                    "either {\"principal\": glob} or {\"claim\": pointer, \"equals\"|\"contains\": value}",
                ));
            }
            grants.push(Grant::Principal(
                Node {
                    value: glob,
                    at: &format!("{}/principal", g.at),
                }
                .string()?
                .to_owned(),
            ));
            return Ok(());
        }
        let claim_at = format!("{}/claim", g.at);
        let claim = map
            .get("claim")
            .ok_or_else(|| invalid(&claim_at, "a JSON Pointer into the JWT claims"))?;
        let pointer = Node {
            value: claim,
            at: &claim_at,
        }
        .string()?;
        if !pointer.starts_with('/') {
            return Err(invalid(&claim_at, "a JSON Pointer into the JWT claims, such as \"/roles\""));
        }
        let value = match (map.get("equals"), map.get("contains")) {
            (Some(v), None) | (None, Some(v)) => v.clone(),
            _ => return Err(invalid(g.at, "exactly one of \"equals\" or \"contains\"")),
        };
        grants.push(Grant::Claim {
            pointer: pointer.to_owned(),
            value,
        });
        Ok(())
    })?;
    Ok(grants)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(doc: Value) -> String {
        match Policy::from_value(&doc) {
            Err(ConfigError::Invalid { at, .. }) => at,
            other => panic!("expected a located error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_full_rule() {
        let policy = Policy::from_value(&json!({
            "keys": {"env": "EVENTSEAL_KEYS"},
            "principal": {"source": "mtls"},
            "limits": {"max_body_bytes": 65536, "max_json_depth": 16},
            "rules": [{
                "name": "orders",
                "match": {"methods": ["post"], "path_prefix": "/orders", "headers": {"CE-Type": "order.created"}},
                "apply_to": "both",
                "producers": ["spiffe://example.org/ns/shop/*"],
                "context": {"type": {"body": "/type"}, "tenant": {"header": "x-tenant"}, "route": {"literal": "orders"}},
                "verify": true,
                "seal": {"fields": ["/data/card", "/data/items/*/price"], "required": true},
                "open": [{"fields": ["/data/card"], "readers": ["spiffe://example.org/ns/billing/*", {"claim": "/roles", "contains": "auditor"}], "denied": "mask"}],
                "sign": true
            }]
        }))
        .unwrap();
        let rule = &policy.rules[0];
        assert_eq!(rule.matcher.methods, ["POST"]);
        assert_eq!(rule.matcher.headers, [("ce-type".to_owned(), "order.created".to_owned())]);
        assert!(rule.request && rule.response && rule.verify && rule.sign);
        assert_eq!(rule.context.len(), 3);
        assert_eq!(rule.open[0].readers.len(), 2);
        assert_eq!(rule.open[0].denied, Denied::Mask(json!("[sealed]")));
        assert_eq!(policy.limits.max_json_depth, 16);
    }

    #[test]
    fn errors_name_the_exact_location() {
        let rule = |extra: Value| {
            let mut r = json!({"name": "r", "seal": {"fields": ["/a"]}});
            r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({"rules": [r]})
        };
        assert_eq!(error(json!({"rules": [], "rulez": []})), "/rulez");
        assert_eq!(error(json!({})), "/rules");
        assert_eq!(error(rule(json!({"seal": {"fields": ["a"]}}))), "/rules/0/seal/fields/0");
        assert_eq!(error(rule(json!({"apply_to": "sideways"}))), "/rules/0/apply_to");
        assert_eq!(error(rule(json!({"on_error": "forward_unchanged"}))), "/rules/0/on_error");
        assert_eq!(error(rule(json!({"context": {"t": {"body": "/a/*"}}}))), "/rules/0/context/t/body");
        assert_eq!(error(rule(json!({"match": {"path": "x"}}))), "/rules/0/match/path");
        assert_eq!(
            error(rule(json!({"open": {"fields": ["/a"], "readers": [{"claim": "/r"}]}}))),
            "/rules/0/open/readers/0"
        );
        assert_eq!(
            error(json!({"rules": [{"name": "a", "verify": true}, {"name": "a", "verify": true}]})),
            "/rules/1/name"
        );
        assert_eq!(error(json!({"rules": [{"name": "idle"}]})), "/rules/0");
    }

    #[test]
    fn vault_transit_has_defaults_and_located_errors() {
        let with = |keys: Value| json!({"keys": keys, "rules": [{"name": "r", "seal": {"fields": ["/a"]}}]});
        let minimal = json!({"vault_transit": {"cluster": "bao", "key": "orders", "token_env": "BAO_TOKEN"}});
        let policy = Policy::from_value(&with(minimal)).unwrap();
        assert_eq!(policy.keys, KeySource::None);
        let transit = policy.vault_transit.clone().unwrap();
        assert_eq!(
            (transit.mount.as_str(), transit.authority.as_str(), transit.source().as_str()),
            ("transit", "bao", "transit:transit/orders")
        );
        assert_eq!(transit.limits, DataKeyLimits::default());
        // Sealing needs no local A256GCM key with a KMS; the token comes from the environment.
        assert!(policy.load_keyring(|_| None).is_ok());
        let token = policy
            .load_kms_token(|name| (name == "BAO_TOKEN").then(|| "s.secret".to_owned()))
            .unwrap();
        assert_eq!(token.unwrap().expose(), b"s.secret");
        let unset = policy.load_kms_token(|_| None).unwrap_err();
        assert!(
            matches!(&unset, ConfigError::Invalid { at, .. } if at == "/keys/vault_transit/token_env"),
            "{unset}"
        );
        let full = json!({"env": "EVENTSEAL_KEYS", "vault_transit": {
            "cluster": "bao", "authority": "bao.internal", "mount": "kms/eu", "key": "orders", "token_env": "T",
            "timeout_ms": 500, "max_seals_per_key": 10, "max_key_age_ms": 60000, "refresh_ahead_ms": 5000,
            "cache_keys": 8, "cache_ttl_ms": 120000, "backoff_initial_ms": 100, "backoff_max_ms": 5000,
            "max_unwraps_per_body": 3
        }});
        let policy = Policy::from_value(&with(full)).unwrap();
        assert_eq!(policy.keys, KeySource::Env("EVENTSEAL_KEYS".into()));
        let limits = policy.vault_transit.unwrap().limits;
        assert_eq!(
            (
                limits.max_seals_per_key,
                limits.cache_keys,
                limits.timeout_ms,
                limits.max_unwraps_per_body
            ),
            (10, 8, 500, 3)
        );
        for (transit, at) in [
            (json!({"key": "k", "token_env": "T"}), "/keys/vault_transit/cluster"),
            (json!({"cluster": "c", "token_env": "T"}), "/keys/vault_transit/key"),
            (json!({"cluster": "c", "key": "k"}), "/keys/vault_transit/token_env"),
            (
                json!({"cluster": "c", "key": "k", "token_env": "T", "token": "s.x"}),
                "/keys/vault_transit/token",
            ),
            (json!({"cluster": "c", "key": "a/b", "token_env": "T"}), "/keys/vault_transit/key"),
            (
                json!({"cluster": "c", "key": "k", "mount": "/x", "token_env": "T"}),
                "/keys/vault_transit/mount",
            ),
            (
                json!({"cluster": "c", "key": "k", "token_env": "T", "max_seals_per_key": 0}),
                "/keys/vault_transit/max_seals_per_key",
            ),
            (
                json!({"cluster": "c", "key": "k", "token_env": "T", "max_unwraps_per_body": 0}),
                "/keys/vault_transit/max_unwraps_per_body",
            ),
            (
                json!({"cluster": "c", "key": "k", "token_env": "T", "max_key_age_ms": 5000, "refresh_ahead_ms": 5000}),
                "/keys/vault_transit/refresh_ahead_ms",
            ),
            (
                json!({"cluster": "c", "key": "k", "token_env": "T", "backoff_initial_ms": 500, "backoff_max_ms": 100}),
                "/keys/vault_transit/backoff_max_ms",
            ),
        ] {
            let err = Policy::from_value(&with(json!({"vault_transit": transit}))).unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid { at: got, .. } if got == at), "{at}: {err}");
            assert!(!err.to_string().contains("s.x"));
        }
    }

    #[test]
    fn audit_delivery_has_defaults_and_located_errors() {
        let with = |audit: Value| json!({"audit": audit, "rules": [{"name": "r", "verify": true}]});
        let policy = Policy::from_value(&with(json!({"collector": {"cluster": "audit"}}))).unwrap();
        assert_eq!(policy.audit, Some(AuditDelivery::new("audit")));
        let full = with(json!({
            "collector": {"cluster": "c", "path": "/in", "authority": "collector.example"},
            "batch_records": 5, "buffer_records": 20, "flush_interval_ms": 250, "timeout_ms": 500
        }));
        let audit = Policy::from_value(&full).unwrap().audit.unwrap();
        assert_eq!(
            (
                audit.path.as_str(),
                audit.authority.as_str(),
                audit.batch_records,
                audit.buffer_records
            ),
            ("/in", "collector.example", 5, 20)
        );
        assert_eq!((audit.flush_interval_ms, audit.timeout_ms), (250, 500));
        assert!(
            Policy::from_value(&json!({"rules": [{"name": "r", "verify": true}]}))
                .unwrap()
                .audit
                .is_none()
        );
        assert_eq!(error(with(json!({}))), "/audit/collector");
        assert_eq!(error(with(json!({"collector": {"path": "/a"}}))), "/audit/collector/cluster");
        assert_eq!(error(with(json!({"collector": {"cluster": ""}}))), "/audit/collector/cluster");
        assert_eq!(
            error(with(json!({"collector": {"cluster": "c", "path": "a"}}))),
            "/audit/collector/path"
        );
        assert_eq!(
            error(with(json!({"collector": {"cluster": "c", "url": "x"}}))),
            "/audit/collector/url"
        );
        assert_eq!(
            error(with(json!({"collector": {"cluster": "c"}, "batch_records": 0}))),
            "/audit/batch_records"
        );
        assert_eq!(
            error(with(
                json!({"collector": {"cluster": "c"}, "batch_records": 10, "buffer_records": 5})
            )),
            "/audit/buffer_records"
        );
        assert_eq!(
            error(with(json!({"collector": {"cluster": "c"}, "timeout_ms": "1s"}))),
            "/audit/timeout_ms"
        );
    }

    #[test]
    fn keyring_must_serve_the_rules() {
        let policy = Policy::from_value(&json!({"rules": [{"name": "s", "sign": true}]})).unwrap();
        let jwks =
            r#"{"keys":[{"kty":"oct","kid":"k","alg":"A256GCM","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","status":"primary"}]}"#;
        let err = policy.load_keyring(|_| Some(jwks.to_owned())).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                at: "/rules/0/sign".into(),
                expected: "a keyring with a primary HS256 key".into()
            }
        );
        let missing = policy.load_keyring(|_| None).unwrap_err();
        assert!(missing.to_string().contains("EVENTSEAL_KEYS"), "{missing}");
    }
}
