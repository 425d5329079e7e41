//! A small HTTP/1.1 client (plain or mTLS with rustls) that sends a request the way a case
//! describes it, body chunks as separate writes, and reads whatever comes back, telling a
//! complete response from one cut short by a reset.

use crate::pki::ClientIdentity;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a read may wait for Envoy.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// A request on the wire: headers with pseudo-headers (`:method`, `:path`, `:authority`),
/// and the body in chunks.
pub struct Request<'a> {
    /// Headers, pseudo-headers included (`:scheme` is ignored).
    pub headers: &'a [(String, String)],
    /// The body, if any.
    pub body: Option<&'a [u8]>,
    /// In how many writes the body goes out.
    pub chunks: usize,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The status, if a status line arrived.
    pub status: Option<u16>,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body bytes received (decoded from chunked framing).
    pub body: Vec<u8>,
    /// Whether the response ended as its framing says (not cut by a reset).
    pub complete: bool,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A GET over plain HTTP (the admin API).
///
/// # Errors
/// When the connection fails.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let headers = [
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), addr.to_string()),
    ];
    send(
        addr,
        None,
        &Request {
            headers: &headers,
            body: None,
            chunks: 1,
        },
    )
}

/// Sends `request` to `addr`, over mTLS when `identity` is given, and reads the response.
///
/// # Errors
/// When the connection cannot be made (a reset during the exchange is a [`Response`]
/// with `complete: false`).
pub fn send(addr: SocketAddr, identity: Option<&ClientIdentity>, request: &Request<'_>) -> io::Result<Response> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_write_timeout(Some(READ_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    match identity {
        None => Ok(exchange(tcp, request)),
        Some(identity) => {
            let server = rustls::pki_types::ServerName::try_from("localhost").expect("a valid name");
            let connection = rustls::ClientConnection::new(Arc::clone(&identity.config), server).map_err(io::Error::other)?;
            Ok(exchange(rustls::StreamOwned::new(connection, tcp), request))
        }
    }
}

fn head(request: &Request<'_>) -> Vec<u8> {
    let pseudo = |name: &str| request.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        pseudo(":method"),
        pseudo(":path"),
        pseudo(":authority")
    );
    for (name, value) in request.headers.iter().filter(|(n, _)| !n.starts_with(':')) {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn exchange(mut stream: impl Read + Write, request: &Request<'_>) -> Response {
    // A write can fail when Envoy has already answered and closed: read what it said.
    let _ = write_request(&mut stream, request);
    read_response(&mut stream)
}

fn write_request(stream: &mut impl Write, request: &Request<'_>) -> io::Result<()> {
    stream.write_all(&head(request))?;
    stream.flush()?;
    if let Some(body) = request.body {
        let parts = crate::run::chunks(body, request.chunks);
        let many = parts.len() > 1;
        for part in parts {
            stream.write_all(part)?;
            stream.flush()?;
            if many {
                // Separate segments, so Envoy hands the filter separate body callbacks.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    Ok(())
}

/// A buffered reader over a stream that remembers whether it hit the end early.
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

fn read_response(stream: &mut impl Read) -> Response {
    let mut wire = Wire::new(stream);
    let mut response = Response::default();
    let Some(status_line) = wire.line() else { return response };
    response.status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let Some(headers) = wire.headers() else { return response };
    response.headers = headers;
    let no_body = matches!(response.status, Some(204 | 304));
    response.complete = no_body || wire.body(&response.headers.clone(), &mut response.body, true);
    response
}
