//! The store's state: what one plugin VM's hostcalls read and change (contexts, clock,
//! HTTP calls, metrics ids, deferred work), and what of it the guest may reach right now.
//!
//! Each hostcall resolves its context like proxy-wasm-cpp-host does: the context whose
//! callback is running, unless `proxy_set_effective_context` named another one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Memory, TypedFunc};

use crate::abi::{LogLevel, Status, buffer, map};
use crate::error::Error;
use crate::headers::Headers;
use crate::http::state::{HttpState, LocalReplySpec};
use crate::log::LogLine;
use crate::property::{PropertyPath, PropertyStore, resolve};
use crate::shared::{MetricKind, SharedState};
use crate::tcp::state::TcpState;
use crate::upstream::{DeliveredCall, HttpCallRequest, Upstream};

/// What a plugin was configured with; fixed for its lifetime.
pub(crate) struct Setup {
    pub vm_id: String,
    pub vm_configuration: Vec<u8>,
    pub configuration: Vec<u8>,
    pub environment: Vec<(String, String)>,
    pub properties: PropertyStore,
    pub upstreams: HashMap<String, Upstream>,
    pub log_level: LogLevel,
    /// `PluginConfig.allow_on_headers_stop_iteration` (Envoy >= 1.35).
    pub allow_on_headers_stop_iteration: bool,
}

/// The host's state of one context, by kind.
pub(crate) enum ContextState {
    Root,
    Http(Box<HttpState>),
    Tcp(Box<TcpState>),
}

/// Work Envoy defers until the current VM call returns.
pub(crate) enum Deferred {
    Continue { context: u32, stream: u32 },
    Close { context: u32, stream: u32 },
    LocalResponse { context: u32, reply: LocalReplySpec },
}

/// An HTTP call waiting for its answer.
pub(crate) struct PendingCall {
    pub request: HttpCallRequest,
    /// Virtual time at which the call times out.
    pub deadline: Option<Duration>,
    /// The context the call belongs to: Envoy cancels it when it deletes that context.
    pub context: u32,
}

pub(crate) struct HostState {
    pub setup: Arc<Setup>,
    pub shared: SharedState,
    pub instance_id: u64,
    pub memory: Option<Memory>,
    pub allocate: Option<TypedFunc<u32, u32>>,
    pub logs: Vec<LogLine>,
    pub start_time: SystemTime,
    pub elapsed: Duration,
    pub root_id: u32,
    pub next_context_id: u32,
    pub current: u32,
    pub effective: u32,
    pub contexts: HashMap<u32, ContextState>,
    /// TCP connections whose context has ended, kept until their handle drops so that it
    /// can still tell what reached each side and how the connection closed.
    pub ended_tcp: HashMap<u32, Box<TcpState>>,
    pub configuring: bool,
    pub tick_period: Option<Duration>,
    pub next_tick: Option<Duration>,
    pub next_call_token: u32,
    pub calls_made: Vec<HttpCallRequest>,
    pub calls_to_dispatch: Vec<PendingCall>,
    pub calls_pending: Vec<PendingCall>,
    pub call_response: Option<DeliveredCall>,
    pub status: (u32, String),
    pub metrics: HashMap<u32, (MetricKind, String)>,
    pub next_metric_seq: u32,
    pub deferred: Vec<Deferred>,
    pub done_pending: bool,
    pub done_called: bool,
    pub stop_iteration: bool,
}

impl HostState {
    pub(crate) fn new(setup: Arc<Setup>, shared: SharedState, start_time: SystemTime) -> HostState {
        let instance_id = shared.new_instance();
        HostState {
            setup,
            shared,
            instance_id,
            memory: None,
            allocate: None,
            logs: Vec::new(),
            start_time,
            elapsed: Duration::ZERO,
            root_id: 0,
            next_context_id: 1,
            current: 0,
            effective: 0,
            contexts: HashMap::new(),
            ended_tcp: HashMap::new(),
            configuring: false,
            tick_period: None,
            next_tick: None,
            next_call_token: 1,
            calls_made: Vec::new(),
            calls_to_dispatch: Vec::new(),
            calls_pending: Vec::new(),
            call_response: None,
            status: (0, String::new()),
            metrics: HashMap::new(),
            next_metric_seq: 1,
            deferred: Vec::new(),
            done_pending: false,
            done_called: false,
            stop_iteration: false,
        }
    }

