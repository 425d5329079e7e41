//! The state of one TCP stream context: per side, what the guest may reach, what it holds,
//! and what has been passed on.

use crate::abi::buffer;
use crate::http::message::StreamState;
use crate::property::PropertyStore;

/// Who closed a connection, as `proxy_on_*_connection_close` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerType {
    /// Unknown.
    Unknown = 0,
    /// The proxy closed it.
    Local = 1,
    /// The peer closed it.
    Remote = 2,
}

/// A side of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpSide {
    /// The client's side.
    Downstream,
    /// The upstream's side.
    Upstream,
}

/// The host's state of one side of the connection.
///
/// `data` stands for the Envoy buffer the side's data callback is handed: the client
/// connection's read buffer (downstream), the upstream connection's read buffer that
/// tcp_proxy writes to the client (upstream). Both outlive a callback, so bytes a callback
/// stops on stay there and the next callback sees them with the new ones.
#[derive(Default)]
pub(crate) struct SideState {
    /// Bytes received and not passed on.
    pub(crate) data: Vec<u8>,
    /// Whether hostcalls reach `data`: Envoy's `Context::onData` / `onWrite`
    /// (source/extensions/common/wasm/context.cc) keep a pointer to the buffer from a data
    /// callback until one returns `Continue`, and `getBuffer` reads through it, so the
    /// buffer stays readable and writable from any callback meanwhile, even after
    /// `proxy_continue_stream` passed its bytes on.
    pub(crate) reachable: bool,
    /// Whether the last data callback stopped (`StopIteration`) and nothing resumed since.
    pub(crate) stopped: bool,
    /// Bytes passed on to the other side.
    pub(crate) forwarded: Vec<u8>,
    pub(crate) end_forwarded: bool,
    pub(crate) end_received: bool,
}

impl SideState {
    /// Hands the buffered bytes (and a received end of stream) to the next filter, as
    /// tcp_proxy drains what it is given.
    pub(crate) fn pass_on(&mut self) {
        self.forwarded.append(&mut self.data);
        self.stopped = false;
        if self.end_received {
            self.end_forwarded = true;
        }
    }
}

/// The host's state of one TCP stream context.
#[derive(Default)]
pub(crate) struct TcpState {
    pub(crate) downstream: SideState,
    pub(crate) upstream: SideState,
    pub properties: PropertyStore,
    /// The stream type of the first `proxy_close_stream` that closed the connection.
    pub(crate) close_requested: Option<TcpSide>,
    /// Whether the client connection is closed (the context has ended).
    pub(crate) closed: bool,
}

impl TcpState {
    pub(crate) fn new(properties: PropertyStore) -> TcpState {
        TcpState {
            properties,
            ..TcpState::default()
        }
    }

    pub(crate) fn data(&self, buffer_type: u32) -> Option<&Vec<u8>> {
        match buffer_type {
            buffer::DOWNSTREAM_DATA if self.downstream.reachable => Some(&self.downstream.data),
            buffer::UPSTREAM_DATA if self.upstream.reachable => Some(&self.upstream.data),
            _ => None,
        }
    }

    pub(crate) fn data_mut(&mut self, buffer_type: u32) -> Option<&mut Vec<u8>> {
        match buffer_type {
            buffer::DOWNSTREAM_DATA if self.downstream.reachable => Some(&mut self.downstream.data),
            buffer::UPSTREAM_DATA if self.upstream.reachable => Some(&mut self.upstream.data),
            _ => None,
        }
    }

    /// The state of one side.
    pub(crate) fn side(&mut self, side: TcpSide) -> &mut SideState {
        match side {
            TcpSide::Downstream => &mut self.downstream,
            TcpSide::Upstream => &mut self.upstream,
        }
    }

    /// Where one side stands, as a step reports it.
    pub(crate) fn state(&self, side: TcpSide) -> StreamState {
        if self.closed {
            return StreamState::Reset;
        }
        let s = match side {
            TcpSide::Downstream => &self.downstream,
            TcpSide::Upstream => &self.upstream,
        };
        if s.stopped { StreamState::Paused } else { StreamState::Continued }
    }
}
