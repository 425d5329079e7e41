//! Drives one HTTP stream context through the VM: delivers what the client and the
//! upstream send to the guest's callbacks, applies their results to the per-side state
//! machine, and applies what Envoy defers to after a callback (continue, reset, local reply).

use crate::error::Error;
use crate::headers::Headers;
use crate::http::message::{HttpOutcome, LocalReply, Message, StreamState};
use crate::http::state::{Direction, Flow, HttpState, LocalReplySpec, StreamEnd, count};
use crate::vm::Vm;

/// The state of HTTP stream `id`.
pub(crate) fn http_state(vm: &mut Vm, id: u32) -> Result<&mut HttpState, Error> {
    vm.host_mut().http_state(id)
}

/// Where one direction of the stream stands.
pub(crate) fn state(vm: &mut Vm, id: u32, direction: Direction) -> Result<StreamState, Error> {
    Ok(http_state(vm, id)?.state(direction))
}

/// Whether the stream ended early (local reply or reset), or is gone.
pub(crate) fn ended(vm: &mut Vm, id: u32) -> bool {
    http_state(vm, id).map_or(true, |http| http.end.is_some())
}

/// The client (request) or the upstream (response) sends headers: the headers callback
/// runs, and its result stops or forwards them.
pub(crate) fn send_headers(vm: &mut Vm, id: u32, direction: Direction, headers: Headers, end_of_stream: bool) -> Result<(), Error> {
    let headers = headers.lowercased();
    let n = count(headers.len());
    {
        let d = http_state(vm, id)?.message(direction);
        if d.headers_received {
            return Err(Error::Usage(format!("{direction:?} headers were already sent")));
        }
        d.headers = headers;
        d.headers_received = true;
        d.headers_available = true;
        d.end_received = end_of_stream;
    }
    let result = vm.call(direction.callbacks().0, id, &[id, n, u32::from(end_of_stream)])?;
    let stop = vm.host().stop_iteration || result.unwrap_or(0) != 0;
    let hold = vm.host().setup.allow_on_headers_stop_iteration;
    if !ended(vm, id) {
        let d = http_state(vm, id)?.message(direction);
        if stop && hold && !end_of_stream {
            // cpp-host passes `StopIteration` on to Envoy unchanged: the headers wait here,
            // and the body reaches the filter's body callbacks.
            d.headers_held = true;
            d.flow = Flow::Open;
        } else if stop {
            d.flow = Flow::HeadersStopped;
        } else {
            d.forward_headers();
            if end_of_stream {
                d.forward_end();
            } else {
                d.flow = Flow::Open;
            }
        }
    }
    Ok(())
}

/// A body chunk arrives: held while the headers are stopped, else handed to the body
/// callback with what was buffered before.
pub(crate) fn send_body(vm: &mut Vm, id: u32, direction: Direction, chunk: &[u8], end_of_stream: bool) -> Result<(), Error> {
    let d = http_state(vm, id)?.message(direction);
    if !d.headers_received || d.end_received {
        return Err(Error::Usage(format!(
            "{direction:?} body sent before headers or after end of stream"
        )));
    }
    match d.flow {
        Flow::HeadersStopped => {
            d.held_body.extend_from_slice(chunk);
            d.held_data_seen = true;
            d.end_received = end_of_stream;
        }
        Flow::Open => {
            d.body = chunk.to_vec();
            call_body(vm, id, direction, end_of_stream)?;
        }
        Flow::BodyStopped => {
            d.body.extend_from_slice(chunk);
            call_body(vm, id, direction, end_of_stream)?;
        }
        _ => return Err(Error::Usage(format!("{direction:?} body sent after trailers"))),
    }
    Ok(())
}

