//! Upstream clusters for `proxy_http_call`: a Rust closure, a real HTTP/1.1 endpoint, or
//! calls that stay pending until the test answers them.

use std::fmt;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::config::AutoHeaderValue;

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

/// Sends `request` to a real HTTP/1.1 server (with `ureq`) and reads the whole response,
/// within the call's timeout. A connection that cannot be made or breaks is Envoy's 503, a
/// call whose timeout elapses its 504.
pub(crate) fn send_http(address: &str, request: &HttpCallRequest) -> HttpCallReply {
    let started = Instant::now();
    let timed_out = || request.timeout.is_some_and(|t| started.elapsed() >= t);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        // An Envoy cluster talks to its endpoint directly, follows no redirect, and hands
        // every status to the plugin; it adds no headers of its own.
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .accept_encoding(AutoHeaderValue::None)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(request.timeout)
        .build()
        .into();
    let result = call(&agent, address, request).and_then(|mut response| {
        let body = response.body_mut().with_config().limit(u64::MAX).read_to_vec()?;
        Ok((response, body))
    });
    match result {
        Ok((response, body)) => HttpCallReply::Response(HttpCallResponse {
            status: response.status().as_u16(),
            headers: response_headers(response.headers()),
            body,
            trailers: Headers::new(),
        }),
        // Envoy's connect timeout is a connection failure, unless the call's own timeout
        // elapsed meanwhile.
        Err(ureq::Error::Timeout(ureq::Timeout::Connect)) if !timed_out() => HttpCallReply::ConnectionFailure,
        Err(ureq::Error::Timeout(_)) => HttpCallReply::Timeout,
        Err(ureq::Error::Io(e)) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => HttpCallReply::Timeout,
        Err(_) if timed_out() => HttpCallReply::Timeout,
        Err(_) => HttpCallReply::ConnectionFailure,
    }
}

/// Sends the request as Envoy's router would: `:authority` as `host`, the other pseudo
/// headers and hop-by-hop `connection` dropped, a `content-length` for a body (or for a
/// method that carries one), one connection per call.
fn call(agent: &ureq::Agent, address: &str, request: &HttpCallRequest) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut builder = ureq::http::Request::builder()
        .method(request.method())
        .uri(format!("http://{address}{}", request.path()))
        .header("host", request.authority());
    let mut has_length = false;
    for (name, value) in request.headers.iter() {
        let lower = name.to_ascii_lowercase();
        if name.starts_with(':') || lower == "host" || lower == "connection" {
            continue;
        }
        has_length |= lower == "content-length";
        builder = builder.header(lower, value);
    }
    let with_body = !request.body.is_empty() || matches!(request.method(), "POST" | "PUT" | "PATCH");
    if with_body && !has_length {
        builder = builder.header("content-length", request.body.len());
    }
    builder = builder.header("connection", "close");
    if with_body {
        agent.run(builder.body(request.body.as_slice())?)
    } else {
        agent.run(builder.body(())?)
    }
}

/// The response headers as the plugin sees them: lower-cased, without the
/// `transfer-encoding: chunked` the body was framed with (ureq de-chunks it).
fn response_headers(received: &ureq::http::HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in received {
        if name == ureq::http::header::TRANSFER_ENCODING && value.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            continue;
        }
        headers.add(name.as_str(), value.as_bytes());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

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
