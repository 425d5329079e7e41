//! The event loop that stands in for Envoy's dispatcher: deferred continues, closes and
//! local replies; answers to HTTP calls; ticks and timeouts on the virtual clock; queue-ready
//! notifications; creating and ending contexts.

use std::time::Duration;

use crate::abi::stream;
use crate::error::Error;
use crate::http::driver as http_driver;
use crate::http::state::Direction;
use crate::store::{ContextState, Deferred, PendingCall};
use crate::tcp::driver as tcp_driver;
use crate::tcp::state::TcpSide;
use crate::upstream::{HttpCallReply, UpstreamKind, send_http};
use crate::vm::Vm;

/// Creates a stream context (`proxy_on_context_create(id, root)`).
pub(crate) fn new_context(vm: &mut Vm, context: ContextState) -> Result<u32, Error> {
    if vm.failed() {
        return Err(Error::Failed);
    }
    let id = vm.new_context_id();
    let root = vm.host().root_id;
    vm.host_mut().contexts.insert(id, context);
    vm.call("proxy_on_context_create", id, &[id, root])?;
    settle(vm)?;
    Ok(id)
}

/// Ends a stream context: `proxy_on_done`, `proxy_on_log` (an HTTP context is in its
/// access-log phase meanwhile), `proxy_on_delete`; Envoy then cancels the context's calls.
pub(crate) fn finish_context(vm: &mut Vm, id: u32) -> Result<(), Error> {
    if !vm.host().contexts.contains_key(&id) {
        return Ok(());
    }
    let result = (|| {
        vm.call("proxy_on_done", id, &[id])?;
        vm.host_mut().set_log_phase(id, true);
        vm.call("proxy_on_log", id, &[id])?;
        vm.host_mut().set_log_phase(id, false);
        vm.call("proxy_on_delete", id, &[id])?;
        Ok(())
    })();
    let host = vm.host_mut();
    if let Some(ContextState::Tcp(tcp)) = host.contexts.remove(&id) {
        host.ended_tcp.insert(id, tcp);
    }
    // Envoy's `~Context` cancels the HTTP calls the context made.
    host.calls_pending.retain(|call| call.context != id);
    host.calls_to_dispatch.retain(|call| call.context != id);
    result?;
    settle(vm)
}

/// Applies the work hostcalls deferred until the VM call returned (continues, closes,
/// local replies), in the order they were asked for, as proxy-wasm-cpp-host's
/// `DeferAfterCallActions` does before Envoy looks at the callback's result.
pub(crate) fn run_deferred(vm: &mut Vm) -> Result<(), Error> {
    while !vm.host().deferred.is_empty() {
        if vm.failed() {
            return Err(Error::Failed);
        }
        let deferred = vm.host_mut().deferred.remove(0);
        apply(vm, deferred)?;
    }
    Ok(())
}

/// Runs Envoy's event loop until nothing is left to do now: deferred continues, closes
/// and local replies; answers from automatic upstreams; queue-ready notifications.
pub(crate) fn settle(vm: &mut Vm) -> Result<(), Error> {
    loop {
        run_deferred(vm)?;
        if vm.failed() {
            return Err(Error::Failed);
        }
        if !vm.host().calls_to_dispatch.is_empty() {
            let pending = vm.host_mut().calls_to_dispatch.remove(0);
            let upstream = vm.host().setup.upstreams.get(&pending.request.upstream).cloned();
            let reply = match upstream.map(|u| u.0) {
                Some(UpstreamKind::Handler(handler)) => handler(&pending.request),
                Some(UpstreamKind::Http(address)) => send_http(&address, &pending.request),
                Some(UpstreamKind::Manual) | None => {
                    vm.host_mut().calls_pending.push(pending);
                    continue;
                }
            };
            deliver_call(vm, &pending, reply)?;
            continue;
        }
        let ready = {
            let host = vm.host();
            host.shared.take_ready(host.instance_id)
        };
        if ready.is_empty() {
            return Ok(());
        }
        for (root, queue) in ready {
            vm.call("proxy_on_queue_ready", root, &[root, queue])?;
        }
    }
}