/// Trailers arrive: held while the headers are stopped, else handed to the trailers
/// callback.
pub(crate) fn send_trailers(vm: &mut Vm, id: u32, direction: Direction, trailers: Headers) -> Result<(), Error> {
    let trailers = trailers.lowercased();
    let d = http_state(vm, id)?.message(direction);
    if !d.headers_received || d.end_received {
        return Err(Error::Usage(format!(
            "{direction:?} trailers sent before headers or after end of stream"
        )));
    }
    d.end_received = true;
    match d.flow {
        Flow::HeadersStopped => d.held_trailers = Some(trailers),
        Flow::Open | Flow::BodyStopped => call_trailers(vm, id, direction, trailers)?,
        _ => return Err(Error::Usage(format!("{direction:?} trailers sent twice"))),
    }
    Ok(())
}

fn call_body(vm: &mut Vm, id: u32, direction: Direction, end_of_stream: bool) -> Result<(), Error> {
    let len = {
        let d = http_state(vm, id)?.message(direction);
        d.end_received |= end_of_stream;
        d.body_available = true;
        count(d.body.len())
    };
    let result = vm.call(direction.callbacks().1, id, &[id, len, u32::from(end_of_stream)])?;
    let code = if vm.host().stop_iteration { 3 } else { result.unwrap_or(0) };
    if ended(vm, id) {
        return Ok(());
    }
    let d = http_state(vm, id)?.message(direction);
    match code {
        0 => {
            d.forward_body();
            if end_of_stream {
                d.forward_end();
            } else {
                d.flow = Flow::Open;
            }
        }
        1 | 2 => d.flow = Flow::BodyStopped,
        _ => {
            d.body.clear();
            d.body_available = false;
            d.flow = if end_of_stream { Flow::BodyStopped } else { Flow::Open };
        }
    }
    Ok(())
}

fn call_trailers(vm: &mut Vm, id: u32, direction: Direction, trailers: Headers) -> Result<(), Error> {
    let n = count(trailers.len());
    {
        let d = http_state(vm, id)?.message(direction);
        d.trailers = trailers;
        d.trailers_available = true;
    }
    let result = vm.call(direction.callbacks().2, id, &[id, n])?;
    let stop = vm.host().stop_iteration || result.unwrap_or(0) != 0;
    if ended(vm, id) {
        return Ok(());
    }
    let d = http_state(vm, id)?.message(direction);
    if stop {
        d.flow = Flow::TrailersStopped;
    } else {
        d.forward_body();
        d.forwarded.trailers = Some(d.trailers.clone());
        d.trailers_available = false;
        d.forward_end();
    }
    Ok(())
}

/// `proxy_continue_stream(HttpRequest | HttpResponse)`, applied after the VM call.
pub(crate) fn resume(vm: &mut Vm, id: u32, direction: Direction) -> Result<(), Error> {
    if ended(vm, id) {
        return Ok(());
    }
    let d = http_state(vm, id)?.message(direction);
    match d.flow {
        Flow::HeadersStopped => {
            d.forward_headers();
            d.flow = Flow::Open;
            let held_body = std::mem::take(&mut d.held_body);
            let seen = std::mem::replace(&mut d.held_data_seen, false);
            let held_trailers = d.held_trailers.take();
            let end = d.end_received;
            if seen {
                d.body = held_body;
                call_body(vm, id, direction, end && held_trailers.is_none())?;
            }
            if let Some(trailers) = held_trailers {
                if !ended(vm, id) && matches!(http_state(vm, id)?.message(direction).flow, Flow::Open | Flow::BodyStopped) {
                    call_trailers(vm, id, direction, trailers)?;
                }
            } else if !seen && end {
                http_state(vm, id)?.message(direction).forward_end();
            }
        }
        Flow::BodyStopped => {
            d.forward_body();
            if d.end_received {
                d.forward_end();
            } else {
                d.flow = Flow::Open;
            }
        }
        // Held headers (allow_on_headers_stop_iteration), no body buffered yet.
        Flow::Open if d.headers_held => d.forward_body(),
        Flow::TrailersStopped => {
            d.forward_body();
            d.forwarded.trailers = Some(d.trailers.clone());
            d.trailers_available = false;
            d.forward_end();
        }
        _ => {}
    }
    Ok(())
}

