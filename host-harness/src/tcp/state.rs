//! The state of one TCP stream context: per side, what the guest may reach, what it holds,
//! and what has been forwarded.

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
#[derive(Default)]
pub(crate) struct SideState {
    pub(crate) data: Vec<u8>,
    pub(crate) available: bool,
    pub(crate) stopped: bool,
    pub(crate) forwarded: Vec<u8>,
    pub(crate) end_forwarded: bool,
    pub(crate) end_received: bool,
}

impl SideState {
    pub(crate) fn forward(&mut self) {
        self.forwarded.append(&mut self.data);
        self.available = false;
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
    pub(crate) close_requested: Option<TcpSide>,
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
            buffer::DOWNSTREAM_DATA if self.downstream.available => Some(&self.downstream.data),
            buffer::UPSTREAM_DATA if self.upstream.available => Some(&self.upstream.data),
            _ => None,
        }
    }

    pub(crate) fn data_mut(&mut self, buffer_type: u32) -> Option<&mut Vec<u8>> {
        match buffer_type {
            buffer::DOWNSTREAM_DATA if self.downstream.available => Some(&mut self.downstream.data),
            buffer::UPSTREAM_DATA if self.upstream.available => Some(&mut self.upstream.data),
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
        if self.close_requested.is_some() {
            return StreamState::Reset;
        }
        let s = match side {
            TcpSide::Downstream => &self.downstream,
            TcpSide::Upstream => &self.upstream,
        };
        if s.stopped { StreamState::Paused } else { StreamState::Continued }
    }
}
