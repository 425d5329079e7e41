//! HTTP streams: Envoy's filter-chain rules for one proxy-wasm HTTP filter.
//!
//! The rules mirrored here (from Envoy's `source/extensions/common/wasm/context.cc` and
//! proxy-wasm-cpp-host's `context.cc`):
//!
//! * a headers callback that returns `Pause` stops *all* iteration (cpp-host turns
//!   `StopIteration` into `StopAllIterationAndWatermark`): body and trailers that arrive
//!   meanwhile are held by Envoy and handed to the filter after `proxy_continue_stream`;
//! * a body callback that returns `Pause` (`StopIterationAndBuffer`) makes Envoy buffer:
//!   the next body callback sees everything received so far, and `Continue` forwards it;
//! * a header map is readable and writable only while its callback runs or its stream is
//!   stopped at that filter; afterwards reading a value is `BadArgument` and listing pairs
//!   returns nothing. In `proxy_on_log` the final request and response headers are
//!   readable (missing keys are `NotFound`) but not writable;
//! * `proxy_send_local_response` takes effect after the callback returns; the callback's
//!   result is ignored, and a reply sent from the request path runs through the filter's
//!   own response callbacks, as Envoy's local replies do. From the response path it
//!   replaces the response if the response headers have not been forwarded yet, and resets
//!   the stream otherwise.

use std::sync::{Arc, Mutex};

use crate::abi::{buffer, map};
use crate::host::{Context, HostState};
use crate::plugin::{PluginInner, lock};
use crate::property::{PropertyPath, PropertyStore, PropertyValue};
use crate::{Error, Headers};

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

/// The request a filter asked Envoy to send as a local reply.
#[derive(Debug, Clone)]
pub(crate) struct LocalReplySpec {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub grpc_status: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Idle,
    HeadersStopped,
    Open,
    BodyStopped,
    TrailersStopped,
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Request,
    Response,
}

impl Dir {
    fn callbacks(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Dir::Request => ("proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers"),
            Dir::Response => ("proxy_on_response_headers", "proxy_on_response_body", "proxy_on_response_trailers"),
        }
    }
}

pub(crate) struct Direction {
    headers: Headers,
    headers_received: bool,
    headers_available: bool,
    body: Vec<u8>,
    body_available: bool,
    trailers: Headers,
    trailers_available: bool,
    flow: Flow,
    end_received: bool,
    held_body: Vec<u8>,
    held_data_seen: bool,
    held_trailers: Option<Headers>,
    forwarded: Message,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            headers: Headers::new(),
            headers_received: false,
            headers_available: false,
            body: Vec::new(),
            body_available: false,
            trailers: Headers::new(),
            trailers_available: false,
            flow: Flow::Idle,
            end_received: false,
            held_body: Vec::new(),
            held_data_seen: false,
            held_trailers: None,
            forwarded: Message::default(),
        }
    }

    fn forward_headers(&mut self) {
        self.forwarded.headers = Some(self.headers.clone());
        self.headers_available = false;
    }

    fn forward_body(&mut self) {
        self.forwarded.body.append(&mut self.body);
        self.body_available = false;
    }

    fn forward_end(&mut self) {
        self.forwarded.end_of_stream = true;
        self.flow = Flow::Complete;
    }

    fn stopped(&self) -> bool {
        matches!(self.flow, Flow::HeadersStopped | Flow::BodyStopped | Flow::TrailersStopped)
    }
}

pub(crate) enum End {
    LocalReply(LocalReply),
    Reset(String),
}

/// The host's state of one HTTP stream context.
pub(crate) struct HttpState {
    request: Direction,
    response: Direction,
    pub properties: PropertyStore,
    log_phase: bool,
    end: Option<End>,
    replying: bool,
}

impl HttpState {
    pub(crate) fn new(properties: PropertyStore) -> HttpState {
        HttpState {
            request: Direction::new(),
            response: Direction::new(),
            properties,
            log_phase: false,
            end: None,
            replying: false,
        }
    }

    fn dir(&mut self, dir: Dir) -> &mut Direction {
        match dir {
            Dir::Request => &mut self.request,
            Dir::Response => &mut self.response,
        }
    }

