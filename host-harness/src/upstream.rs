//! Upstream clusters for `proxy_http_call`: a Rust closure, a real HTTP/1.1 endpoint, or
//! calls that stay pending until the test answers them.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::abi::Status;
use crate::headers::Headers;

type Handler = dyn Fn(&HttpCallRequest) -> HttpCallReply + Send + Sync;

/// What answers `proxy_http_call`s to one cluster name.
///
/// A call to a cluster name that was not registered fails with `BadArgument`, as it does in
/// Envoy when no such cluster exists.
#[derive(Clone)]
pub struct Upstream(pub(crate) UpstreamKind);

#[derive(Clone)]
pub(crate) enum UpstreamKind {
    Handler(Arc<Handler>),
    Http(String),
    Manual,
}

impl Upstream {
    /// Answers each call with a Rust closure, synchronously, right after the callback that
    /// made the call returns (as soon as Envoy's event loop would run again).
    pub fn handler(handler: impl Fn(&HttpCallRequest) -> HttpCallReply + Send + Sync + 'static) -> Upstream {
        Upstream(UpstreamKind::Handler(Arc::new(handler)))
    }

    /// Sends each call to a real HTTP/1.1 server at `address` (`host:port`, normally on
    /// loopback), honouring the call's timeout. A refused connection yields Envoy's 503
    /// "upstream connect error" response and a timeout its 504 "upstream request timeout".
    pub fn http(address: impl Into<String>) -> Upstream {
        Upstream(UpstreamKind::Http(address.into()))
    }

    /// A cluster that exists but never answers by itself: its calls stay pending until the
    /// test answers them ([`crate::Plugin::respond_http_call`]) or their timeout elapses on
    /// the virtual clock ([`crate::Plugin::advance_time`]).
    pub fn manual() -> Upstream {
        Upstream(UpstreamKind::Manual)
    }

    /// A cluster whose every endpoint refuses connections.
    pub fn unreachable() -> Upstream {
        Upstream::handler(|_| HttpCallReply::ConnectionFailure)
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            UpstreamKind::Handler(_) => f.write_str("Upstream::handler(..)"),
            UpstreamKind::Http(address) => write!(f, "Upstream::http({address:?})"),
            UpstreamKind::Manual => f.write_str("Upstream::manual()"),
        }
    }
}

/// An HTTP call a plugin made with `proxy_http_call`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCallRequest {
    /// The token the host returned to the plugin.
    pub token: u32,
    /// The cluster name.
    pub upstream: String,
    /// The request headers, including `:method`, `:path` and `:authority`.
    pub headers: Headers,
    /// The request body.
    pub body: Vec<u8>,
    /// The request trailers.
    pub trailers: Headers,
    /// The timeout the plugin asked for (`None` for 0, which Envoy treats as no timeout).
    pub timeout: Option<Duration>,
}

impl HttpCallRequest {
    /// The `:method` header.
    pub fn method(&self) -> &str {
        self.headers.get(":method").unwrap_or_default()
    }

    /// The `:path` header.
    pub fn path(&self) -> &str {
        self.headers.get(":path").unwrap_or_default()
    }

