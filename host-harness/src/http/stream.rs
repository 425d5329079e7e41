//! [`HttpStream`], the public handle that drives one HTTP stream through the filter step
//! by step, settling Envoy's event loop after each step.

use std::sync::{Arc, Mutex};

use crate::dispatcher;
use crate::error::Error;
use crate::headers::Headers;
use crate::http::driver as http_driver;
use crate::http::message::{HttpOutcome, LocalReply, Message, StreamState};
use crate::http::state::{Direction, StreamEnd};
use crate::property::{PropertyPath, PropertyValue};
use crate::vm::{Vm, lock};

/// One HTTP stream through the plugin's filter, driven step by step.
///
/// Create it with [`crate::Plugin::http_stream`]. Each `send_*` call delivers what the
/// client (request side) or the upstream (response side) sends, runs the filter's callback,
/// applies what Envoy defers to after the callback, answers HTTP calls to automatic
/// upstreams, and returns where the stream stands. [`HttpStream::finish`] ends the stream
/// (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`) and tells how it went; dropping an
/// unfinished stream finishes it and ignores the result.
pub struct HttpStream {
    pub(crate) vm: Arc<Mutex<Vm>>,
    pub(crate) id: u32,
    pub(crate) finished: bool,
}

impl HttpStream {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vm) -> Result<T, Error>) -> Result<T, Error> {
        let mut vm = lock(&self.vm);
        f(&mut vm)
    }

    /// One step: unless the stream already ended, delivers something with `deliver` and
    /// runs the event loop; then reports where `direction` stands.
    fn step(&self, direction: Direction, deliver: impl FnOnce(&mut Vm, u32) -> Result<(), Error>) -> Result<StreamState, Error> {
        self.with(|vm| {
            if !http_driver::ended(vm, self.id) {
                deliver(vm, self.id)?;
                dispatcher::settle(vm)?;
            }
            http_driver::state(vm, self.id, direction)
        })
    }

    /// Sets a property of this stream, e.g. `connection.uri_san_peer_certificate`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the stream is finished.
    pub fn set_property(&self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> Result<(), Error> {
        let (path, value) = (path.into(), value.into());
        self.with(|vm| {
            http_driver::http_state(vm, self.id)?.properties.set(path, &value);
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
        self.step(Direction::Request, |vm, id| {
            http_driver::send_headers(vm, id, Direction::Request, headers, end_of_stream)
        })
    }

    /// The client sends a chunk of the request body.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or a body sent before headers or after the end of stream.
    pub fn send_request_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.step(Direction::Request, |vm, id| {
            http_driver::send_body(vm, id, Direction::Request, chunk.as_ref(), end_of_stream)
        })
    }

    /// The client ends the request with trailers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or trailers out of order.
    pub fn send_request_trailers(&mut self, trailers: impl Into<Headers>) -> Result<StreamState, Error> {
        let trailers = trailers.into();
        self.step(Direction::Request, |vm, id| {
            http_driver::send_trailers(vm, id, Direction::Request, trailers)
        })
    }

    /// The upstream sends the response headers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or headers sent twice.
    pub fn send_response_headers(&mut self, headers: impl Into<Headers>, end_of_stream: bool) -> Result<StreamState, Error> {
        let headers = headers.into();
        self.step(Direction::Response, |vm, id| {
            http_driver::send_headers(vm, id, Direction::Response, headers, end_of_stream)
        })
    }

    /// The upstream sends a chunk of the response body.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or a body out of order.
    pub fn send_response_body(&mut self, chunk: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.step(Direction::Response, |vm, id| {
            http_driver::send_body(vm, id, Direction::Response, chunk.as_ref(), end_of_stream)
        })
    }

    /// The upstream ends the response with trailers.
    ///
    /// # Errors
    ///
    /// A trap in the guest, or trailers out of order.
    pub fn send_response_trailers(&mut self, trailers: impl Into<Headers>) -> Result<StreamState, Error> {
        let trailers = trailers.into();
        self.step(Direction::Response, |vm, id| {
            http_driver::send_trailers(vm, id, Direction::Response, trailers)
        })
    }

    /// What the upstream has received so far.
    pub fn upstream_request(&self) -> Message {
        self.with(|vm| Ok(http_driver::http_state(vm, self.id)?.request.forwarded.clone()))
            .unwrap_or_default()
    }

    /// What the client has received so far.
    pub fn client_response(&self) -> Message {
        self.with(|vm| Ok(http_driver::http_state(vm, self.id)?.response.forwarded.clone()))
            .unwrap_or_default()
    }

    /// The local reply, if the stream ended in one.
    pub fn local_reply(&self) -> Option<LocalReply> {
        self.with(|vm| {
            Ok(match &http_driver::http_state(vm, self.id)?.end {
                Some(StreamEnd::LocalReply(reply)) => Some(reply.clone()),
                _ => None,
            })
        })
        .ok()
        .flatten()
    }

    /// Where the request side stands now.
    pub fn request_state(&self) -> StreamState {
        self.with(|vm| Ok(http_driver::http_state(vm, self.id)?.state(Direction::Request)))
            .unwrap_or(StreamState::Reset)
    }

    /// Where the response side stands now.
    pub fn response_state(&self) -> StreamState {
        self.with(|vm| Ok(http_driver::http_state(vm, self.id)?.state(Direction::Response)))
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
        self.with(|vm| finish(vm, self.id))
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ignored = self.with(|vm| finish(vm, self.id));
        }
    }
}

impl std::fmt::Debug for HttpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStream").field("id", &self.id).finish()
    }
}
/// Ends the stream as Envoy does and reports how the exchange went.
fn finish(vm: &mut Vm, id: u32) -> Result<HttpOutcome, Error> {
    let outcome = http_driver::end(vm, id)?;
    dispatcher::finish_context(vm, id)?;
    Ok(outcome)
}