fn apply(vm: &mut Vm, deferred: Deferred) -> Result<(), Error> {
    let exists = |vm: &Vm, id: u32| vm.host().contexts.contains_key(&id);
    match deferred {
        Deferred::Continue { context, .. } if !exists(vm, context) => Ok(()),
        Deferred::Continue {
            context,
            stream: stream::HTTP_REQUEST,
        } => http_driver::resume(vm, context, Direction::Request),
        Deferred::Continue {
            context,
            stream: stream::HTTP_RESPONSE,
        } => http_driver::resume(vm, context, Direction::Response),
        Deferred::Continue { context, .. } => tcp_driver::resume(vm, context),
        Deferred::Close { context, .. } if !exists(vm, context) => Ok(()),
        Deferred::Close {
            context,
            stream: stream::DOWNSTREAM,
        } => tcp_driver::close(vm, context, TcpSide::Downstream),
        Deferred::Close {
            context,
            stream: stream::UPSTREAM,
        } => tcp_driver::close(vm, context, TcpSide::Upstream),
        Deferred::Close { context, .. } => http_driver::reset(vm, context),
        Deferred::LocalResponse { context, .. } if !exists(vm, context) => Ok(()),
        Deferred::LocalResponse { context, reply } => http_driver::local_reply(vm, context, reply),
    }
}

/// Delivers a call's answer: `proxy_on_http_call_response` on the root context, with
/// the response readable through the HTTP-call-response map and buffer.
pub(crate) fn deliver_call(vm: &mut Vm, pending: &PendingCall, reply: HttpCallReply) -> Result<(), Error> {
    let delivered = reply.deliver();
    let counts = [
        u32::try_from(delivered.headers.len()).unwrap_or(u32::MAX),
        u32::try_from(delivered.body.len()).unwrap_or(u32::MAX),
        u32::try_from(delivered.trailers.len()).unwrap_or(u32::MAX),
    ];
    let root = vm.host().root_id;
    {
        let host = vm.host_mut();
        host.status = delivered.status.clone();
        host.call_response = Some(delivered);
    }
    let result = vm.call(
        "proxy_on_http_call_response",
        root,
        &[root, pending.request.token, counts[0], counts[1], counts[2]],
    );
    let host = vm.host_mut();
    host.call_response = None;
    host.status = (0, String::new());
    result.map(|_| ())
}

/// Moves the virtual clock forward by `by`, firing ticks and timing out manual calls in
/// time order.
pub(crate) fn advance(vm: &mut Vm, by: Duration) -> Result<(), Error> {
    let target = vm.host().elapsed + by;
    loop {
        let host = vm.host();
        let tick = host.next_tick.filter(|t| *t <= target);
        let timeout = host
            .calls_pending
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.deadline.map(|d| (d, i)))
            .filter(|(d, _)| *d <= target)
            .min();
        match (tick, timeout) {
            (Some(t), Some((d, i))) if d < t => time_out(vm, d, i)?,
            (Some(t), _) => {
                let host = vm.host_mut();
                host.elapsed = t;
                host.next_tick = host.tick_period.map(|p| t + p);
                let root = host.root_id;
                vm.call("proxy_on_tick", root, &[root])?;
                settle(vm)?;
            }
            (None, Some((d, i))) => time_out(vm, d, i)?,
            (None, None) => break,
        }
    }
    vm.host_mut().elapsed = target;
    Ok(())
}

fn time_out(vm: &mut Vm, at: Duration, index: usize) -> Result<(), Error> {
    let host = vm.host_mut();
    host.elapsed = at;
    let pending = host.calls_pending.remove(index);
    deliver_call(vm, &pending, HttpCallReply::Timeout)?;
    settle(vm)
}
