//! The per-side state machine of one HTTP stream context: where the request and the
//! response stand in the filter, what the guest may read and change in each state, and
//! what has been forwarded.

use crate::abi::{buffer, map};
use crate::headers::Headers;
use crate::http::message::{HttpOutcome, LocalReply, Message, StreamState};
use crate::property::{PropertyPath, PropertyStore, PropertyValue};

/// The request a filter asked Envoy to send as a local reply.
#[derive(Debug, Clone)]
pub(crate) struct LocalReplySpec {
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Headers,
    pub grpc_status: i32,
}

/// Where one message (request or response) stands in the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Idle,
    HeadersStopped,
    Open,
    BodyStopped,
    TrailersStopped,
    Complete,
}

/// Which message of the stream: the request (client to upstream) or the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Request,
    Response,
}

impl Direction {
    /// The guest's headers, body and trailers callbacks for this direction.
    pub(crate) fn callbacks(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Direction::Request => ("proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers"),
            Direction::Response => ("proxy_on_response_headers", "proxy_on_response_body", "proxy_on_response_trailers"),
        }
    }
}

/// The host's state of one message (request or response) passing the filter: what was
/// received, what the guest may reach now, what is held, what was forwarded.
pub(crate) struct MessageState {
    pub(crate) headers: Headers,
    pub(crate) headers_received: bool,
    pub(crate) headers_available: bool,
    pub(crate) body: Vec<u8>,
    pub(crate) body_available: bool,
    pub(crate) trailers: Headers,
    pub(crate) trailers_available: bool,
    pub(crate) flow: Flow,
    pub(crate) end_received: bool,
    pub(crate) held_body: Vec<u8>,
    pub(crate) held_data_seen: bool,
    pub(crate) held_trailers: Option<Headers>,
    /// The headers callback paused with `allow_on_headers_stop_iteration`: the headers wait
    /// (still writable) while body and trailer callbacks run, and go first when the filter
    /// continues.
    pub(crate) headers_held: bool,
    pub(crate) forwarded: Message,
}

impl MessageState {
    fn new() -> MessageState {
        MessageState {
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
            headers_held: false,
            forwarded: Message::default(),
        }
    }

    pub(crate) fn forward_headers(&mut self) {
        self.forwarded.headers = Some(self.headers.clone());
        self.headers_available = false;
    }

    /// Forwards the headers if they were held, then the body so far.
    pub(crate) fn forward_body(&mut self) {
        if self.headers_held {
            self.headers_held = false;
            self.forward_headers();
        }
        self.forwarded.body.append(&mut self.body);
        self.body_available = false;
    }

    pub(crate) fn forward_end(&mut self) {
        self.forwarded.end_of_stream = true;
        self.flow = Flow::Complete;
    }

    fn stopped(&self) -> bool {
        self.headers_held || matches!(self.flow, Flow::HeadersStopped | Flow::BodyStopped | Flow::TrailersStopped)
    }
}

/// How a stream ended early.
pub(crate) enum StreamEnd {
    LocalReply(LocalReply),
    Reset(String),
}

/// The host's state of one HTTP stream context.
pub(crate) struct HttpState {
    pub(crate) request: MessageState,
    pub(crate) response: MessageState,
    pub properties: PropertyStore,
    log_phase: bool,
    pub(crate) end: Option<StreamEnd>,
    pub(crate) replying: bool,
}

impl HttpState {
    pub(crate) fn new(properties: PropertyStore) -> HttpState {
        HttpState {
            request: MessageState::new(),
            response: MessageState::new(),
            properties,
            log_phase: false,
            end: None,
            replying: false,
        }
    }

    /// The state of the request or the response.
    pub(crate) fn message(&mut self, direction: Direction) -> &mut MessageState {
        match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    pub(crate) fn in_log_phase(&self) -> bool {
        self.log_phase
    }

    /// Enters or leaves the access-log phase (`proxy_on_log`).
    pub(crate) fn set_log_phase(&mut self, log_phase: bool) {
        self.log_phase = log_phase;
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

    /// Where one direction stands, as a step reports it.
    pub(crate) fn state(&self, direction: Direction) -> StreamState {
        match &self.end {
            Some(StreamEnd::LocalReply(_)) => StreamState::LocalReply,
            Some(StreamEnd::Reset(_)) => StreamState::Reset,
            None => {
                let d = match direction {
                    Direction::Request => &self.request,
                    Direction::Response => &self.response,
                };
                if d.stopped() { StreamState::Paused } else { StreamState::Continued }
            }
        }
    }

    /// How the exchange went, as far as it went.
    pub(crate) fn outcome(&self) -> HttpOutcome {
        match &self.end {
            Some(StreamEnd::LocalReply(reply)) => HttpOutcome::LocalReply(reply.clone()),
            Some(StreamEnd::Reset(details)) => HttpOutcome::Reset { details: details.clone() },
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

/// A length or count as the `u32` callbacks take.
pub(crate) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
