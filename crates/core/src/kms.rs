//! Envelope encryption with Vault Transit (FORMAT.md §10): the configuration of a key source,
//! the Transit requests and responses, and the data-key cache that decides when to call.
//!
//! Everything here is pure: the host sends the calls ([`TransitCall`]) and reports their
//! outcome ([`DataKeyCache::complete`]); time is passed in as milliseconds. The cache
//! keeps one data key for sealing (reused within [`DataKeyLimits`], refreshed ahead of its
//! end), unwrapped data keys for opening (bounded, with a time to live), at most one call in
//! flight per purpose (one `datakey` call, one `decrypt` call per wrapped key: no thundering
//! herd), and backs off with jitter after a failure, during which callers get a
//! `Retry-After`.

use crate::datakey::{DataKey, DataKeyLookup, Unwrap, VAULT_TRANSIT_KID_PREFIX, WrappedKey};
use crate::keyring::KeyId;
use crate::secret::SecretBytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use core::fmt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// How data keys are reused and cached, and how failures back off. All times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataKeyLimits {
    /// Values one data key may seal before a new one is asked for (default 100 000).
    pub max_seals_per_key: u64,
    /// Age after which a data key no longer seals (default 5 minutes).
    pub max_key_age_ms: u64,
    /// How long before the end of a data key (by age, or by the last tenth of its seals) a
    /// new one is asked for, while the current one keeps sealing (default 30 s).
    pub refresh_ahead_ms: u64,
    /// Unwrapped data keys kept for opening (default 1024); the oldest go first.
    pub cache_keys: usize,
    /// How long an unwrapped data key (or a KMS refusal) is remembered (default 10 minutes).
    pub cache_ttl_ms: u64,
    /// Wait after the first failure; doubles per further failure (default 250 ms).
    pub backoff_initial_ms: u64,
    /// Longest wait between attempts (default 30 s).
    pub backoff_max_ms: u64,
    /// A call not reported within this time counts as failed (default 2 s).
    pub timeout_ms: u64,
    /// Distinct wrapped data keys one body may need unwrapped (default 8); a body with more
    /// is refused before any call.
    pub max_unwraps_per_body: usize,
    /// `decrypt` calls out at once (default 64): whoever sends envelopes chooses their
    /// wrapped keys, so without a bound they could keep any number of calls out; beyond
    /// it a body that needs another is refused as the KMS being unavailable (503).
    pub max_unwraps_in_flight: usize,
}

impl Default for DataKeyLimits {
    fn default() -> Self {
        Self {
            max_seals_per_key: 100_000,
            max_key_age_ms: 300_000,
            refresh_ahead_ms: 30_000,
            cache_keys: 1024,
            cache_ttl_ms: 600_000,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            timeout_ms: 2_000,
            max_unwraps_per_body: 8,
            max_unwraps_in_flight: 64,
        }
    }
}

/// A Vault Transit key source of the policy (`keys.vault_transit`, docs/CONFIG.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultTransit {
    /// The Envoy cluster that reaches the KMS.
    pub cluster: String,
    /// The `:authority` of requests to the KMS.
    pub authority: String,
    /// The Transit mount path (default `transit`).
    pub mount: String,
    /// The Transit key name.
    pub key: String,
    /// The environment variable holding the KMS token (never the token itself).
    pub token_env: String,
    /// Reuse, caching, backoff and the per-call timeout.
    pub limits: DataKeyLimits,
}

impl VaultTransit {
    /// The kid of this key source, written into the envelopes it seals.
    pub fn source(&self) -> KeyId {
        // The policy parser validated mount and key with the same rule.
        KeyId::vault_transit(&self.mount, &self.key).unwrap_or_else(|_| KeyId::from_trusted(String::new()))
    }

    /// The HTTP call that fulfils `need`, authenticated with `token`.
    pub fn call(&self, need: &Need, token: &SecretBytes) -> TransitCall {
        let (path, body) = match need {
            Need::Issue => (
                format!("/v1/{}/datakey/plaintext/{}", self.mount, self.key),
                r#"{"bits":256}"#.to_owned(),
            ),
            Need::Unwrap(wrapped) => (
                format!("/v1/{}/decrypt/{}", self.mount, self.key),
                serde_json::json!({ "ciphertext": wrapped.as_str() }).to_string(),
            ),
        };
        TransitCall {
            path,
            authority: self.authority.clone(),
            token: SecretBytes::new(token.expose().to_vec()),
            body: body.into_bytes(),
        }
    }

