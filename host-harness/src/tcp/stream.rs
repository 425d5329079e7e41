//! [`TcpStream`], the public handle that drives one connection through the network filter,
//! settling Envoy's event loop after each step.

use std::sync::{Arc, Mutex};

use crate::dispatcher;
use crate::error::Error;
use crate::http::message::StreamState;
use crate::property::{PropertyPath, PropertyValue};
use crate::tcp::driver as tcp_driver;
use crate::tcp::state::{PeerType, TcpSide};
use crate::vm::{Vm, lock};

/// One TCP connection through the plugin's network filter.
///
/// Create it with [`crate::Plugin::tcp_stream`] (which runs `proxy_on_new_connection`).
/// [`TcpStream::close`] reports the client's close and ends the context; dropping an
/// unclosed stream does the same and ignores errors.
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
            Ok(tcp_driver::tcp_state(vm, self.id)?.state(side))
        })
    }

    /// Sets a property of this connection.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the stream is closed.
    pub fn set_property(&self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> Result<(), Error> {
        let (path, value) = (path.into(), value.into());
        self.with(|vm| {
            tcp_driver::tcp_state(vm, self.id)?.properties.set(path, &value);
            Ok(())
        })
    }

    /// The client sends bytes (`proxy_on_downstream_data`).
    ///
    /// # Errors
    ///
    /// A trap in the guest, or data after the end of stream.
    pub fn send_downstream_data(&mut self, data: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.send(TcpSide::Downstream, data.as_ref(), end_of_stream)
    }

    /// The upstream sends bytes (`proxy_on_upstream_data`).
    ///
    /// # Errors
    ///
    /// A trap in the guest, or data after the end of stream.
    pub fn send_upstream_data(&mut self, data: impl AsRef<[u8]>, end_of_stream: bool) -> Result<StreamState, Error> {
        self.send(TcpSide::Upstream, data.as_ref(), end_of_stream)
    }

    /// The bytes that reached the upstream so far.
    pub fn upstream_received(&self) -> Vec<u8> {
        self.with(|vm| Ok(tcp_driver::tcp_state(vm, self.id)?.downstream.forwarded.clone()))
            .unwrap_or_default()
    }

    /// The bytes that reached the client so far.
    pub fn client_received(&self) -> Vec<u8> {
        self.with(|vm| Ok(tcp_driver::tcp_state(vm, self.id)?.upstream.forwarded.clone()))
            .unwrap_or_default()
    }

    /// Which connection the plugin asked to close (`proxy_close_stream`), if any.
    pub fn close_requested(&self) -> Option<TcpSide> {
        self.with(|vm| Ok(tcp_driver::tcp_state(vm, self.id)?.close_requested))
            .ok()
            .flatten()
    }

    /// The upstream connection closes (`proxy_on_upstream_connection_close`).
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn close_upstream(&mut self, peer: PeerType) -> Result<(), Error> {
        self.with(|vm| {
            vm.call("proxy_on_upstream_connection_close", self.id, &[self.id, peer as u32])?;
            dispatcher::settle(vm)
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
        self.with(|vm| {
            vm.call("proxy_on_downstream_connection_close", self.id, &[self.id, peer as u32])?;
            dispatcher::settle(vm)?;
            dispatcher::finish_context(vm, self.id)
        })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ignored = self.with(|vm| dispatcher::finish_context(vm, self.id));
        }
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("id", &self.id).finish()
    }
}