    /// The `:authority` header.
    pub fn authority(&self) -> &str {
        self.headers.get(":authority").unwrap_or_default()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// A response an upstream returns to an HTTP call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCallResponse {
    /// The status code (`:status`).
    pub status: u16,
    /// The headers, without `:status`.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
    /// The trailers.
    pub trailers: Headers,
}

impl HttpCallResponse {
    /// A response with this status, no headers and an empty body.
    pub fn new(status: u16) -> HttpCallResponse {
        HttpCallResponse {
            status,
            headers: Headers::new(),
            body: Vec::new(),
            trailers: Headers::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> HttpCallResponse {
        self.headers.add(name, value);
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> HttpCallResponse {
        self.body = body.into();
        self
    }

    /// Adds a trailer.
    pub fn with_trailer(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> HttpCallResponse {
        self.trailers.add(name, value);
        self
    }
}

/// How an HTTP call ends, as Envoy reports it to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpCallReply {
    /// The upstream answered.
    Response(HttpCallResponse),
    /// The call's timeout elapsed: the plugin sees Envoy's 504 "upstream request timeout".
    Timeout,
    /// No connection could be made: the plugin sees Envoy's 503 "upstream connect error".
    ConnectionFailure,
    /// The stream was reset: the plugin sees no headers, no body, and `proxy_get_status`
    /// reports `BrokenConnection` "reset" (Envoy's `onHttpCallFailure`).
    Reset,
}

impl From<HttpCallResponse> for HttpCallReply {
    fn from(response: HttpCallResponse) -> HttpCallReply {
        HttpCallReply::Response(response)
    }
}

/// What the guest sees of a finished call.
pub(crate) struct DeliveredCall {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
    pub status: (u32, String),
}

fn local_reply(status: u16, body: &str) -> DeliveredCall {
    let headers = Headers::from([
        (":status", status.to_string()),
        ("content-length", body.len().to_string()),
        ("content-type", "text/plain".to_owned()),
    ]);
    DeliveredCall {
        headers,
        body: body.as_bytes().to_vec(),
        trailers: Headers::new(),
        status: (0, String::new()),
    }
}

pub(crate) const CONNECT_FAILURE_BODY: &str = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: 111";
pub(crate) const TIMEOUT_BODY: &str = "upstream request timeout";

impl HttpCallReply {
    pub(crate) fn deliver(self) -> DeliveredCall {
        match self {
            HttpCallReply::Response(response) => {
                let mut headers = Headers::from([(":status", response.status.to_string())]);
                for (name, value) in response.headers.lowercased().iter() {
                    headers.add(name, value);
                }
                DeliveredCall {
                    headers,
                    body: response.body,
                    trailers: response.trailers.lowercased(),
                    status: (0, String::new()),
                }
            }
            HttpCallReply::Timeout => local_reply(504, TIMEOUT_BODY),
            HttpCallReply::ConnectionFailure => local_reply(503, CONNECT_FAILURE_BODY),
            HttpCallReply::Reset => DeliveredCall {
                headers: Headers::new(),
                body: Vec::new(),
                trailers: Headers::new(),
                status: (Status::BrokenConnection.code(), "reset".to_owned()),
            },
        }
    }
}

/// The default connect timeout of an Envoy cluster.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` to a real HTTP/1.1 server and reads the whole response.
pub(crate) fn send_http(address: &str, request: &HttpCallRequest) -> HttpCallReply {
    let started = Instant::now();
    let deadline = request.timeout.map(|t| started + t);
    let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let Ok(addresses) = address.to_socket_addrs() else {
        return HttpCallReply::ConnectionFailure;
    };
    let mut connection = None;
    for addr in addresses {
        let connect_timeout = remaining().map_or(CONNECT_TIMEOUT, |r| r.min(CONNECT_TIMEOUT));
        if connect_timeout.is_zero() {
            return HttpCallReply::Timeout;
        }
        if let Ok(stream) = TcpStream::connect_timeout(&addr, connect_timeout) {
            connection = Some(stream);
            break;
        }
    }
    let Some(mut stream) = connection else {
        return match remaining() {
            Some(r) if r.is_zero() => HttpCallReply::Timeout,
            _ => HttpCallReply::ConnectionFailure,
        };
    };
    match exchange(&mut stream, request, &remaining) {
        Ok(response) => HttpCallReply::Response(response),
        Err(ExchangeError::Timeout) => HttpCallReply::Timeout,
        Err(ExchangeError::Broken) => HttpCallReply::ConnectionFailure,
    }
}

enum ExchangeError {
    Timeout,
    Broken,
}

impl From<std::io::Error> for ExchangeError {
    fn from(e: std::io::Error) -> ExchangeError {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ExchangeError::Timeout,
            _ => ExchangeError::Broken,
        }
    }
}

fn exchange(
    stream: &mut TcpStream,
    request: &HttpCallRequest,
    remaining: &dyn Fn() -> Option<Duration>,
) -> Result<HttpCallResponse, ExchangeError> {
    let set_timeouts = |stream: &TcpStream| -> Result<(), ExchangeError> {
        let timeout = remaining();
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(ExchangeError::Timeout);
        }
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(())
    };
    set_timeouts(stream)?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n",
        request.method(),
        request.path(),
        request.authority()
    );
    let mut has_length = false;
    for (name, value) in request.headers.iter() {
        let lower = name.to_ascii_lowercase();
        if name.starts_with(':') || lower == "host" || lower == "connection" {
            continue;
        }
        has_length |= lower == "content-length";
        head.push_str(&format!("{}: {}\r\n", lower, String::from_utf8_lossy(value)));
    }
    if !has_length && (!request.body.is_empty() || matches!(request.method(), "POST" | "PUT" | "PATCH")) {
        head.push_str(&format!("content-length: {}\r\n", request.body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    let mut wire = head.into_bytes();
    wire.extend_from_slice(&request.body);
    stream.write_all(&wire)?;
    stream.flush()?;

    let mut buffer = Vec::new();
    let header_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        set_timeouts(stream)?;
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ExchangeError::Broken);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut rest = buffer[header_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(ExchangeError::Broken)?;
    let mut headers = Headers::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.add(name.trim().to_ascii_lowercase(), value.trim());
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length: Option<usize> = headers.get("content-length").and_then(|v| v.parse().ok());
    let no_body = request.method() == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let mut read_more = |rest: &mut Vec<u8>| -> Result<bool, ExchangeError> {
        set_timeouts(stream)?;
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk)?;
        rest.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    let body = if no_body {
        Vec::new()
    } else if chunked {
        headers.remove("transfer-encoding");
        loop {
            if let Some(body) = dechunk(&rest)? {
                break body;
            }
            if !read_more(&mut rest)? {
                return Err(ExchangeError::Broken);
            }
        }
    } else if let Some(length) = length {
        while rest.len() < length {
            if !read_more(&mut rest)? {
                return Err(ExchangeError::Broken);
            }
        }
        rest.truncate(length);
        rest
    } else {
        while read_more(&mut rest)? {}
        rest
    };
    Ok(HttpCallResponse {
        status,
        headers,
        body,
        trailers: Headers::new(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body; `Ok(None)` when more bytes are needed.
fn dechunk(data: &[u8]) -> Result<Option<Vec<u8>>, ExchangeError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&data[at..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&data[at..at + line_end]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or_default().trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| ExchangeError::Broken)?;
        at += line_end + 2;
        if size == 0 {
            return Ok(if find(&data[at..], b"\r\n").is_some() { Some(body) } else { None });
        }
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_only_when_complete() {
        assert!(matches!(dechunk(b"3\r\nabc\r\n0\r\n\r\n"), Ok(Some(ref b)) if b == b"abc"));
        assert!(matches!(dechunk(b"3\r\nab"), Ok(None)));
        assert!(matches!(dechunk(b"zz\r\n"), Err(ExchangeError::Broken)));
    }

    #[test]
    fn failures_become_envoys_local_replies() {
        let timeout = HttpCallReply::Timeout.deliver();
        assert_eq!(timeout.headers.get(":status"), Some("504"));
        assert_eq!(timeout.body, TIMEOUT_BODY.as_bytes());
        let reset = HttpCallReply::Reset.deliver();
        assert!(reset.headers.is_empty());
        assert_eq!(reset.status.1, "reset");
    }
}
