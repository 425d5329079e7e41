//! The upstream behind Envoy: an HTTP/1.1 server on 127.0.0.1 that records every request
//! it receives (headers, body bytes, whether the body ended) and answers with the response
//! it is told to give.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A response to give: headers with `:status`, body chunks.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Headers, `:status` included.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// In how many writes the body goes out.
    pub chunks: usize,
}

/// One request as the upstream saw it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// Headers, with `:method`, `:path` and `:authority` from the request line and `host`.
    pub headers: Vec<(String, String)>,
    /// The body bytes that arrived.
    pub body: Vec<u8>,
    /// Whether the body ended as framed (the end of stream).
    pub end_of_stream: bool,
    /// Whether the upstream answered it.
    pub answered: bool,
    /// Whether the connection is done with it (answered, or closed first).
    pub done: bool,
}

#[derive(Default)]
struct State {
    answer: Option<Answer>,
    received: Vec<Received>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    /// Connections accepted since the start.
    connections: AtomicUsize,
}

/// The recording upstream; stops accepting on drop.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts the server on a free loopback port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
        });
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accept.connections.fetch_add(1, Ordering::SeqCst);
                let connection = Arc::clone(&accept);
                std::thread::spawn(move || serve(&connection, stream));
            }
        });
        Upstream { addr, shared }
    }

    /// How many connections it accepted since it started.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Sets the answer for the next requests and forgets what was received.
    pub fn reset(&self, answer: Answer) {
        let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.answer = Some(answer);
        state.received.clear();
    }

    /// What was received since the last [`Upstream::reset`], once every request the
    /// upstream started to read is done (or `settle` passed without news).
    pub fn received(&self, settle: Duration) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Give a request that Envoy is still writing (e.g. headers before a reset) time to land.
        let quiet_until = Instant::now() + settle;
        loop {
            let pending = state.received.iter().any(|r| !r.done);
            let now = Instant::now();
            if (!pending && now >= quiet_until) || now >= deadline {
                return state.received.clone();
            }
            let wait = if pending { deadline - now } else { quiet_until - now };
            state = self
                .shared
                .changed
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn update(shared: &Shared, index: usize, f: impl FnOnce(&mut Received)) {
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(received) = state.received.get_mut(index) {
        f(received);
    }
    drop(state);
    shared.changed.notify_all();
}

fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut wire = Wire::new(stream);
    // Keep-alive: one request after the other on this connection.
    loop {
        let Some(request_line) = wire.line() else { return };
        if request_line.is_empty() {
            continue;
        }
        let mut parts = request_line.split(' ');
        let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let Some(headers) = wire.headers() else { return };
        let host = headers
            .iter()
            .find(|(n, _)| n == "host")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut all = vec![
            (":method".to_owned(), method.to_owned()),
            (":path".to_owned(), path.to_owned()),
            (":authority".to_owned(), host),
        ];
        all.extend(headers.iter().cloned());
        let index = {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.received.push(Received {
                headers: all,
                ..Received::default()
            });
            state.received.len() - 1
        };
        shared.changed.notify_all();
        let mut body = Vec::new();
        let ended = wire.body(&headers, &mut body, false);
        update(shared, index, |r| {
            r.body = body;
            r.end_of_stream = ended;
            r.done = !ended;
        });
        if !ended {
            return;
        }
        let answer = shared.state.lock().unwrap_or_else(PoisonError::into_inner).answer.clone();
        let written = answer.as_ref().is_some_and(|answer| respond(&mut writer, answer).is_ok());
        update(shared, index, |r| {
            r.answered = written;
            r.done = true;
        });
        if !written {
            return;
        }
    }
}

fn respond(writer: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let status = answer
        .headers
        .iter()
        .find(|(n, _)| n == ":status")
        .map_or("200", |(_, v)| v.as_str());
    let mut head = format!("HTTP/1.1 {status} Status\r\n");
    for (name, value) in answer.headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    // HTTP/1.1 frames a body explicitly, else it runs to the close, and Envoy would wait
    // for the connection to end before answering the client.
    let framed = answer
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"));
    if !framed {
        let length = answer.body.as_ref().map_or(0, Vec::len);
        head.push_str(&format!("content-length: {length}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.flush()?;
    if let Some(body) = &answer.body {
        let parts = crate::case::chunks(body, answer.chunks);
        let many = parts.len() > 1;
        for part in parts {
            writer.write_all(part)?;
            writer.flush()?;
            if many {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    Ok(())
}

/// A buffered reader over a connection from Envoy: request lines, headers, and bodies as
/// framed (content-length, chunked, or until the close). Hand-written because this is the
/// server side, which must see how the request arrived; the tests' client is
/// `eventseal_testkit::http`.
pub struct Wire<S> {
    stream: S,
    buffer: Vec<u8>,
    at: usize,
}

impl<S: Read> Wire<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            buffer: Vec::new(),
            at: 0,
        }
    }

    /// Reads more bytes into the buffer; `false` at the end of the stream or on an error.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next line without its CRLF.
    pub fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer[self.at..].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[self.at..self.at + end]).into_owned();
                self.at += end + 2;
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Exactly `n` bytes, or what arrived before the end (and `false`).
    pub fn bytes(&mut self, n: usize, into: &mut Vec<u8>) -> bool {
        while self.buffer.len() - self.at < n {
            if !self.fill() {
                into.extend_from_slice(&self.buffer[self.at..]);
                self.at = self.buffer.len();
                return false;
            }
        }
        into.extend_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        true
    }

    /// Everything until the end of the stream.
    pub fn rest(&mut self, into: &mut Vec<u8>) {
        while self.fill() {}
        into.extend_from_slice(&self.buffer[self.at..]);
        self.at = self.buffer.len();
    }

    /// Headers up to the empty line, names in lower case; `None` if the stream ended first.
    pub fn headers(&mut self) -> Option<Vec<(String, String)>> {
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                return Some(headers);
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }

    /// A body framed by `headers` (content-length, chunked, or until the end); whether it
    /// ended as framed.
    pub fn body(&mut self, headers: &[(String, String)], into: &mut Vec<u8>, until_close: bool) -> bool {
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let Some(size) = self.line() else { return false };
                let size = size.split(';').next().unwrap_or_default().trim();
                let Ok(size) = usize::from_str_radix(size, 16) else { return false };
                if size == 0 {
                    // Trailers, then the empty line.
                    while let Some(line) = self.line() {
                        if line.is_empty() {
                            return true;
                        }
                    }
                    return false;
                }
                if !self.bytes(size, into) || self.line().is_none() {
                    return false;
                }
            }
        }
        if let Some(length) = header("content-length") {
            return length.parse().is_ok_and(|n| self.bytes(n, into));
        }
        if until_close {
            self.rest(into);
        }
        true
    }
}
