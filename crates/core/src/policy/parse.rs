//! Reading a policy from its configuration document (`docs/CONFIG.md`). Parsing is strict:
//! an unknown member is an error, because a typo in a security policy must not silently
//! turn a rule off. Every error names the exact JSON location.

use super::{
    AuditDelivery, ConfigError, ContextSource, Denied, EnvoyHeaders, FieldSet, Grant, KeySource, Match, OnError, OpenGroup, PathMatch,
    Policy, PrincipalSource, Protocol, Rule, invalid,
};
use crate::json::Limits;
use crate::keyring::KeyId;
use crate::kms::{DataKeyLimits, VaultTransit};
use crate::nats::SubjectPattern;
use crate::pointer::FieldPath;
use crate::webhook::DEFAULT_TOLERANCE_SECS;

/// The largest `signatures.replay_capacity`: 2^24 ids, 256 MiB of entries.
const MAX_REPLAY_CAPACITY: usize = 1 << 24;
use serde_json::{Map, Value};

/// A configuration node with its JSON location, for precise errors.
#[derive(Clone, Copy)]
struct Node<'a> {
    value: &'a Value,
    at: &'a str,
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
        let root =
            Node { value: doc, at: "" }.object(&["protocol", "keys", "principal", "limits", "signatures", "audit", "envoy", "rules"])?;
        let mut policy = Policy {
            rules: Vec::new(),
            limits: Limits::default(),
            principal: PrincipalSource::None,
            keys: KeySource::Env("EVENTSEAL_KEYS".to_owned()),
            vault_transit: None,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            replay_capacity: crate::DEFAULT_REPLAY_CAPACITY,
            audit: None,
            envoy_headers: EnvoyHeaders::Forward,
            protocol: Protocol::Http,
        };
        member(root, "", "protocol", |n| {
            policy.protocol = match n.string()? {
                "http" => Protocol::Http,
                "nats" => Protocol::Nats,
                _ => return Err(invalid(n.at, "\"http\" or \"nats\"")),
            };
            Ok(())
        })?;
        member(root, "", "keys", |n| {
            (policy.keys, policy.vault_transit) = parse_key_source(n)?;
            Ok(())
        })?;
        member(root, "", "principal", |n| {
            policy.principal = parse_principal(n)?;
            // A NATS client names no header an edge could vouch for, and carries no JWT
            // that jwt_authn verified: only the TLS peer identifies it.
            if policy.protocol == Protocol::Nats && !matches!(policy.principal, PrincipalSource::PeerCertificate) {
                return Err(invalid(&format!("{}/source", n.at), "\"mtls\" with \"protocol\": \"nats\""));
            }
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
            let map = n.object(&["tolerance_seconds", "replay_capacity"])?;
            member(map, n.at, "tolerance_seconds", |n| {
                policy.tolerance_secs = n.positive()?;
                Ok(())
            })?;
            member(map, n.at, "replay_capacity", |n| {
                let capacity = n.positive()?;
                if capacity > MAX_REPLAY_CAPACITY as u64 {
                    return Err(invalid(n.at, "at most 16777216 (2^24) ids"));
                }
                policy.replay_capacity = capacity as usize;
                Ok(())
            })
        })?;
        member(root, "", "audit", |n| {
            policy.audit = Some(parse_audit(n)?);
            Ok(())
        })?;
        member(root, "", "envoy", |n| {
            if policy.protocol == Protocol::Nats {
                return Err(invalid(
                    n.at,
                    "no \"envoy\" member with \"protocol\": \"nats\" (a NATS message has no HTTP headers to hold)",
                ));
            }
            let map = n.object(&["headers"])?;
            member(map, n.at, "headers", |n| {
                policy.envoy_headers = match n.string()? {
                    "forward" => EnvoyHeaders::Forward,
                    "hold" => EnvoyHeaders::Hold,
                    _ => return Err(invalid(n.at, "\"forward\" or \"hold\"")),
                };
                Ok(())
            })
        })?;
        let rules = root.get("rules").ok_or_else(|| invalid("/rules", "an array of rules"))?;
        each(
            Node {
                value: rules,
                at: "/rules",
            },
            |n| {
                let rule = parse_rule(n, policy.protocol)?;
                if policy.rules.iter().any(|r| r.name == rule.name) {
                    return Err(invalid(&format!("{}/name", n.at), "a name no other rule has"));
                }
                policy.rules.push(rule);
                Ok(())
            },
        )?;
        Ok(policy)
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
        "max_unwraps_in_flight",
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
    let mut in_flight = limits.max_unwraps_in_flight as u64;
    number("max_unwraps_in_flight", 1, 4096, &mut in_flight)?;
    limits.max_unwraps_in_flight = usize::try_from(in_flight).unwrap_or(limits.max_unwraps_in_flight);
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