/// `proxy_close_stream(HttpRequest | HttpResponse)`: Envoy resets the stream.
pub(crate) fn reset(vm: &mut Vm, id: u32) -> Result<(), Error> {
    let http = http_state(vm, id)?;
    if http.end.is_none() {
        http.end = Some(StreamEnd::Reset("wasm_close_stream".to_owned()));
    }
    Ok(())
}

/// `proxy_send_local_response`, applied after the VM call.
pub(crate) fn local_reply(vm: &mut Vm, id: u32, spec: LocalReplySpec) -> Result<(), Error> {
    let http = http_state(vm, id)?;
    if http.end.is_some() || http.replying {
        return Ok(());
    }
    if http.response.forwarded.headers.is_some() {
        http.end = Some(StreamEnd::Reset("local reply after the response started".to_owned()));
        return Ok(());
    }
    let mut headers = Headers::from([(":status", spec.status.to_string())]);
    for (name, value) in spec.headers.iter() {
        headers.add(name, value);
    }
    if !spec.body.is_empty() {
        headers.set("content-length", spec.body.len().to_string());
        if !headers.contains("content-type") {
            headers.add("content-type", "text/plain");
        }
    }
    let reply = |headers: Headers, body: Vec<u8>| LocalReply {
        status: headers
            .get(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(u16::try_from(spec.status).unwrap_or(500)),
        headers,
        body,
        details: spec.details.clone(),
        grpc_status: spec.grpc_status,
    };
    if http.response.headers_received {
        // Sent from the response path before the response was forwarded: Envoy sends the
        // reply directly, without running the filter chain again.
        let message = Message {
            headers: Some(headers.clone()),
            body: spec.body.clone(),
            trailers: None,
            end_of_stream: true,
        };
        http.response.forwarded = message;
        http.end = Some(StreamEnd::LocalReply(reply(headers, spec.body.clone())));
        return Ok(());
    }
    // Sent from the request path: the reply runs through the filter's response callbacks.
    http.replying = true;
    http.request.headers_available = false;
    http.request.body_available = false;
    http.request.trailers_available = false;
    let body_empty = spec.body.is_empty();
    let n = count(headers.len());
    {
        let d = &mut http.response;
        d.headers = headers;
        d.headers_received = true;
        d.headers_available = true;
        d.end_received = true;
    }
    vm.call("proxy_on_response_headers", id, &[id, n, u32::from(body_empty)])?;
    if !body_empty {
        let d = &mut http_state(vm, id)?.response;
        d.headers_available = false;
        d.body = spec.body.clone();
        d.body_available = true;
        let len = count(d.body.len());
        vm.call("proxy_on_response_body", id, &[id, len, 1])?;
    }
    let http = http_state(vm, id)?;
    let d = &mut http.response;
    d.headers_available = false;
    d.body_available = false;
    let (headers, body) = (d.headers.clone(), std::mem::take(&mut d.body));
    d.forwarded = Message {
        headers: Some(headers.clone()),
        body: body.clone(),
        trailers: None,
        end_of_stream: true,
    };
    d.flow = Flow::Complete;
    http.replying = false;
    http.end = Some(StreamEnd::LocalReply(reply(headers, body)));
    Ok(())
}

/// The exchange's outcome as the stream ends; from now on the guest reaches no header map
/// or body of the stream except the log-phase headers.
pub(crate) fn end(vm: &mut Vm, id: u32) -> Result<HttpOutcome, Error> {
    let outcome = http_state(vm, id)?.outcome();
    let http = http_state(vm, id)?;
    for d in [&mut http.request, &mut http.response] {
        d.headers_available = false;
        d.body_available = false;
        d.trailers_available = false;
    }
    Ok(outcome)
}
