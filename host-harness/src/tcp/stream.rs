//! [`TcpStream`], the public handle that drives one connection through the network filter,
//! settling Envoy's event loop after each step.

use std::sync::{Arc, Mutex};

use crate::dispatcher;
use crate::error::Error;
use crate::http::message::StreamState;
use crate::property::{PropertyPath, PropertyValue};
use crate::tcp::driver as tcp_driver;
use crate::tcp::state::{PeerType, TcpSide, TcpState};
use crate::vm::{Vm, lock};

/// One TCP connection through the plugin's network filter, in front of tcp_proxy.
///
/// Create it with [`crate::Plugin::tcp_stream`] (which runs `proxy_on_new_connection`).
/// [`TcpStream::close`] reports the client's close and ends the context; dropping an
/// unclosed stream does the same and ignores errors. When the filter closes the connection
/// (`proxy_close_stream`), Envoy ends the context itself: the step reports
/// [`StreamState::Reset`], and what reached each side stays readable here.
pub struct TcpStream {
    pub(crate) vm: Arc<Mutex<Vm>>,
    pub(crate) id: u32,
    pub(crate) finished: bool,
}

impl TcpStream {
    /// The stream's context id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vm) -> Result<T, Error>) -> Result<T, Error> {
        let mut vm = lock(&self.vm);
        f(&mut vm)
    }

    /// One step: data from `side`, then the event loop; reports where `side` stands.
    fn send(&self, side: TcpSide, data: &[u8], end_of_stream: bool) -> Result<StreamState, Error> {
        self.with(|vm| {
            tcp_driver::send_data(vm, self.id, side, data, end_of_stream)?;
            dispatcher::settle(vm)?;
            Ok(vm.host().tcp_record(self.id).map_or(StreamState::Reset, |tcp| tcp.state(side)))
        })
    }

    /// Reads what the connection did, whether it is open or closed.
    fn record<T: Default>(&self, f: impl FnOnce(&TcpState) -> T) -> T {
        lock(&self.vm).host().tcp_record(self.id).map(f).unwrap_or_default()
    }

    /// Sets a property of this connection.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the connection is closed.
    pub fn set_property(&self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> Result<(), Error> {
        let (path, value) = (path.into(), value.into());
        self.with(|vm| {
            tcp_driver::tcp_state(vm, self.id)?.properties.set(path, &value);
            Ok(())
        })
    }

    /// The client sends bytes (`proxy_on_downstream_data` with everything buffered so far).
    ///
    /// # Errors
    ///
    /// A trap in the guest; [`Error::Usage`] for data after the end of stream or on a
    /// closed connection.
    pub fn send_downstream_data(&mut self, data: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.send(TcpSide::Downstream, data.as_ref(), end_of_stream)
    }

    /// The upstream sends bytes (`proxy_on_upstream_data` with everything buffered so far).
    /// With `end_of_stream`, the guest also hears the upstream connection close
    /// (`proxy_on_upstream_connection_close` with `Unknown`), as in Envoy.
    ///
    /// # Errors
    ///
    /// A trap in the guest; [`Error::Usage`] for data after the end of stream or on a
    /// closed connection.
    pub fn send_upstream_data(&mut self, data: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.send(TcpSide::Upstream, data.as_ref(), end_of_stream)
    }

    /// The bytes that reached the upstream so far: what the filter let through or
    /// `proxy_continue_stream` released, as edited.
    pub fn upstream_received(&self) -> Vec<u8> {
        self.record(|tcp| tcp.downstream.forwarded.clone())
    }

    /// The bytes that reached the client so far: upstream data the filter let through, as
    /// edited. Nothing else writes to the client.
    pub fn client_received(&self) -> Vec<u8> {
        self.record(|tcp| tcp.upstream.forwarded.clone())
    }

    /// Takes the bytes that reached the upstream since the last take, as a relay in front
    /// of a real socket writes them out ([`TcpStream::upstream_received`] then holds only
    /// what came after).
    pub fn take_upstream_received(&mut self) -> Vec<u8> {
        self.take(|tcp| &mut tcp.downstream.forwarded)
    }

    /// Takes the bytes that reached the client since the last take.
    pub fn take_client_received(&mut self) -> Vec<u8> {
        self.take(|tcp| &mut tcp.upstream.forwarded)
    }

    fn take(&mut self, bytes: impl FnOnce(&mut TcpState) -> &mut Vec<u8>) -> Vec<u8> {
        lock(&self.vm)
            .host_mut()
            .tcp_record_mut(self.id)
            .map(|tcp| std::mem::take(bytes(tcp)))
            .unwrap_or_default()
    }

    /// Whether the client's end of stream (half close) reached the upstream.
    pub fn upstream_end_received(&self) -> bool {
        self.record(|tcp| tcp.downstream.end_forwarded)
    }

    /// Whether the upstream's end of stream reached the client.
    pub fn client_end_received(&self) -> bool {
        self.record(|tcp| tcp.upstream.end_forwarded)
    }

    /// The stream type of the `proxy_close_stream` that closed the connection, if the
    /// filter closed it. Either type closes the client's connection (and tcp_proxy then
    /// closes the upstream one), as in Envoy.
    pub fn close_requested(&self) -> Option<TcpSide> {
        self.record(|tcp| tcp.close_requested)
    }

    /// Whether the connection is closed, by the filter or by [`TcpStream::close`].
    pub fn is_closed(&self) -> bool {
        self.record(|tcp| tcp.closed)
    }

    /// The upstream connection closes (`proxy_on_upstream_connection_close`).
    ///
    /// # Errors
    ///
    /// A trap in the guest; [`Error::Usage`] on a closed connection.
    pub fn close_upstream(&mut self, peer: PeerType) -> Result<(), Error> {
        self.with(|vm| {
            tcp_driver::tcp_state(vm, self.id)?;
            vm.call("proxy_on_upstream_connection_close", self.id, &[self.id, peer as u32])?;
            dispatcher::settle(vm)
        })
    }

    /// The client connection closes (`proxy_on_downstream_connection_close`), which ends
    /// the context (`proxy_on_done`, `proxy_on_log`, `proxy_on_delete`). Nothing happens
    /// if the filter closed the connection already.
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn close(mut self, peer: PeerType) -> Result<(), Error> {
        self.finished = true;
        self.with(|vm| {
            if tcp_driver::is_closed(vm, self.id) {
                return Ok(());
            }
            tcp_driver::tcp_state(vm, self.id)?.closed = true;
            vm.call("proxy_on_downstream_connection_close", self.id, &[self.id, peer as u32])?;
            dispatcher::settle(vm)?;
            dispatcher::finish_context(vm, self.id)
        })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let _ignored = self.with(|vm| {
            if !self.finished && !tcp_driver::is_closed(vm, self.id) {
                dispatcher::finish_context(vm, self.id)?;
            }
            vm.host_mut().ended_tcp.remove(&self.id);
            Ok(())
        });
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("id", &self.id).finish()
    }
}