fn parse_rule(n: Node<'_>, protocol: Protocol) -> Result<Rule, ConfigError> {
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
        rule.matcher = parse_match(m, protocol)?;
        Ok(())
    })?;
    member(map, n.at, "apply_to", |m| {
        (rule.request, rule.response) = match (protocol, m.string()?) {
            (Protocol::Http, "request") | (Protocol::Nats, "publish") => (true, false),
            (Protocol::Http, "response") | (Protocol::Nats, "delivery") => (false, true),
            (_, "both") => (true, true),
            (Protocol::Http, _) => return Err(invalid(m.at, "\"request\", \"response\" or \"both\"")),
            (Protocol::Nats, _) => return Err(invalid(m.at, "\"publish\", \"delivery\" or \"both\"")),
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
                .push((name.clone(), parse_context_source(Node { value: source, at: &at }, protocol)?));
        }
    }
    member(map, n.at, "verify", |m| {
        rule.verify = m.boolean()?;
        Ok(())
    })?;
    member(map, n.at, "sign", |m| {
        rule.sign = m.boolean()?;
        if rule.sign && protocol == Protocol::Nats {
            // Signing a PUB would turn it into an HPUB, which a client that did not ask for
            // headers cannot take back on delivery.
            return Err(invalid(m.at, "false: the NATS gateway verifies signatures but does not sign"));
        }
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
    if protocol == Protocol::Nats && rule.producers.is_some() && !rule.request {
        return Err(invalid(
            &format!("{}/producers", n.at),
            "a rule that applies to publishes (\"apply_to\": \"publish\" or \"both\"): producers are checked when they publish",
        ));
    }
    if !rule.has_body_actions() && rule.producers.is_none() {
        return Err(invalid(
            n.at,
            "at least one of \"verify\", \"seal\", \"open\", \"sign\" or \"producers\"",
        ));
    }
    Ok(rule)
}

fn parse_match(n: Node<'_>, protocol: Protocol) -> Result<Match, ConfigError> {
    let map = match protocol {
        Protocol::Http => n.object(&["methods", "path", "path_prefix", "host", "headers"])?,
        Protocol::Nats => n.object(&["subject", "headers"])?,
    };
    let mut m = Match::default();
    member(map, n.at, "subject", |s| {
        let pattern = s.string()?;
        m.subject = Some(SubjectPattern::parse(pattern).map_err(|e| invalid(s.at, format!("a NATS subject pattern ({e})")))?);
        Ok(())
    })?;
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

fn parse_context_source(n: Node<'_>, protocol: Protocol) -> Result<ContextSource, ConfigError> {
    let (map, expected) = match protocol {
        Protocol::Http => (
            n.object(&["body", "header", "literal"])?,
            "exactly one of {\"body\": pointer}, {\"header\": name} or {\"literal\": value}",
        ),
        Protocol::Nats => (
            n.object(&["body", "header", "literal", "subject_token"])?,
            "exactly one of {\"body\": pointer}, {\"header\": name}, {\"subject_token\": position} or {\"literal\": value}",
        ),
    };
    if map.len() != 1 {
        return Err(invalid(n.at, expected));
    }
    let (kind, value) = map.iter().next().ok_or_else(|| invalid(n.at, expected))?;
    let at = format!("{}/{kind}", n.at);
    if kind == "subject_token" {
        let position = Node { value, at: &at }.positive()?;
        let position = usize::try_from(position)
            .ok()
            .filter(|p| *p <= crate::nats::MAX_CONTROL_LINE)
            .ok_or_else(|| invalid(&at, "a token position from 1"))?;
        return Ok(ContextSource::SubjectToken(position));
    }
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
    fn envoy_headers_are_forward_by_default_hold_on_request_and_strict() {
        let base = |envoy: Option<serde_json::Value>| {
            let mut doc = serde_json::json!({"rules": [{"name": "r", "match": {"path": "/"}, "verify": true}]});
            if let Some(envoy) = envoy {
                doc["envoy"] = envoy;
            }
            Policy::from_value(&doc)
        };
        assert_eq!(base(None).unwrap().envoy_headers, EnvoyHeaders::Forward);
        let hold = base(Some(serde_json::json!({"headers": "hold"}))).unwrap();
        assert_eq!(hold.envoy_headers, EnvoyHeaders::Hold);
        let wrong = base(Some(serde_json::json!({"headers": "held"}))).unwrap_err();
        assert!(wrong.to_string().contains("/envoy/headers"), "{wrong}");
        let unknown = base(Some(serde_json::json!({"hold": true}))).unwrap_err();
        assert!(unknown.to_string().contains("/envoy/hold"), "{unknown}");
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
    fn nats_policies_match_subjects_and_refuse_http_members() {
        let policy = Policy::from_value(&json!({
            "protocol": "nats",
            "principal": {"source": "mtls"},
            "rules": [
                {"name": "in", "match": {"subject": "orders.*.>"}, "producers": ["spiffe://x/*"],
                 "context": {"tenant": {"subject_token": 2}}, "seal": {"fields": ["/card"]}},
                {"name": "out", "match": {"subject": "orders.>"}, "apply_to": "delivery",
                 "context": {"tenant": {"subject_token": 2}}, "open": {"fields": ["/card"], "readers": ["*"]}},
            ],
        }))
        .unwrap();
        assert_eq!(policy.protocol, Protocol::Nats);
        assert_eq!((policy.rules[0].request, policy.rules[0].response), (true, false));
        assert_eq!((policy.rules[1].request, policy.rules[1].response), (false, true));
        assert_eq!(policy.rules[0].context, vec![("tenant".to_owned(), ContextSource::SubjectToken(2))]);
        assert!(policy.rules[0].matcher.subject.as_ref().unwrap().matches("orders.eu.created"));
        let nats = |rule: Value| error(json!({"protocol": "nats", "rules": [rule]}));
        assert_eq!(
            nats(json!({"name": "a", "match": {"path": "/x"}, "verify": true})),
            "/rules/0/match/path"
        );
        assert_eq!(
            nats(json!({"name": "a", "match": {"subject": "a..b"}, "verify": true})),
            "/rules/0/match/subject"
        );
        assert_eq!(
            nats(json!({"name": "a", "apply_to": "request", "verify": true})),
            "/rules/0/apply_to"
        );
        assert_eq!(nats(json!({"name": "a", "sign": true})), "/rules/0/sign");
        assert_eq!(
            nats(json!({"name": "a", "apply_to": "delivery", "producers": ["*"]})),
            "/rules/0/producers"
        );
        assert_eq!(
            nats(json!({"name": "a", "context": {"t": {"subject_token": 0}}, "verify": true})),
            "/rules/0/context/t/subject_token"
        );
        assert_eq!(
            error(json!({"protocol": "nats", "principal": {"source": "header", "header": "x"}, "rules": []})),
            "/principal/source"
        );
        assert_eq!(
            error(json!({"protocol": "nats", "envoy": {"headers": "hold"}, "rules": []})),
            "/envoy"
        );
        // And the other way round: HTTP policies know no subjects.
        assert_eq!(
            error(json!({"rules": [{"name": "a", "match": {"subject": "a"}, "verify": true}]})),
            "/rules/0/match/subject"
        );
        assert_eq!(
            error(json!({"rules": [{"name": "a", "context": {"t": {"subject_token": 1}}, "verify": true}]})),
            "/rules/0/context/t/subject_token"
        );
        assert_eq!(error(json!({"protocol": "mqtt", "rules": []})), "/protocol");
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
                expected: "a keyring with a primary signing key that can sign (HS256, or Ed25519 with its private key)".into()
            }
        );
        let missing = policy.load_keyring(|_| None).unwrap_err();
        assert!(missing.to_string().contains("EVENTSEAL_KEYS"), "{missing}");
    }
}