    /// Reads the KMS answer to `need`: HTTP `status` and `body` (None when the call failed,
    /// timed out or was reset).
    pub fn outcome(&self, need: &Need, status: Option<u16>, body: &[u8]) -> Outcome {
        #[derive(Deserialize)]
        struct Reply {
            data: Data,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(deserialize_with = "secret_text")]
            plaintext: Zeroizing<String>,
            #[serde(default)]
            ciphertext: Option<String>,
        }
        match status {
            Some(200) => {}
            // Transit answers 400 to a ciphertext that is not its own; anything else (403 bad
            // token, 5xx sealed or down, 429) says nothing about the envelope.
            Some(400) if matches!(need, Need::Unwrap(_)) => return Outcome::Refused,
            _ => return Outcome::Failed,
        }
        let Ok(reply) = serde_json::from_slice::<Reply>(body) else {
            return Outcome::Failed;
        };
        let Ok(bytes) = STANDARD.decode(reply.data.plaintext.as_bytes()) else {
            return Outcome::Failed;
        };
        let key = SecretBytes::new(bytes);
        let wrapped = match need {
            Need::Issue => match reply.data.ciphertext.as_deref().map(WrappedKey::parse) {
                Some(Ok(wrapped)) => wrapped,
                _ => return Outcome::Failed,
            },
            Need::Unwrap(wrapped) => wrapped.clone(),
        };
        match DataKey::new(self.source(), &key, wrapped) {
            Ok(key) => Outcome::Key(key),
            // A decrypt that yields no 32-byte key: not a data key of ours (FORMAT.md §10.3).
            Err(_) if matches!(need, Need::Unwrap(_)) => Outcome::Refused,
            Err(_) => Outcome::Failed,
        }
    }
}

/// A Transit key named by an envelope's kid, for rewrapping its data keys under the key's
/// latest version (`rewrap`, FORMAT.md §10.4). Like [`VaultTransit`], it builds the request
/// and reads the reply; the host only moves bytes. `rewrap` never returns a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitRewrap {
    mount: String,
    key: String,
}

/// Why Transit's answer to a rewrap gave no new wrapped key. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewrapError {
    /// Transit answered with this status; `errors` is its `errors` list, as JSON text.
    Status {
        /// The HTTP status.
        status: u16,
        /// Transit's `errors` member, or empty.
        errors: String,
    },
    /// A 200 whose body holds no Transit ciphertext.
    NoCiphertext,
}

impl fmt::Display for RewrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { status, errors } => write!(f, "the KMS answered {status} to rewrap {errors}"),
            Self::NoCiphertext => f.write_str("the KMS's rewrap answer has no Transit ciphertext"),
        }
    }
}

impl std::error::Error for RewrapError {}

impl TransitRewrap {
    /// The Transit key of a `transit:<mount>/<key>` kid; `None` for any other kid.
    pub fn for_kid(kid: &str) -> Option<Self> {
        let (mount, key) = kid.strip_prefix(VAULT_TRANSIT_KID_PREFIX)?.rsplit_once('/')?;
        KeyId::vault_transit(mount, key).ok()?;
        Some(Self {
            mount: mount.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The Transit key as `<mount>/<key>`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.mount, self.key)
    }

    /// `POST /v1/<mount>/rewrap/<key>`: the same data key, wrapped under the latest version.
    pub fn call(&self, authority: &str, wrapped: &WrappedKey, token: &SecretBytes) -> TransitCall {
        TransitCall {
            path: format!("/v1/{}/rewrap/{}", self.mount, self.key),
            authority: authority.to_owned(),
            token: SecretBytes::new(token.expose().to_vec()),
            body: serde_json::json!({ "ciphertext": wrapped.as_str() }).to_string().into_bytes(),
        }
    }

    /// Reads Transit's answer to [`TransitRewrap::call`].
    ///
    /// # Errors
    /// [`RewrapError`] for any status but 200, or a reply without a Transit ciphertext.
    pub fn outcome(status: u16, body: &[u8]) -> Result<WrappedKey, RewrapError> {
        let reply = serde_json::from_slice::<serde_json::Value>(body).ok();
        if status != 200 {
            let errors = reply
                .as_ref()
                .and_then(|v| v.get("errors"))
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(RewrapError::Status { status, errors });
        }
        reply
            .as_ref()
            .and_then(|v| v["data"]["ciphertext"].as_str())
            .and_then(|c| WrappedKey::parse(c).ok())
            .ok_or(RewrapError::NoCiphertext)
    }
}

/// A JSON string that holds key material, wiped when dropped.
fn secret_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(deserializer).map(Zeroizing::new)
}