    pub(crate) fn in_log_phase(&self) -> bool {
        self.log_phase
    }

    /// The map the guest may read now.
    pub(crate) fn map(&self, map_type: u32) -> Option<&Headers> {
        if self.log_phase {
            return match map_type {
                map::REQUEST_HEADERS if self.request.headers_received => {
                    Some(self.request.forwarded.headers.as_ref().unwrap_or(&self.request.headers))
                }
                map::RESPONSE_HEADERS if self.response.headers_received => {
                    Some(self.response.forwarded.headers.as_ref().unwrap_or(&self.response.headers))
                }
                map::RESPONSE_TRAILERS => self.response.forwarded.trailers.as_ref(),
                _ => None,
            };
        }
        match map_type {
            map::REQUEST_HEADERS if self.request.headers_available => Some(&self.request.headers),
            map::REQUEST_TRAILERS if self.request.trailers_available => Some(&self.request.trailers),
            map::RESPONSE_HEADERS if self.response.headers_available => Some(&self.response.headers),
            map::RESPONSE_TRAILERS if self.response.trailers_available => Some(&self.response.trailers),
            _ => None,
        }
    }

    /// The map the guest may change now.
    pub(crate) fn map_mut(&mut self, map_type: u32) -> Option<&mut Headers> {
        if self.log_phase {
            return None;
        }
        match map_type {
            map::REQUEST_HEADERS if self.request.headers_available => Some(&mut self.request.headers),
            map::REQUEST_TRAILERS if self.request.trailers_available => Some(&mut self.request.trailers),
            map::RESPONSE_HEADERS if self.response.headers_available => Some(&mut self.response.headers),
            map::RESPONSE_TRAILERS if self.response.trailers_available => Some(&mut self.response.trailers),
            _ => None,
        }
    }

    pub(crate) fn body(&self, buffer_type: u32) -> Option<&Vec<u8>> {
        match buffer_type {
            buffer::HTTP_REQUEST_BODY if self.request.body_available => Some(&self.request.body),
            buffer::HTTP_RESPONSE_BODY if self.response.body_available => Some(&self.response.body),
            _ => None,
        }
    }

    pub(crate) fn body_mut(&mut self, buffer_type: u32) -> Option<&mut Vec<u8>> {
        match buffer_type {
            buffer::HTTP_REQUEST_BODY if self.request.body_available => Some(&mut self.request.body),
            buffer::HTTP_RESPONSE_BODY if self.response.body_available => Some(&mut self.response.body),
            _ => None,
        }
    }

    /// Envoy's `request.*` and `response.*` attributes derived from the headers seen.
    pub(crate) fn builtin_properties(&self) -> PropertyStore {
        let mut store = PropertyStore::default();
        if self.request.headers_received {
            let headers = self.request.forwarded.headers.as_ref().unwrap_or(&self.request.headers);
            let path = headers.get(":path").unwrap_or_default();
            let (url_path, query) = path.split_once('?').unwrap_or((path, ""));
            let strings = [
                ("request.path", path),
                ("request.url_path", url_path),
                ("request.query", query),
                ("request.host", headers.get(":authority").unwrap_or_default()),
                ("request.method", headers.get(":method").unwrap_or_default()),
                ("request.scheme", headers.get(":scheme").unwrap_or_default()),
            ];
            for (name, value) in strings {
                store.set(PropertyPath::from(name), &PropertyValue::from(value));
            }
            for (name, header) in [
                ("request.id", "x-request-id"),
                ("request.useragent", "user-agent"),
                ("request.referer", "referer"),
            ] {
                if let Some(value) = headers.get(header) {
                    store.set(PropertyPath::from(name), &PropertyValue::from(value));
                }
            }
            store.set(PropertyPath::from("request.headers"), &header_map(headers));
        }
        if self.response.headers_received {
            let headers = self.response.forwarded.headers.as_ref().unwrap_or(&self.response.headers);
            if let Some(code) = headers.get(":status").and_then(|s| s.parse::<i64>().ok()) {
                store.set(PropertyPath::from("response.code"), &PropertyValue::Int(code));
            }
            store.set(PropertyPath::from("response.headers"), &header_map(headers));
        }
        store
    }

