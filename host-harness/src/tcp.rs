//! TCP (network filter) streams.
//!
//! As in Envoy's network filter manager, data a callback does not let through
//! (`StopIteration`) stays buffered, and the next data callback sees it together with the
//! new bytes. Upstream data with end of stream also reports the upstream connection closed
//! (`proxy_on_upstream_connection_close` with `Unknown`), as Envoy's `onWrite` does.

use std::sync::{Arc, Mutex};

use crate::abi::buffer;
use crate::host::Context;
use crate::plugin::{PluginInner, lock};
use crate::property::{PropertyPath, PropertyStore, PropertyValue};
use crate::{Error, StreamState};

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

#[derive(Default)]
struct Side {
    data: Vec<u8>,
    available: bool,
    stopped: bool,
    forwarded: Vec<u8>,
    end_forwarded: bool,
    end_received: bool,
}

impl Side {
    fn forward(&mut self) {
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
    downstream: Side,
    upstream: Side,
    pub properties: PropertyStore,
    close_requested: Option<TcpSide>,
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

    fn side(&mut self, side: TcpSide) -> &mut Side {
        match side {
            TcpSide::Downstream => &mut self.downstream,
            TcpSide::Upstream => &mut self.upstream,
        }
    }

    fn state(&self, side: TcpSide) -> StreamState {
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

impl PluginInner {
    fn tcp(&mut self, id: u32) -> Result<&mut TcpState, Error> {
        match self.host_mut().contexts.get_mut(&id) {
            Some(Context::Tcp(tcp)) => Ok(tcp),
            _ => Err(Error::Usage(format!("TCP stream {id} is finished"))),
        }
    }

    pub(crate) fn tcp_data(&mut self, id: u32, side: TcpSide, chunk: &[u8], end_of_stream: bool) -> Result<StreamState, Error> {
        let len = {
            let s = self.tcp(id)?.side(side);
            if s.end_received {
                return Err(Error::Usage(format!("{side:?} data after end of stream")));
            }
            s.data.extend_from_slice(chunk);
            s.available = true;
            s.end_received = end_of_stream;
            u32::try_from(s.data.len()).unwrap_or(u32::MAX)
        };
        let callback = match side {
            TcpSide::Downstream => "proxy_on_downstream_data",
            TcpSide::Upstream => "proxy_on_upstream_data",
        };
        let result = self.call(callback, id, &[id, len, u32::from(end_of_stream)])?;
        {
            let s = self.tcp(id)?.side(side);
            if result.unwrap_or(0) == 0 {
                s.forward();
            } else {
                s.stopped = true;
            }
        }
        if side == TcpSide::Upstream && end_of_stream {
            self.call("proxy_on_upstream_connection_close", id, &[id, PeerType::Unknown as u32])?;
        }
        self.settle()?;
        Ok(self.tcp(id)?.state(side))
    }

    /// `proxy_continue_stream(Downstream)`: Envoy continues reading.
    pub(crate) fn tcp_resume(&mut self, id: u32) -> Result<(), Error> {
        let s = &mut self.tcp(id)?.downstream;
        if s.stopped {
            s.forward();
        }
        Ok(())
    }

    /// `proxy_close_stream(Downstream | Upstream)`.
    pub(crate) fn tcp_close(&mut self, id: u32, side: TcpSide) -> Result<(), Error> {
        let tcp = self.tcp(id)?;
        tcp.close_requested.get_or_insert(side);
        Ok(())
    }
}

/// One TCP connection through the plugin's network filter.
///
/// Create it with [`crate::Plugin::tcp_stream`] (which runs `proxy_on_new_connection`).
/// [`TcpStream::close`] reports the client's close and ends the context; dropping an
/// unclosed stream does the same and ignores errors.
pub struct TcpStream {
    pub(crate) inner: Arc<Mutex<PluginInner>>,
    pub(crate) id: u32,
    pub(crate) finished: bool,
}

impl TcpStream {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn with<T>(&self, f: impl FnOnce(&mut PluginInner) -> Result<T, Error>) -> Result<T, Error> {
        let mut inner = lock(&self.inner);
        f(&mut inner)
    }

    /// Sets a property of this connection.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the stream is closed.
    pub fn set_property(&self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> Result<(), Error> {
        let (path, value) = (path.into(), value.into());
        self.with(|inner| {
            inner.tcp(self.id)?.properties.set(path, &value);
            Ok(())
        })
    }

    /// The client sends bytes (`proxy_on_downstream_data`).
    ///
    /// # Errors
    ///
    /// A trap in the guest, or data after the end of stream.
    pub fn send_downstream_data(&mut self, data: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.with(|inner| inner.tcp_data(self.id, TcpSide::Downstream, data.as_ref(), end_of_stream))
    }

    /// The upstream sends bytes (`proxy_on_upstream_data`).
    ///
    /// # Errors
    ///
    /// A trap in the guest, or data after the end of stream.
    pub fn send_upstream_data(&mut self, data: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.with(|inner| inner.tcp_data(self.id, TcpSide::Upstream, data.as_ref(), end_of_stream))
    }

    /// The bytes that reached the upstream so far.
    pub fn upstream_received(&self) -> Vec<u8> {
        self.with(|inner| Ok(inner.tcp(self.id)?.downstream.forwarded.clone()))
            .unwrap_or_default()
    }

    /// The bytes that reached the client so far.
    pub fn client_received(&self) -> Vec<u8> {
        self.with(|inner| Ok(inner.tcp(self.id)?.upstream.forwarded.clone()))
            .unwrap_or_default()
    }

    /// Which connection the plugin asked to close (`proxy_close_stream`), if any.
    pub fn close_requested(&self) -> Option<TcpSide> {
        self.with(|inner| Ok(inner.tcp(self.id)?.close_requested)).ok().flatten()
    }

    /// The upstream connection closes (`proxy_on_upstream_connection_close`).
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn close_upstream(&mut self, peer: PeerType) -> Result<(), Error> {
        self.with(|inner| {
            inner.call("proxy_on_upstream_connection_close", self.id, &[self.id, peer as u32])?;
            inner.settle()
        })
    }

    /// The client connection closes (`proxy_on_downstream_connection_close`), which ends
    /// the context (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`).
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn close(mut self, peer: PeerType) -> Result<(), Error> {
        self.finished = true;
        self.with(|inner| {
            inner.call("proxy_on_downstream_connection_close", self.id, &[self.id, peer as u32])?;
            inner.settle()?;
            inner.finish_context(self.id, |_, _, _| {})
        })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ignored = self.with(|inner| inner.finish_context(self.id, |_, _, _| {}));
        }
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("id", &self.id).finish()
    }
}