/// What a call asks the KMS for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Need {
    /// A new data key (`datakey/plaintext`).
    Issue,
    /// The data key of this wrapped key (`decrypt`).
    Unwrap(WrappedKey),
}

/// One HTTP request to the KMS: `POST` with a JSON body and the token in `X-Vault-Token`.
pub struct TransitCall {
    /// The request path.
    pub path: String,
    /// The `:authority`.
    pub authority: String,
    /// The token, for the `X-Vault-Token` header only.
    pub token: SecretBytes,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl TransitCall {
    /// The request headers (HTTP/2 pseudo-headers first, as Envoy's `dispatch_http_call` takes them).
    ///
    /// The token is in them: never log the result.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (":method", "POST".to_owned()),
            (":path", self.path.clone()),
            (":authority", self.authority.clone()),
            ("content-type", "application/json".to_owned()),
            ("x-vault-token", String::from_utf8_lossy(self.token.expose()).into_owned()),
        ]
    }
}

impl fmt::Debug for TransitCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitCall").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The result of one KMS call, as reported by the host.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// A data key: issued (`datakey`) or unwrapped (`decrypt`).
    Key(DataKey),
    /// The KMS refused to unwrap: the wrapped key is not one of its ciphertexts.
    Refused,
    /// Unreachable, timed out, or an answer that says nothing about the key.
    Failed,
}

/// Identifies one call in flight, so the host resumes exactly the streams waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

/// A call the host must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Report its outcome under this id.
    pub id: CallId,
    /// What to ask for.
    pub need: Need,
}

/// What the cache says to a stream that needs a data key.
#[derive(Debug)]
#[non_exhaustive]
pub enum Lease {
    /// Seal with this key; if `refresh` is set, also send that call (refresh ahead).
    Ready {
        /// The data key to seal with.
        key: Arc<DataKey>,
        /// A call to send without waiting for it.
        refresh: Option<Call>,
    },
    /// Send this call and pause until it completes.
    Start(Call),
    /// A call is already in flight: pause until it completes.
    Wait(CallId),
    /// The KMS is failing: refuse with 503 and this `Retry-After`, in seconds.
    Unavailable {
        /// Seconds until the next attempt.
        retry_after: u32,
    },
}

#[derive(Debug)]
enum Remembered {
    Key(Arc<DataKey>),
    Refused,
}

#[derive(Debug)]
struct Entry {
    value: Remembered,
    expires_ms: u64,
}

#[derive(Debug)]
struct Current {
    key: Arc<DataKey>,
    issued_ms: u64,
}

/// The data keys of one key source, and when to call the KMS (see the module docs).
#[derive(Debug)]
pub struct DataKeyCache {
    source: KeyId,
    limits: DataKeyLimits,
    current: Option<Current>,
    unwrapped: BTreeMap<WrappedKey, Entry>,
    issuing: Option<(CallId, u64)>,
    unwrapping: BTreeMap<WrappedKey, (CallId, u64)>,
    failures: u32,
    retry_at_ms: u64,
    next_id: u64,
    random: u64,
}

impl DataKeyCache {
    /// An empty cache for the key source `source`; `seed` drives the backoff jitter (take it
    /// from the OS RNG; tests fix it).
    pub fn new(source: KeyId, limits: DataKeyLimits, seed: u64) -> Self {
        Self {
            source,
            limits,
            current: None,
            unwrapped: BTreeMap::new(),
            issuing: None,
            unwrapping: BTreeMap::new(),
            failures: 0,
            retry_at_ms: 0,
            next_id: 0,
            random: seed,
        }
    }

    /// The key source.
    pub fn source(&self) -> &KeyId {
        &self.source
    }

