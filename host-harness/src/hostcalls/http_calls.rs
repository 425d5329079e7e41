//! Hostcalls for calls out of the plugin: `proxy_http_call` and `proxy_get_status`, and
//! gRPC calls, which the harness does not provide (with Envoy's statuses).

use std::time::Duration;

use wasmtime::{Caller, Linker};

use crate::abi::Status;
use crate::memory::{HostResult, copy_out, read, read_pairs, read_text, u, write_u32};
use crate::store::{HostState, PendingCall};
use crate::upstream::HttpCallRequest;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(linker, "proxy_http_call", |caller,
                                      up_ptr: i32,
                                      up_len: i32,
                                      headers_ptr: i32,
                                      headers_len: i32,
                                      body_ptr: i32,
                                      body_len: i32,
                                      trailers_ptr: i32,
                                      trailers_len: i32,
                                      timeout: i32,
                                      ret: i32| {
        let upstream = read_text(&mut caller, up_ptr, up_len)?;
        let headers = read_pairs(&mut caller, headers_ptr, headers_len)?;
        let body = read(&mut caller, body_ptr, body_len)?;
        let trailers = read_pairs(&mut caller, trailers_ptr, trailers_len)?;
        write_u32(&mut caller, ret, 0)?;
        let state = caller.data_mut();
        if !state.setup.upstreams.contains_key(&upstream) {
            return Err(Status::BadArgument.into());
        }
        if !(headers.contains(":path") && headers.contains(":method") && headers.contains(":authority")) {
            return Err(Status::BadArgument.into());
        }
        let token = state.next_call_token;
        state.next_call_token = state.next_call_token.wrapping_add(1).max(1);
        let timeout = (timeout != 0).then(|| Duration::from_millis(u64::from(u(timeout))));
        let request = HttpCallRequest {
            token,
            upstream,
            headers,
            body,
            trailers,
            timeout,
        };
        state.calls_made.push(request.clone());
        let deadline = timeout.map(|t| state.elapsed + t);
        let context = state.context_id();
        state.calls_to_dispatch.push(PendingCall {
            request,
            deadline,
            context,
        });
        write_u32(&mut caller, ret, token)
    });
    host!(linker, "proxy_get_status", |caller, code_ptr: i32, ret_ptr: i32, ret_size: i32| {
        let (code, message) = caller.data().status.clone();
        write_u32(&mut caller, code_ptr, code)?;
        copy_out(&mut caller, message.as_bytes(), ret_ptr, ret_size)
    });

    // gRPC: not provided; Envoy's answer for an unknown cluster is ParseFailure.
    host!(linker, "proxy_grpc_call", |caller,
                                      svc_ptr: i32,
                                      svc_len: i32,
                                      _a: i32,
                                      _b: i32,
                                      _c: i32,
                                      _d: i32,
                                      _e: i32,
                                      _f: i32,
                                      _g: i32,
                                      _h: i32,
                                      _timeout: i32,
                                      ret: i32| {
        grpc_open(&mut caller, svc_ptr, svc_len, ret)
    });
    host!(linker, "proxy_grpc_stream", |caller,
                                        svc_ptr: i32,
                                        svc_len: i32,
                                        _a: i32,
                                        _b: i32,
                                        _c: i32,
                                        _d: i32,
                                        _e: i32,
                                        _f: i32,
                                        ret: i32| {
        grpc_open(&mut caller, svc_ptr, svc_len, ret)
    });
    host!(linker, "proxy_grpc_send", |_caller,
                                      _token: i32,
                                      _ptr: i32,
                                      _len: i32,
                                      _end: i32| {
        Err(Status::NotFound.into())
    });
    host!(linker, "proxy_grpc_cancel", |_caller, _token: i32| { Err(Status::NotFound.into()) });
    host!(linker, "proxy_grpc_close", |_caller, _token: i32| { Err(Status::NotFound.into()) });
    Ok(())
}

fn grpc_open(caller: &mut Caller<'_, HostState>, svc_ptr: i32, svc_len: i32, ret: i32) -> HostResult {
    let service = read_text(caller, svc_ptr, svc_len)?;
    write_u32(caller, ret, 0)?;
    if caller.data().setup.upstreams.contains_key(&service) {
        // The cluster exists, but the harness speaks no gRPC.
        Err(Status::InternalFailure.into())
    } else {
        Err(Status::ParseFailure.into())
    }
}