    fn state(&self, dir: Dir) -> StreamState {
        match &self.end {
            Some(End::LocalReply(_)) => StreamState::LocalReply,
            Some(End::Reset(_)) => StreamState::Reset,
            None => {
                let d = match dir {
                    Dir::Request => &self.request,
                    Dir::Response => &self.response,
                };
                if d.stopped() { StreamState::Paused } else { StreamState::Continued }
            }
        }
    }

    fn outcome(&self) -> HttpOutcome {
        match &self.end {
            Some(End::LocalReply(reply)) => HttpOutcome::LocalReply(reply.clone()),
            Some(End::Reset(details)) => HttpOutcome::Reset { details: details.clone() },
            None => {
                let (request, response) = (self.request.forwarded.clone(), self.response.forwarded.clone());
                if self.request.flow == Flow::Complete && self.response.flow == Flow::Complete {
                    HttpOutcome::Forwarded { request, response }
                } else {
                    HttpOutcome::Paused { request, response }
                }
            }
        }
    }
}

fn header_map(headers: &Headers) -> PropertyValue {
    PropertyValue::Map(
        headers
            .iter()
            .map(|(k, v)| (k.to_owned(), PropertyValue::Bytes(v.to_vec())))
            .collect(),
    )
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl HostState {
    fn http_state(&mut self, id: u32) -> Result<&mut HttpState, Error> {
        match self.contexts.get_mut(&id) {
            Some(Context::Http(http)) => Ok(http),
            _ => Err(Error::Usage(format!("HTTP stream {id} is finished"))),
        }
    }
}

impl PluginInner {
    fn http(&mut self, id: u32) -> Result<&mut HttpState, Error> {
        self.host_mut().http_state(id)
    }

    fn ended(&mut self, id: u32) -> bool {
        self.http(id).map_or(true, |http| http.end.is_some())
    }

    pub(crate) fn http_headers(&mut self, id: u32, dir: Dir, headers: Headers, end_of_stream: bool) -> Result<StreamState, Error> {
        if self.ended(id) {
            return Ok(self.http(id)?.state(dir));
        }
        let headers = headers.lowercased();
        let n = count(headers.len());
        {
            let d = self.http(id)?.dir(dir);
            if d.headers_received {
                return Err(Error::Usage(format!("{dir:?} headers were already sent")));
            }
            d.headers = headers;
            d.headers_received = true;
            d.headers_available = true;
            d.end_received = end_of_stream;
        }
        let result = self.call(dir.callbacks().0, id, &[id, n, u32::from(end_of_stream)])?;
        let stop = self.host().stop_iteration || result.unwrap_or(0) != 0;
        if !self.ended(id) {
            let d = self.http(id)?.dir(dir);
            if stop {
                d.flow = Flow::HeadersStopped;
            } else {
                d.forward_headers();
                if end_of_stream {
                    d.forward_end();
                } else {
                    d.flow = Flow::Open;
                }
            }
        }
        self.settle()?;
        Ok(self.http(id)?.state(dir))
    }

    pub(crate) fn http_body(&mut self, id: u32, dir: Dir, chunk: &[u8], end_of_stream: bool) -> Result<StreamState, Error> {
        if self.ended(id) {
            return Ok(self.http(id)?.state(dir));
        }
        let d = self.http(id)?.dir(dir);
        if !d.headers_received || d.end_received {
            return Err(Error::Usage(format!("{dir:?} body sent before headers or after end of stream")));
        }
        match d.flow {
            Flow::HeadersStopped => {
                d.held_body.extend_from_slice(chunk);
                d.held_data_seen = true;
                d.end_received = end_of_stream;
            }
            Flow::Open => {
                d.body = chunk.to_vec();
                self.call_body(id, dir, end_of_stream)?;
            }
            Flow::BodyStopped => {
                d.body.extend_from_slice(chunk);
                self.call_body(id, dir, end_of_stream)?;
            }
            _ => return Err(Error::Usage(format!("{dir:?} body sent after trailers"))),
        }
        self.settle()?;
        Ok(self.http(id)?.state(dir))
    }

    pub(crate) fn http_trailers(&mut self, id: u32, dir: Dir, trailers: Headers) -> Result<StreamState, Error> {
        if self.ended(id) {
            return Ok(self.http(id)?.state(dir));
        }
        let trailers = trailers.lowercased();
        let d = self.http(id)?.dir(dir);
        if !d.headers_received || d.end_received {
            return Err(Error::Usage(format!("{dir:?} trailers sent before headers or after end of stream")));
        }
        d.end_received = true;
        match d.flow {
            Flow::HeadersStopped => d.held_trailers = Some(trailers),
            Flow::Open | Flow::BodyStopped => self.call_trailers(id, dir, trailers)?,
            _ => return Err(Error::Usage(format!("{dir:?} trailers sent twice"))),
        }
        self.settle()?;
        Ok(self.http(id)?.state(dir))
    }

    fn call_body(&mut self, id: u32, dir: Dir, end_of_stream: bool) -> Result<(), Error> {
        let len = {
            let d = self.http(id)?.dir(dir);
            d.end_received |= end_of_stream;
            d.body_available = true;
            count(d.body.len())
        };
        let result = self.call(dir.callbacks().1, id, &[id, len, u32::from(end_of_stream)])?;
        let code = if self.host().stop_iteration { 3 } else { result.unwrap_or(0) };
        if self.ended(id) {
            return Ok(());
        }
        let d = self.http(id)?.dir(dir);
        match code {
            0 => {
                d.forward_body();
                if end_of_stream {
                    d.forward_end();
                } else {
                    d.flow = Flow::Open;
                }
            }
            1 | 2 => d.flow = Flow::BodyStopped,
            _ => {
                d.body.clear();
                d.body_available = false;
                d.flow = if end_of_stream { Flow::BodyStopped } else { Flow::Open };
            }
        }
        Ok(())
    }

    fn call_trailers(&mut self, id: u32, dir: Dir, trailers: Headers) -> Result<(), Error> {
        let n = count(trailers.len());
        {
            let d = self.http(id)?.dir(dir);
            d.trailers = trailers;
            d.trailers_available = true;
        }
        let result = self.call(dir.callbacks().2, id, &[id, n])?;
        let stop = self.host().stop_iteration || result.unwrap_or(0) != 0;
        if self.ended(id) {
            return Ok(());
        }
        let d = self.http(id)?.dir(dir);
        if stop {
            d.flow = Flow::TrailersStopped;
        } else {
            d.forward_body();
            d.forwarded.trailers = Some(d.trailers.clone());
            d.trailers_available = false;
            d.forward_end();
        }
        Ok(())
    }

    /// `proxy_continue_stream(HttpRequest | HttpResponse)`, applied after the VM call.
    pub(crate) fn http_resume(&mut self, id: u32, dir: Dir) -> Result<(), Error> {
        if self.ended(id) {
            return Ok(());
        }
        let d = self.http(id)?.dir(dir);
        match d.flow {
            Flow::HeadersStopped => {
                d.forward_headers();
                d.flow = Flow::Open;
                let held_body = std::mem::take(&mut d.held_body);
                let seen = std::mem::replace(&mut d.held_data_seen, false);
                let held_trailers = d.held_trailers.take();
                let end = d.end_received;
                if seen {
                    d.body = held_body;
                    self.call_body(id, dir, end && held_trailers.is_none())?;
                }
                if let Some(trailers) = held_trailers {
                    if !self.ended(id) && matches!(self.http(id)?.dir(dir).flow, Flow::Open | Flow::BodyStopped) {
                        self.call_trailers(id, dir, trailers)?;
                    }
                } else if !seen && end {
                    self.http(id)?.dir(dir).forward_end();
                }
            }
            Flow::BodyStopped => {
                d.forward_body();
                if d.end_received {
                    d.forward_end();
                } else {
                    d.flow = Flow::Open;
                }
            }
            Flow::TrailersStopped => {
                d.forward_body();
                d.forwarded.trailers = Some(d.trailers.clone());
                d.trailers_available = false;
                d.forward_end();
            }
            _ => {}
        }
        Ok(())
    }

    /// `proxy_close_stream(HttpRequest | HttpResponse)`: Envoy resets the stream.
    pub(crate) fn http_reset(&mut self, id: u32) -> Result<(), Error> {
        let http = self.http(id)?;
        if http.end.is_none() {
            http.end = Some(End::Reset("wasm_close_stream".to_owned()));
        }
        Ok(())
    }

    /// `proxy_send_local_response`, applied after the VM call.
    pub(crate) fn http_local_reply(&mut self, id: u32, spec: LocalReplySpec) -> Result<(), Error> {
        let http = self.http(id)?;
        if http.end.is_some() || http.replying {
            return Ok(());
        }
        if http.response.forwarded.headers.is_some() {
            http.end = Some(End::Reset("local reply after the response started".to_owned()));
            return Ok(());
        }
        let mut headers = Headers::from([(":status", spec.status.to_string())]);
        for (name, value) in spec.headers.iter() {
            headers.add(name, value);
        }
        if !spec.body.is_empty() {
            headers.set("content-length", spec.body.len().to_string());
            if !headers.contains("content-type") {
                headers.add("content-type", "text/plain");
            }
        }
        let reply = |headers: Headers, body: Vec<u8>| LocalReply {
            status: headers
                .get(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(u16::try_from(spec.status).unwrap_or(500)),
            headers,
            body,
            details: spec.details.clone(),
            grpc_status: spec.grpc_status,
        };
        if http.response.headers_received {
            // Sent from the response path before the response was forwarded: Envoy sends the
            // reply directly, without running the filter chain again.
            let message = Message {
                headers: Some(headers.clone()),
                body: spec.body.clone(),
                trailers: None,
                end_of_stream: true,
            };
            http.response.forwarded = message;
            http.end = Some(End::LocalReply(reply(headers, spec.body.clone())));
            return Ok(());
        }
        // Sent from the request path: the reply runs through the filter's response callbacks.
        http.replying = true;
        http.request.headers_available = false;
        http.request.body_available = false;
        http.request.trailers_available = false;
        let body_empty = spec.body.is_empty();
        let n = count(headers.len());
        {
            let d = &mut http.response;
            d.headers = headers;
            d.headers_received = true;
            d.headers_available = true;
            d.end_received = true;
        }
        self.call("proxy_on_response_headers", id, &[id, n, u32::from(body_empty)])?;
        if !body_empty {
            let d = &mut self.http(id)?.response;
            d.headers_available = false;
            d.body = spec.body.clone();
            d.body_available = true;
            let len = count(d.body.len());
            self.call("proxy_on_response_body", id, &[id, len, 1])?;
        }
        let http = self.http(id)?;
        let d = &mut http.response;
        d.headers_available = false;
        d.body_available = false;
        let (headers, body) = (d.headers.clone(), std::mem::take(&mut d.body));
        d.forwarded = Message {
            headers: Some(headers.clone()),
            body: body.clone(),
            trailers: None,
            end_of_stream: true,
        };
        d.flow = Flow::Complete;
        http.replying = false;
        http.end = Some(End::LocalReply(reply(headers, body)));
        Ok(())
    }

    pub(crate) fn http_finish(&mut self, id: u32) -> Result<HttpOutcome, Error> {
        let outcome = self.http(id)?.outcome();
        {
            let http = self.http(id)?;
            for d in [&mut http.request, &mut http.response] {
                d.headers_available = false;
                d.body_available = false;
                d.trailers_available = false;
            }
        }
        self.finish_context(id, |host, id, log_phase| {
            if let Some(Context::Http(http)) = host.contexts.get_mut(&id) {
                http.log_phase = log_phase;
            }
        })?;
        Ok(outcome)
    }
}

/// One HTTP stream through the plugin's filter, driven step by step.
///
/// Create it with [`crate::Plugin::http_stream`]. Each `send_*` call delivers what the
/// client (request side) or the upstream (response side) sends, runs the filter's callback,
/// applies what Envoy defers to after the callback, answers HTTP calls to automatic
/// upstreams, and returns where the stream stands. [`HttpStream::finish`] ends the stream
/// (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`) and tells how it went; dropping an
/// unfinished stream finishes it and ignores the result.
pub struct HttpStream {
    pub(crate) inner: Arc<Mutex<PluginInner>>,
    pub(crate) id: u32,
    pub(crate) finished: bool,
}

impl HttpStream {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn with<T>(&self, f: impl FnOnce(&mut PluginInner) -> Result<T, Error>) -> Result<T, Error> {
        let mut inner = lock(&self.inner);
        f(&mut inner)
    }

    /// Sets a property of this stream, e.g. `connection.uri_san_peer_certificate`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the stream is finished.
    pub fn set_property(&self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> Result<(), Error> {
        let (path, value) = (path.into(), value.into());
        self.with(|inner| {
            inner.http(self.id)?.properties.set(path, &value);
            Ok(())
        })
    }

    /// The client sends the request headers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or headers sent twice.
    pub fn send_request_headers(&mut self, headers: impl Into<Headers>, end_of_stream: bool) -> Result<StreamState, Error> {
        let headers = headers.into();
        self.with(|inner| inner.http_headers(self.id, Dir::Request, headers, end_of_stream))
    }

    /// The client sends a chunk of the request body.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or a body sent before headers or after the end of stream.
    pub fn send_request_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.with(|inner| inner.http_body(self.id, Dir::Request, chunk.as_ref(), end_of_stream))
    }

    /// The client ends the request with trailers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or trailers out of order.
    pub fn send_request_trailers(&mut self, trailers: impl Into<Headers>) -> Result<StreamState, Error> {
        let trailers = trailers.into();
        self.with(|inner| inner.http_trailers(self.id, Dir::Request, trailers))
    }

    /// The upstream sends the response headers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or headers sent twice.
    pub fn send_response_headers(&mut self, headers: impl Into<Headers>, end_of_stream: bool) -> Result<StreamState, Error> {
        let headers = headers.into();
        self.with(|inner| inner.http_headers(self.id, Dir::Response, headers, end_of_stream))
    }

    /// The upstream sends a chunk of the response body.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or a body out of order.
    pub fn send_response_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.with(|inner| inner.http_body(self.id, Dir::Response, chunk.as_ref(), end_of_stream))
    }

    /// The upstream ends the response with trailers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or trailers out of order.
    pub fn send_response_trailers(&mut self, trailers: impl Into<Headers>) -> Result<StreamState, Error> {
        let trailers = trailers.into();
        self.with(|inner| inner.http_trailers(self.id, Dir::Response, trailers))
    }

    /// What the upstream has received so far.
    pub fn upstream_request(&self) -> Message {
        self.with(|inner| Ok(inner.http(self.id)?.request.forwarded.clone()))
            .unwrap_or_default()
    }

    /// What the client has received so far.
    pub fn client_response(&self) -> Message {
        self.with(|inner| Ok(inner.http(self.id)?.response.forwarded.clone()))
            .unwrap_or_default()
    }

    /// The local reply, if the stream ended in one.
    pub fn local_reply(&self) -> Option<LocalReply> {
        self.with(|inner| {
            Ok(match &inner.http(self.id)?.end {
                Some(End::LocalReply(reply)) => Some(reply.clone()),
                _ => None,
            })
        })
        .ok()
        .flatten()
    }

    /// Where the request side stands now.
    pub fn request_state(&self) -> StreamState {
        self.with(|inner| Ok(inner.http(self.id)?.state(Dir::Request)))
            .unwrap_or(StreamState::Reset)
    }

    /// Where the response side stands now.
    pub fn response_state(&self) -> StreamState {
        self.with(|inner| Ok(inner.http(self.id)?.state(Dir::Response)))
            .unwrap_or(StreamState::Reset)
    }

    /// Ends the stream as Envoy does (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`)
    /// and reports how the exchange went.
    ///
    /// # Errors
    ///
    /// A trap in one of those callbacks.
    pub fn finish(mut self) -> Result<HttpOutcome, Error> {
        self.finished = true;
        self.with(|inner| inner.http_finish(self.id))
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ignored = self.with(|inner| inner.http_finish(self.id));
        }
    }
}

impl std::fmt::Debug for HttpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStream").field("id", &self.id).finish()
    }
}