    /// A data key that can seal `seals` more values now, or what to do instead.
    pub fn lease(&mut self, now_ms: u64, seals: u64) -> Lease {
        self.expire_lost_calls(now_ms);
        let limits = self.limits;
        if let Some(current) = &self.current {
            let age = now_ms.saturating_sub(current.issued_ms);
            let used = current.key.seals();
            if age < limits.max_key_age_ms && used.saturating_add(seals) <= limits.max_seals_per_key {
                let key = Arc::clone(&current.key);
                let ending = age.saturating_add(limits.refresh_ahead_ms) >= limits.max_key_age_ms
                    || used.saturating_add(seals) > limits.max_seals_per_key - limits.max_seals_per_key / 10;
                let refresh = (ending && self.issuing.is_none() && now_ms >= self.retry_at_ms).then(|| self.start_issue(now_ms));
                return Lease::Ready { key, refresh };
            }
        }
        if let Some((id, _)) = self.issuing {
            return Lease::Wait(id);
        }
        if now_ms < self.retry_at_ms {
            return Lease::Unavailable {
                retry_after: self.retry_after(now_ms),
            };
        }
        Lease::Start(self.start_issue(now_ms))
    }

    /// After opening reported `NeedsDataKey` for `wrapped`: the call to unwrap it, the call
    /// already in flight, or `Unavailable`.
    pub fn request_unwrap(&mut self, now_ms: u64, wrapped: &WrappedKey) -> Lease {
        self.expire_lost_calls(now_ms);
        if let Some((id, _)) = self.unwrapping.get(wrapped) {
            return Lease::Wait(*id);
        }
        if now_ms < self.retry_at_ms {
            return Lease::Unavailable {
                retry_after: self.retry_after(now_ms),
            };
        }
        if self.unwrapping.len() >= self.limits.max_unwraps_in_flight.max(1) {
            return Lease::Unavailable { retry_after: 1 };
        }
        let id = self.next_call_id();
        self.unwrapping.insert(wrapped.clone(), (id, now_ms));
        Lease::Start(Call {
            id,
            need: Need::Unwrap(wrapped.clone()),
        })
    }

    /// Records the outcome of call `id`. Returns `Some(retry_after)` in seconds when it failed,
    /// for the streams that waited on it; `None` when they can go on (and try again).
    pub fn complete(&mut self, now_ms: u64, id: CallId, outcome: Outcome) -> Option<u32> {
        let need = if self.issuing.is_some_and(|(issuing, _)| issuing == id) {
            self.issuing = None;
            Need::Issue
        } else if let Some(wrapped) = self.unwrapping.iter().find(|(_, (call, _))| *call == id).map(|(w, _)| w.clone()) {
            self.unwrapping.remove(&wrapped);
            Need::Unwrap(wrapped)
        } else {
            // Unknown or already expired: its waiters were already answered.
            return None;
        };
        match outcome {
            Outcome::Key(key) if key.source() == &self.source => {
                self.failures = 0;
                self.retry_at_ms = 0;
                let key = Arc::new(key);
                self.remember(now_ms, key.wrapped().clone(), Remembered::Key(Arc::clone(&key)));
                if need == Need::Issue {
                    self.current = Some(Current { key, issued_ms: now_ms });
                }
                None
            }
            Outcome::Refused | Outcome::Key(_) => match need {
                Need::Unwrap(wrapped) => {
                    self.failures = 0;
                    self.retry_at_ms = 0;
                    self.remember(now_ms, wrapped, Remembered::Refused);
                    None
                }
                Need::Issue => Some(self.fail(now_ms)),
            },
            Outcome::Failed => Some(self.fail(now_ms)),
        }
    }

