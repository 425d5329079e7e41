//! Drives one TCP stream context through the VM the way Envoy's network filter chain
//! drives the wasm filter in front of tcp_proxy: delivers data to the guest's callbacks,
//! applies what they deferred (continue, close), then their result.

use crate::dispatcher;
use crate::error::Error;
use crate::tcp::state::{PeerType, TcpSide, TcpState};
use crate::vm::Vm;

/// The state of TCP stream `id`: [`Error::Usage`] once the connection is closed.
pub(crate) fn tcp_state(vm: &mut Vm, id: u32) -> Result<&mut TcpState, Error> {
    if vm.host().ended_tcp.contains_key(&id) {
        return Err(Error::Usage(format!("TCP stream {id} is closed")));
    }
    vm.host_mut().tcp_state(id)
}

/// Data arrives from one side, as Envoy's `Context::onData` (downstream) and
/// `Context::onWrite` (upstream) hand it over (source/extensions/common/wasm/context.cc):
///
/// * the callback sees the side's whole buffer: the new bytes after any it stopped on;
/// * what the callback deferred runs next (cpp-host's `DeferAfterCallActions`), so a
///   `proxy_continue_stream` passes the bytes on even from a callback that stops, and a
///   `proxy_close_stream` closes the connection before they go anywhere: Envoy's filter
///   managers pass nothing on once the connection is no longer open
///   (source/common/network/filter_manager_impl.cc, `onContinueReading`, `onWrite`);
/// * `Continue` passes the buffer on and makes it unreachable to hostcalls; `StopIteration`
///   keeps it, reachable, for the next callback;
/// * upstream data with end of stream also reports the upstream connection closed
///   (`proxy_on_upstream_connection_close` with `Unknown`), as `Context::onWrite` does.
pub(crate) fn send_data(vm: &mut Vm, id: u32, side: TcpSide, chunk: &[u8], end_of_stream: bool) -> Result<(), Error> {
    let len = {
        let s = tcp_state(vm, id)?.side(side);
        if s.end_received {
            return Err(Error::Usage(format!("{side:?} data after end of stream")));
        }
        s.data.extend_from_slice(chunk);
        s.reachable = true;
        s.end_received = end_of_stream;
        u32::try_from(s.data.len()).unwrap_or(u32::MAX)
    };
    let callback = match side {
        TcpSide::Downstream => "proxy_on_downstream_data",
        TcpSide::Upstream => "proxy_on_upstream_data",
    };
    let result = vm.call(callback, id, &[id, len, u32::from(end_of_stream)])?;
    let continued = result.unwrap_or(0) == 0;
    tcp_state(vm, id)?.side(side).stopped = !continued;
    dispatcher::run_deferred(vm)?;
    if is_closed(vm, id) {
        return Ok(());
    }
    if continued {
        let s = tcp_state(vm, id)?.side(side);
        s.pass_on();
        s.reachable = false;
    }
    if side == TcpSide::Upstream && end_of_stream {
        vm.call("proxy_on_upstream_connection_close", id, &[id, PeerType::Unknown as u32])?;
    }
    Ok(())
}

/// `proxy_continue_stream(Downstream)`, after the callback: Envoy's `continueReading`
/// resumes the filter chain at the filter after the wasm one
/// (`FilterManagerImpl::onContinueReading`), so tcp_proxy gets the buffered bytes and the
/// guest's data callback is not called again. The buffer stays reachable (empty), as
/// Envoy's pointer to it does.
pub(crate) fn resume(vm: &mut Vm, id: u32) -> Result<(), Error> {
    tcp_state(vm, id)?.downstream.pass_on();
    Ok(())
}

/// `proxy_close_stream(Downstream | Upstream)`, after the callback: both close the
/// client's connection (Envoy's `Context::closeStream` closes the connection of the read
/// or of the write filter callbacks, which is the same one, with `FlushWrite`), and tcp_proxy
/// closes the upstream connection with it. Envoy then reports the close to the guest
/// (`proxy_on_downstream_connection_close` with `Local`) and ends the context
/// (`Context::onCloseTCP`: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`).
pub(crate) fn close(vm: &mut Vm, id: u32, side: TcpSide) -> Result<(), Error> {
    let tcp = tcp_state(vm, id)?;
    tcp.close_requested.get_or_insert(side);
    tcp.closed = true;
    vm.call("proxy_on_downstream_connection_close", id, &[id, PeerType::Local as u32])?;
    dispatcher::finish_context(vm, id)
}

/// Whether the connection of stream `id` is closed.
pub(crate) fn is_closed(vm: &Vm, id: u32) -> bool {
    vm.host().tcp_record(id).is_none_or(|tcp| tcp.closed)
}
