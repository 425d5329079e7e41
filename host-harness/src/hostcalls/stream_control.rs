//! Hostcalls that steer a stream (HTTP or TCP): continue, close, local replies. Envoy
//! applies each after the callback returns, so they are queued as deferred work.

use wasmtime::Linker;

use crate::abi::{Status, stream};
use crate::http::state::LocalReplySpec;
use crate::memory::{HostResult, read, read_pairs, read_text, u};
use crate::store::{ContextState, Deferred, HostState};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(linker, "proxy_continue_stream", |caller, kind: i32| {
        continue_stream(caller.data_mut(), u(kind))
    });
    host!(linker, "proxy_continue_request", |caller| {
        continue_stream(caller.data_mut(), stream::HTTP_REQUEST)
    });
    host!(linker, "proxy_continue_response", |caller| {
        continue_stream(caller.data_mut(), stream::HTTP_RESPONSE)
    });
    // Envoy's `Context::closeStream` (source/extensions/common/wasm/context.cc): each
    // stream type acts only on a context that has it (an HTTP stream resets, a connection
    // closes), after the callback; on any other context it is `Ok` and does nothing.
    host!(linker, "proxy_close_stream", |caller, kind: i32| {
        let kind = u(kind);
        if kind > stream::UPSTREAM {
            return Err(Status::BadArgument.into());
        }
        let state = caller.data_mut();
        let context = state.context_id();
        let applies = match state.contexts.get(&context) {
            Some(ContextState::Http(_)) => matches!(kind, stream::HTTP_REQUEST | stream::HTTP_RESPONSE),
            Some(ContextState::Tcp(_)) => matches!(kind, stream::DOWNSTREAM | stream::UPSTREAM),
            _ => false,
        };
        if applies {
            state.deferred.push(Deferred::Close { context, stream: kind });
        }
        Ok(())
    });
    host!(linker, "proxy_clear_route_cache", |_caller| { Ok(()) });
    host!(
        linker,
        "proxy_send_local_response",
        |caller,
         code: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc: i32| {
            let details = read_text(&mut caller, details_ptr, details_len)?;
            let body = read(&mut caller, body_ptr, body_len)?;
            let headers = read_pairs(&mut caller, headers_ptr, headers_len)?;
            let state = caller.data_mut();
            let context = state.context_id();
            if matches!(state.contexts.get(&context), Some(ContextState::Http(_))) {
                let reply = LocalReplySpec {
                    status: u(code),
                    details: details.replace(char::is_whitespace, "_"),
                    body,
                    headers,
                    grpc_status: grpc,
                };
                state.deferred.push(Deferred::LocalResponse { context, reply });
            }
            state.stop_iteration = true;
            Ok(())
        }
    );
    Ok(())
}

/// Envoy's `Context::continueStream` (source/extensions/common/wasm/context.cc): requests
/// and responses continue decoding/encoding and a connection continues reading (all after
/// the callback, and only on a context that has that stream); `Upstream` is
/// `Unimplemented` on every context, as Envoy cannot resume the write path.
fn continue_stream(state: &mut HostState, kind: u32) -> HostResult {
    let context = state.context_id();
    let is_tcp = matches!(state.contexts.get(&context), Some(ContextState::Tcp(_)));
    let is_http = matches!(state.contexts.get(&context), Some(ContextState::Http(_)));
    match kind {
        stream::HTTP_REQUEST | stream::HTTP_RESPONSE if is_http => state.deferred.push(Deferred::Continue { context, stream: kind }),
        stream::HTTP_REQUEST | stream::HTTP_RESPONSE => {}
        stream::DOWNSTREAM if is_tcp => state.deferred.push(Deferred::Continue { context, stream: kind }),
        stream::DOWNSTREAM => {}
        stream::UPSTREAM => return Err(Status::Unimplemented.into()),
        _ => return Err(Status::BadArgument.into()),
    }
    Ok(())
}