    /// The unwrapped keys as seen at `now_ms`, for opening.
    pub fn lookup(&self, now_ms: u64) -> impl DataKeyLookup + '_ {
        CacheView { cache: self, now_ms }
    }

    /// Calls in flight: one `datakey` and one `decrypt` per wrapped key at most.
    pub fn in_flight(&self) -> usize {
        usize::from(self.issuing.is_some()) + self.unwrapping.len()
    }

    /// Whether call `id` is still awaited: neither completed nor expired as lost.
    pub fn awaits(&self, id: CallId) -> bool {
        self.issuing.is_some_and(|(issuing, _)| issuing == id) || self.unwrapping.values().any(|(call, _)| *call == id)
    }

    fn remember(&mut self, now_ms: u64, wrapped: WrappedKey, value: Remembered) {
        self.unwrapped.retain(|_, e| e.expires_ms > now_ms);
        while self.unwrapped.len() >= self.limits.cache_keys.max(1) {
            let oldest = self.unwrapped.iter().min_by_key(|(_, e)| e.expires_ms).map(|(w, _)| w.clone());
            match oldest {
                Some(w) => self.unwrapped.remove(&w),
                None => break,
            };
        }
        let expires_ms = now_ms.saturating_add(self.limits.cache_ttl_ms);
        self.unwrapped.insert(wrapped, Entry { value, expires_ms });
    }

    fn start_issue(&mut self, now_ms: u64) -> Call {
        let id = self.next_call_id();
        self.issuing = Some((id, now_ms));
        Call { id, need: Need::Issue }
    }

    fn next_call_id(&mut self) -> CallId {
        self.next_id += 1;
        CallId(self.next_id)
    }

    /// A call the host never reported within twice the timeout counts as failed, so one lost
    /// callback cannot pause every stream for ever. Leases and unwrap requests run this
    /// first; a host also runs it on its timer to learn which calls it may forget.
    pub fn expire_lost_calls(&mut self, now_ms: u64) {
        let deadline = self.limits.timeout_ms.saturating_mul(2);
        let lost = |started: u64| now_ms.saturating_sub(started) > deadline;
        let mut failed = false;
        if self.issuing.is_some_and(|(_, started)| lost(started)) {
            self.issuing = None;
            failed = true;
        }
        let before = self.unwrapping.len();
        self.unwrapping.retain(|_, (_, started)| !lost(*started));
        if failed || self.unwrapping.len() != before {
            self.fail(now_ms);
        }
    }

    /// Exponential backoff with jitter: the n-th failure in a row waits between half and all
    /// of `min(max, initial * 2^(n-1))`.
    fn fail(&mut self, now_ms: u64) -> u32 {
        self.failures = self.failures.saturating_add(1);
        let exponent = self.failures.saturating_sub(1).min(32);
        let ceiling = self
            .limits
            .backoff_initial_ms
            .saturating_mul(1u64 << exponent)
            .min(self.limits.backoff_max_ms)
            .max(1);
        let half = ceiling / 2;
        let jitter = self.next_random() % (ceiling - half + 1);
        self.retry_at_ms = now_ms.saturating_add(half + jitter);
        self.retry_after(now_ms)
    }

    /// Whole seconds until the next attempt, at least 1.
    fn retry_after(&self, now_ms: u64) -> u32 {
        let wait = self.retry_at_ms.saturating_sub(now_ms);
        u32::try_from(wait.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
    }

    /// SplitMix64: plenty for jitter, which needs spread, not secrecy.
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct CacheView<'a> {
    cache: &'a DataKeyCache,
    now_ms: u64,
}

