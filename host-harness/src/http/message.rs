//! The public values of an HTTP exchange: what a test sends through a filter
//! ([`HttpExchange`]) and what it gets back ([`Message`], [`LocalReply`], [`StreamState`],
//! [`HttpOutcome`]).

use crate::headers::Headers;
use crate::property::{PropertyPath, PropertyValue};

/// What one side of an HTTP stream (request or response) delivered past the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The headers as forwarded, once forwarded.
    pub headers: Option<Headers>,
    /// Every body byte forwarded so far.
    pub body: Vec<u8>,
    /// The trailers as forwarded, once forwarded.
    pub trailers: Option<Headers>,
    /// Whether the end of stream was forwarded.
    pub end_of_stream: bool,
}

impl Message {
    /// The first value of a forwarded header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|h| h.get(name))
    }

    /// The body as UTF-8 text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A response the filter made Envoy send instead of forwarding (`proxy_send_local_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// The status code the client receives.
    pub status: u16,
    /// The headers the client receives (including `:status`), after the filter's own
    /// response callbacks saw them.
    pub headers: Headers,
    /// The body the client receives.
    pub body: Vec<u8>,
    /// The response code details, with whitespace replaced by `_` as Envoy does.
    pub details: String,
    /// The gRPC status the plugin passed (`-1` when none).
    pub grpc_status: i32,
}

impl LocalReply {
    /// The body as UTF-8 text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// Where a stream stands after a step, once Envoy's event loop has settled (deferred
/// continues applied, HTTP calls to automatic upstreams answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamState {
    /// Nothing is held by the filter in this direction.
    Continued,
    /// The filter holds headers, body or trailers in this direction (it paused, and has
    /// not continued yet).
    Paused,
    /// The stream ended in a local reply.
    LocalReply,
    /// The stream was reset.
    Reset,
}

/// How an HTTP exchange ended, as the client and the upstream saw it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HttpOutcome {
    /// The request reached the upstream and the response reached the client.
    Forwarded {
        /// What the upstream received.
        request: Message,
        /// What the client received.
        response: Message,
    },
    /// The client received a local reply instead.
    LocalReply(LocalReply),
    /// The filter still held part of the request or response when the exchange ended,
    /// e.g. while waiting for an HTTP call that was never answered.
    Paused {
        /// What the upstream received so far.
        request: Message,
        /// What the client received so far.
        response: Message,
    },
    /// The stream was reset.
    Reset {
        /// Envoy's response code details (`wasm_close_stream`, ...).
        details: String,
    },
}

impl HttpOutcome {
    /// The local reply, if the exchange ended in one.
    pub fn local_reply(&self) -> Option<&LocalReply> {
        match self {
            HttpOutcome::LocalReply(reply) => Some(reply),
            _ => None,
        }
    }

    /// What the upstream received, if the exchange was forwarded.
    pub fn forwarded_request(&self) -> Option<&Message> {
        match self {
            HttpOutcome::Forwarded { request, .. } => Some(request),
            _ => None,
        }
    }

    /// What the client received, if the exchange was forwarded.
    pub fn forwarded_response(&self) -> Option<&Message> {
        match self {
            HttpOutcome::Forwarded { response, .. } => Some(response),
            _ => None,
        }
    }
}

/// A whole HTTP exchange to run through a filter in one call ([`crate::Plugin::run_http`]).
#[derive(Debug, Clone, Default)]
pub struct HttpExchange {
    /// The request headers the client sends.
    pub request_headers: Headers,
    /// The request body, in the chunks the client sends.
    pub request_body: Vec<Vec<u8>>,
    /// The request trailers, if any.
    pub request_trailers: Option<Headers>,
    /// The response headers the upstream returns (default `:status: 200`).
    pub response_headers: Headers,
    /// The response body, in chunks.
    pub response_body: Vec<Vec<u8>>,
    /// The response trailers, if any.
    pub response_trailers: Option<Headers>,
    /// Properties of this stream (e.g. `connection.uri_san_peer_certificate`).
    pub properties: Vec<(PropertyPath, PropertyValue)>,
}

impl HttpExchange {
    /// An exchange with these request headers, no body, and a `200` response.
    pub fn new(request_headers: impl Into<Headers>) -> HttpExchange {
        HttpExchange {
            request_headers: request_headers.into(),
            response_headers: Headers::from([(":status", "200")]),
            ..HttpExchange::default()
        }
    }

    /// Sends the request body as one chunk.
    pub fn request_body(mut self, body: impl Into<Vec<u8>>) -> HttpExchange {
        self.request_body = vec![body.into()];
        self
    }

    /// Sends the request body in these chunks.
    pub fn request_chunks<B: Into<Vec<u8>>>(mut self, chunks: impl IntoIterator<Item = B>) -> HttpExchange {
        self.request_body = chunks.into_iter().map(Into::into).collect();
        self
    }

    /// Ends the request with trailers.
    pub fn request_trailers(mut self, trailers: impl Into<Headers>) -> HttpExchange {
        self.request_trailers = Some(trailers.into());
        self
    }

    /// The upstream's response headers.
    pub fn response_headers(mut self, headers: impl Into<Headers>) -> HttpExchange {
        self.response_headers = headers.into();
        self
    }

    /// The upstream's response body, as one chunk.
    pub fn response_body(mut self, body: impl Into<Vec<u8>>) -> HttpExchange {
        self.response_body = vec![body.into()];
        self
    }

    /// The upstream's response body, in these chunks.
    pub fn response_chunks<B: Into<Vec<u8>>>(mut self, chunks: impl IntoIterator<Item = B>) -> HttpExchange {
        self.response_body = chunks.into_iter().map(Into::into).collect();
        self
    }

    /// Ends the response with trailers.
    pub fn response_trailers(mut self, trailers: impl Into<Headers>) -> HttpExchange {
        self.response_trailers = Some(trailers.into());
        self
    }

    /// Sets a property of the stream.
    pub fn property(mut self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> HttpExchange {
        self.properties.push((path.into(), value.into()));
        self
    }
}