    /// The context hostcalls act on.
    pub(crate) fn context_id(&self) -> u32 {
        if self.effective != 0 && self.contexts.contains_key(&self.effective) {
            self.effective
        } else {
            self.current
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.start_time + self.elapsed
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: String) {
        self.logs.push(LogLine {
            level,
            message,
            context_id: self.context_id(),
        });
    }

    /// The state of HTTP stream `id`: [`Error::Usage`] once the stream is finished.
    pub(crate) fn http_state(&mut self, id: u32) -> Result<&mut HttpState, Error> {
        match self.contexts.get_mut(&id) {
            Some(ContextState::Http(http)) => Ok(http),
            _ => Err(Error::Usage(format!("HTTP stream {id} is finished"))),
        }
    }

    /// The state of TCP stream `id`: [`Error::Usage`] once the stream is closed.
    pub(crate) fn tcp_state(&mut self, id: u32) -> Result<&mut TcpState, Error> {
        match self.contexts.get_mut(&id) {
            Some(ContextState::Tcp(tcp)) => Ok(tcp),
            _ => Err(Error::Usage(format!("TCP stream {id} is finished"))),
        }
    }

    /// What TCP stream `id` did, whether its context is live or has ended.
    pub(crate) fn tcp_record(&self, id: u32) -> Option<&TcpState> {
        match self.contexts.get(&id) {
            Some(ContextState::Tcp(tcp)) => Some(tcp),
            _ => self.ended_tcp.get(&id).map(|tcp| &**tcp),
        }
    }

    /// [`Store::tcp_record`], to change.
    pub(crate) fn tcp_record_mut(&mut self, id: u32) -> Option<&mut TcpState> {
        match self.contexts.get_mut(&id) {
            Some(ContextState::Tcp(tcp)) => Some(tcp),
            _ => self.ended_tcp.get_mut(&id).map(|tcp| &mut **tcp),
        }
    }

    /// Tells an HTTP context whether it is in the access-log phase (`proxy_on_log`); other
    /// contexts have no such phase.
    pub(crate) fn set_log_phase(&mut self, id: u32, log_phase: bool) {
        if let Some(ContextState::Http(http)) = self.contexts.get_mut(&id) {
            http.set_log_phase(log_phase);
        }
    }

    /// The HTTP stream hostcalls act on, if they act on one.
    fn http(&mut self) -> Option<&mut HttpState> {
        let id = self.context_id();
        match self.contexts.get_mut(&id) {
            Some(ContextState::Http(http)) => Some(http),
            _ => None,
        }
    }

    /// Whether hostcalls act on an HTTP stream in its access-log phase.
    pub(crate) fn in_log_phase(&self) -> bool {
        matches!(self.contexts.get(&self.context_id()), Some(ContextState::Http(http)) if http.in_log_phase())
    }

    /// The header map the guest may read now.
    pub(crate) fn map(&self, map_type: u32) -> Option<&Headers> {
        match map_type {
            map::HTTP_CALL_RESPONSE_HEADERS => self.call_response.as_ref().map(|c| &c.headers),
            map::HTTP_CALL_RESPONSE_TRAILERS => self.call_response.as_ref().map(|c| &c.trailers),
            _ => match self.contexts.get(&self.context_id()) {
                Some(ContextState::Http(http)) => http.map(map_type),
                _ => None,
            },
        }
    }

    /// The header map the guest may change now.
    pub(crate) fn map_mut(&mut self, map_type: u32) -> Option<&mut Headers> {
        self.http().and_then(|http| http.map_mut(map_type))
    }

    /// The readable bytes of a buffer: `Err(NotFound)` when the buffer does not exist now.
    pub(crate) fn buffer(&self, buffer_type: u32) -> Result<&[u8], Status> {
        match buffer_type {
            buffer::VM_CONFIGURATION => Ok(&self.setup.vm_configuration),
            buffer::PLUGIN_CONFIGURATION if self.configuring => Ok(&self.setup.configuration),
            buffer::PLUGIN_CONFIGURATION => Err(Status::NotFound),
            buffer::HTTP_CALL_RESPONSE_BODY => self.call_response.as_ref().map(|c| c.body.as_slice()).ok_or(Status::NotFound),
            buffer::HTTP_REQUEST_BODY | buffer::HTTP_RESPONSE_BODY | buffer::DOWNSTREAM_DATA | buffer::UPSTREAM_DATA => {
                Ok(match self.contexts.get(&self.context_id()) {
                    Some(ContextState::Http(http)) => http.body(buffer_type).map_or(&[][..], Vec::as_slice),
                    Some(ContextState::Tcp(tcp)) => tcp.data(buffer_type).map_or(&[][..], Vec::as_slice),
                    _ => &[],
                })
            }
            buffer::GRPC_RECEIVE_BUFFER | buffer::CALL_DATA => Ok(&[]),
            _ => Err(Status::BadArgument),
        }
    }

    /// The buffer the guest may change now.
    pub(crate) fn buffer_mut(&mut self, buffer_type: u32) -> Result<&mut Vec<u8>, Status> {
        if buffer_type > buffer::MAX {
            return Err(Status::BadArgument);
        }
        if buffer_type == buffer::HTTP_CALL_RESPONSE_BODY && self.call_response.is_none() {
            return Err(Status::NotFound);
        }
        if buffer_type == buffer::PLUGIN_CONFIGURATION && !self.configuring {
            return Err(Status::NotFound);
        }
        let id = self.context_id();
        match self.contexts.get_mut(&id) {
            Some(ContextState::Http(http)) => http.body_mut(buffer_type).ok_or(Status::BadArgument),
            Some(ContextState::Tcp(tcp)) => tcp.data_mut(buffer_type).ok_or(Status::BadArgument),
            _ => Err(Status::BadArgument),
        }
    }

    /// A property as the current context sees it: its own, then the built-in ones, then
    /// the plugin's.
    pub(crate) fn property(&self, path: &PropertyPath) -> Option<Vec<u8>> {
        let plugin = &self.setup.properties;
        match self.contexts.get(&self.context_id()) {
            Some(ContextState::Http(http)) => {
                let builtin = http.builtin_properties();
                resolve(&[&http.properties, &builtin, plugin], path.segments())
            }
            Some(ContextState::Tcp(tcp)) => resolve(&[&tcp.properties, plugin], path.segments()),
            _ => resolve(&[plugin], path.segments()),
        }
    }
}