impl DataKeyLookup for CacheView<'_> {
    fn unwrap(&self, source: &str, wrapped: &WrappedKey) -> Unwrap<'_> {
        if source != self.cache.source.as_str() {
            return Unwrap::UnknownSource;
        }
        match self.cache.unwrapped.get(wrapped) {
            Some(entry) if entry.expires_ms > self.now_ms => match &entry.value {
                Remembered::Key(key) => Unwrap::Ready(key),
                Remembered::Refused => Unwrap::Refused,
            },
            _ => Unwrap::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source() -> KeyId {
        KeyId::vault_transit("transit", "orders").unwrap()
    }

    fn issued(n: u8) -> DataKey {
        let wrapped = WrappedKey::parse(&format!("vault:v1:{}", STANDARD.encode([n; 60]))).unwrap();
        DataKey::new(source(), &SecretBytes::new(vec![n; 32]), wrapped).unwrap()
    }

    #[test]
    fn rewrap_names_the_key_of_the_kid_and_reads_only_a_transit_ciphertext() {
        let rewrap = TransitRewrap::for_kid("transit:kv/transit/orders").unwrap();
        assert_eq!(rewrap.name(), "kv/transit/orders");
        assert_eq!(TransitRewrap::for_kid("orders-2026"), None);
        assert_eq!(TransitRewrap::for_kid("transit:orders"), None);
        let wrapped = issued(1).wrapped().clone();
        let call = rewrap.call("bao:8200", &wrapped, &SecretBytes::new(b"t0ken".to_vec()));
        assert_eq!(call.path, "/v1/kv/transit/rewrap/orders");
        let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(body, serde_json::json!({"ciphertext": wrapped.as_str()}));
        let newer = format!("vault:v2:{}", STANDARD.encode([2; 60]));
        let reply = serde_json::json!({"data": {"ciphertext": newer}}).to_string();
        assert_eq!(TransitRewrap::outcome(200, reply.as_bytes()).unwrap().as_str(), newer);
        assert_eq!(TransitRewrap::outcome(200, b"{}"), Err(RewrapError::NoCiphertext));
        assert_eq!(
            TransitRewrap::outcome(403, br#"{"errors":["permission denied"]}"#),
            Err(RewrapError::Status {
                status: 403,
                errors: r#"["permission denied"]"#.into()
            })
        );
    }

    #[test]
    fn unwrap_calls_out_at_once_are_bounded() {
        let mut cache = DataKeyCache::new(
            source(),
            DataKeyLimits {
                max_unwraps_in_flight: 3,
                ..limits()
            },
            1,
        );
        let keys: Vec<WrappedKey> = (0..5).map(|n| issued(n).wrapped().clone()).collect();
        let mut started = Vec::new();
        for wrapped in &keys[..3] {
            let Lease::Start(call) = cache.request_unwrap(0, wrapped) else {
                panic!("a call starts")
            };
            started.push(call.id);
        }
        // A fourth distinct key must wait for room; one already out is still shared.
        assert!(matches!(cache.request_unwrap(0, &keys[3]), Lease::Unavailable { retry_after: 1 }));
        assert!(matches!(cache.request_unwrap(0, &keys[0]), Lease::Wait(id) if id == started[0]));
        cache.complete(1, started[0], Outcome::Key(issued(0)));
        assert!(
            matches!(cache.request_unwrap(2, &keys[3]), Lease::Start(_)),
            "room again once a call completed"
        );
        assert!(matches!(cache.request_unwrap(2, &keys[4]), Lease::Unavailable { .. }));
    }

    fn limits() -> DataKeyLimits {
        DataKeyLimits {
            max_seals_per_key: 100,
            max_key_age_ms: 10_000,
            refresh_ahead_ms: 1_000,
            ..DataKeyLimits::default()
        }
    }

    fn start(lease: Lease) -> Call {
        match lease {
            Lease::Start(call) => call,
            other => panic!("expected a call to start, got {other:?}"),
        }
    }

    fn ready(lease: Lease) -> (Arc<DataKey>, Option<Call>) {
        match lease {
            Lease::Ready { key, refresh } => (key, refresh),
            other => panic!("expected a key, got {other:?}"),
        }
    }

    #[test]
    fn one_call_for_everyone_who_waits() {
        let mut cache = DataKeyCache::new(source(), limits(), 1);
        let call = start(cache.lease(0, 1));
        assert_eq!(call.need, Need::Issue);
        for _ in 0..50 {
            assert!(matches!(cache.lease(5, 1), Lease::Wait(id) if id == call.id));
        }
        assert_eq!(cache.in_flight(), 1);
        assert_eq!(cache.complete(10, call.id, Outcome::Key(issued(1))), None);
        let (key, refresh) = ready(cache.lease(10, 1));
        assert!(refresh.is_none());
        assert_eq!(key.wrapped(), issued(1).wrapped());
        // The sealer's own data key opens without a decrypt call.
        assert!(matches!(
            cache.lookup(10).unwrap(source().as_str(), key.wrapped()),
            Unwrap::Ready(_)
        ));
    }

    #[test]
    fn keys_are_refreshed_ahead_and_retired_by_age() {
        let mut cache = DataKeyCache::new(source(), limits(), 1);
        let call = start(cache.lease(0, 1));
        cache.complete(0, call.id, Outcome::Key(issued(1)));
        assert!(ready(cache.lease(8_999, 1)).1.is_none());
        let (old, refresh) = ready(cache.lease(9_000, 1));
        let refresh = refresh.expect("a refresh once within refresh_ahead of max age");
        // Only one refresh in flight; the old key keeps sealing meanwhile.
        assert!(ready(cache.lease(9_500, 1)).1.is_none());
        cache.complete(9_600, refresh.id, Outcome::Key(issued(2)));
        let (new, _) = ready(cache.lease(9_700, 1));
        assert_ne!(old.wrapped(), new.wrapped());
        // Without a refresh, an old key stops sealing at max age.
        let mut lone = DataKeyCache::new(source(), limits(), 1);
        let call = start(lone.lease(0, 1));
        lone.complete(0, call.id, Outcome::Key(issued(1)));
        assert!(matches!(lone.lease(10_000, 1), Lease::Start(_) | Lease::Wait(_)));
    }

    #[test]
    fn failures_back_off_with_jitter_and_recover() {
        let mut cache = DataKeyCache::new(source(), limits(), 7);
        let call = start(cache.lease(0, 1));
        let retry = cache.complete(100, call.id, Outcome::Failed).unwrap();
        assert_eq!(retry, 1);
        assert!(matches!(cache.lease(101, 1), Lease::Unavailable { retry_after: 1 }));
        // Fail repeatedly: the wait grows to the maximum, never beyond.
        let mut now = 100;
        let mut waits = Vec::new();
        for _ in 0..12 {
            now = cache.retry_at_ms;
            let call = start(cache.lease(now, 1));
            cache.complete(now, call.id, Outcome::Failed);
            waits.push(cache.retry_at_ms - now);
        }
        assert!(waits.iter().all(|w| *w <= 30_000), "{waits:?}");
        assert!(waits.iter().rev().take(4).all(|w| *w >= 15_000), "{waits:?}");
        assert!(matches!(cache.lease(now + 1, 1), Lease::Unavailable { retry_after } if (15..=30).contains(&retry_after)));
        // The KMS is back: the next attempt succeeds and the failures are forgotten.
        now = cache.retry_at_ms;
        let call = start(cache.lease(now, 1));
        assert_eq!(cache.complete(now, call.id, Outcome::Key(issued(3))), None);
        assert!(matches!(cache.lease(now, 1), Lease::Ready { .. }));
        assert_eq!(cache.failures, 0);
    }

    #[test]
    fn jitter_spreads_the_retries_of_separate_proxies() {
        let waits: std::collections::BTreeSet<u64> = (0..20)
            .map(|seed| {
                let mut cache = DataKeyCache::new(source(), limits(), seed);
                for _ in 0..5 {
                    let now = cache.retry_at_ms;
                    let call = start(cache.lease(now, 1));
                    cache.complete(now, call.id, Outcome::Failed);
                }
                cache.retry_at_ms
            })
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn unwraps_are_single_flight_cached_and_refusals_remembered() {
        let mut cache = DataKeyCache::new(source(), limits(), 1);
        let key = issued(4);
        let wrapped = key.wrapped().clone();
        assert!(matches!(cache.lookup(0).unwrap(source().as_str(), &wrapped), Unwrap::Pending));
        assert!(matches!(
            cache.lookup(0).unwrap("transit:transit/other", &wrapped),
            Unwrap::UnknownSource
        ));
        let call = start(cache.request_unwrap(0, &wrapped));
        assert_eq!(call.need, Need::Unwrap(wrapped.clone()));
        assert!(matches!(cache.request_unwrap(1, &wrapped), Lease::Wait(id) if id == call.id));
        cache.complete(2, call.id, Outcome::Key(key));
        assert!(matches!(cache.lookup(3).unwrap(source().as_str(), &wrapped), Unwrap::Ready(_)));
        assert!(matches!(
            cache.lookup(2 + 600_000).unwrap(source().as_str(), &wrapped),
            Unwrap::Pending
        ));
        let forged = issued(5).wrapped().clone();
        let call = start(cache.request_unwrap(10, &forged));
        assert_eq!(cache.complete(11, call.id, Outcome::Refused), None);
        assert!(matches!(cache.lookup(12).unwrap(source().as_str(), &forged), Unwrap::Refused));
    }

    #[test]
    fn a_lost_call_does_not_pause_streams_for_ever() {
        let mut cache = DataKeyCache::new(source(), limits(), 1);
        let call = start(cache.lease(0, 1));
        assert!(matches!(cache.lease(4_000, 1), Lease::Wait(_)));
        assert!(matches!(cache.lease(4_001, 1), Lease::Unavailable { .. }));
        // Its late answer is ignored.
        assert_eq!(cache.complete(4_002, call.id, Outcome::Key(issued(1))), None);
        assert!(cache.current.is_none());
    }

    #[test]
    fn a_lost_call_is_no_longer_awaited_once_expired() {
        let mut cache = DataKeyCache::new(source(), limits(), 1);
        let call = start(cache.lease(0, 1));
        cache.expire_lost_calls(4_000);
        assert!(cache.awaits(call.id), "within twice the timeout");
        cache.expire_lost_calls(4_001);
        assert!(!cache.awaits(call.id));
        assert_eq!(cache.failures, 1, "a lost call counts as a failure");
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = DataKeyCache::new(source(), DataKeyLimits { cache_keys: 3, ..limits() }, 1);
        for n in 0..10u8 {
            let key = issued(n);
            let call = start(cache.request_unwrap(u64::from(n), &key.wrapped().clone()));
            cache.complete(u64::from(n), call.id, Outcome::Key(key));
            assert!(cache.unwrapped.len() <= 3);
        }
        assert!(matches!(
            cache.lookup(10).unwrap(source().as_str(), issued(9).wrapped()),
            Unwrap::Ready(_)
        ));
        assert!(matches!(
            cache.lookup(10).unwrap(source().as_str(), issued(0).wrapped()),
            Unwrap::Pending
        ));
    }

    #[test]
    fn transit_answers_become_outcomes() {
        let transit = VaultTransit {
            cluster: "kms".into(),
            authority: "bao".into(),
            mount: "transit".into(),
            key: "orders".into(),
            token_env: "BAO_TOKEN".into(),
            limits: DataKeyLimits::default(),
        };
        let call = transit.call(&Need::Issue, &SecretBytes::new(b"s.token".to_vec()));
        assert_eq!(call.path, "/v1/transit/datakey/plaintext/orders");
        assert!(!format!("{call:?}").contains("s.token"));
        let wrapped = format!("vault:v2:{}", STANDARD.encode([1u8; 60]));
        let body = serde_json::json!({"data": {"plaintext": STANDARD.encode([7u8; 32]), "ciphertext": wrapped}}).to_string();
        let Outcome::Key(key) = transit.outcome(&Need::Issue, Some(200), body.as_bytes()) else {
            panic!("no key")
        };
        assert_eq!((key.wrapped().version(), key.source().as_str()), (2, "transit:transit/orders"));
        let unwrap = Need::Unwrap(key.wrapped().clone());
        assert!(matches!(transit.outcome(&unwrap, Some(400), b"{}"), Outcome::Refused));
        assert!(matches!(transit.outcome(&unwrap, Some(403), b"{}"), Outcome::Failed));
        assert!(matches!(transit.outcome(&unwrap, Some(503), b"{}"), Outcome::Failed));
        assert!(matches!(transit.outcome(&unwrap, None, b""), Outcome::Failed));
        assert!(matches!(transit.outcome(&Need::Issue, Some(400), b"{}"), Outcome::Failed));
        let short = serde_json::json!({"data": {"plaintext": STANDARD.encode([7u8; 16])}}).to_string();
        assert!(matches!(transit.outcome(&unwrap, Some(200), short.as_bytes()), Outcome::Refused));
    }

    proptest! {
        /// However events arrive, no data key seals more than its limit or past its age, there is
        /// never more than one issue call in flight, and the number of issue calls stays within
        /// what the limits require.
        #[test]
        fn limits_hold_for_any_workload(
            events in proptest::collection::vec((0u64..2_000, 1u64..8, any::<bool>()), 1..300),
            max_seals in 5u64..60,
            max_age in 1_000u64..20_000,
        ) {
            let limits = DataKeyLimits { max_seals_per_key: max_seals, max_key_age_ms: max_age, refresh_ahead_ms: max_age / 4, ..DataKeyLimits::default() };
            let mut cache = DataKeyCache::new(source(), limits, 3);
            let (mut now, mut calls, mut sealed, mut pending) = (0u64, 0u64, 0u64, None::<Call>);
            let mut n = 0u8;
            for (step, seals, answer_now) in events {
                now += step;
                if answer_now && let Some(call) = pending.take() {
                    n = n.wrapping_add(1);
                    cache.complete(now, call.id, Outcome::Key(issued(n)));
                }
                match cache.lease(now, seals) {
                    Lease::Ready { key, refresh } => {
                        let issued_ms = cache.current.as_ref().map(|c| c.issued_ms).unwrap_or_default();
                        prop_assert!(now - issued_ms < max_age);
                        prop_assert!(key.seals() + seals <= max_seals);
                        for _ in 0..seals { prop_assert!(key.take_seal()); }
                        sealed += seals;
                        // A call still pending here was never answered and counted as lost.
                        if let Some(call) = refresh { calls += 1; pending = Some(call); }
                    }
                    Lease::Start(call) => { calls += 1; pending = Some(call); }
                    Lease::Wait(id) => prop_assert_eq!(Some(id), pending.as_ref().map(|c| c.id)),
                    Lease::Unavailable { .. } => {}
                }
                prop_assert!(cache.in_flight() <= 1);
            }
            // Every key but the last served at least a tenth of its seals or a quarter of its age:
            // calls are bounded by the seals and the time elapsed.
            let bound = 2 + sealed / (max_seals / 10).max(1) + now / (max_age / 4).max(1) * 2;
            prop_assert!(calls <= bound, "{} calls for {} seals in {} ms", calls, sealed, now);
        }
    }
}
