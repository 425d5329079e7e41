//! Drives one TCP stream context through the VM: delivers data to the guest's callbacks and
//! applies their results, and what Envoy defers to after a callback (continue, close).

use crate::error::Error;
use crate::tcp::state::{PeerType, TcpSide, TcpState};
use crate::vm::Vm;

/// The state of TCP stream `id`.
pub(crate) fn tcp_state(vm: &mut Vm, id: u32) -> Result<&mut TcpState, Error> {
    vm.host_mut().tcp_state(id)
}

/// Data arrives from one side: the data callback sees it with what it held before, and
/// its result forwards or holds it. Upstream data with end of stream also reports the
/// upstream connection closed, as Envoy's `onWrite` does.
pub(crate) fn send_data(vm: &mut Vm, id: u32, side: TcpSide, chunk: &[u8], end_of_stream: bool) -> Result<(), Error> {
    let len = {
        let s = tcp_state(vm, id)?.side(side);
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
    let result = vm.call(callback, id, &[id, len, u32::from(end_of_stream)])?;
    {
        let s = tcp_state(vm, id)?.side(side);
        if result.unwrap_or(0) == 0 {
            s.forward();
        } else {
            s.stopped = true;
        }
    }
    if side == TcpSide::Upstream && end_of_stream {
        vm.call("proxy_on_upstream_connection_close", id, &[id, PeerType::Unknown as u32])?;
    }
    Ok(())
}

/// `proxy_continue_stream(Downstream)`: Envoy continues reading.
pub(crate) fn resume(vm: &mut Vm, id: u32) -> Result<(), Error> {
    let s = &mut tcp_state(vm, id)?.downstream;
    if s.stopped {
        s.forward();
    }
    Ok(())
}

/// `proxy_close_stream(Downstream | Upstream)`.
pub(crate) fn close(vm: &mut Vm, id: u32, side: TcpSide) -> Result<(), Error> {
    let tcp = tcp_state(vm, id)?;
    tcp.close_requested.get_or_insert(side);
    Ok(())
}
