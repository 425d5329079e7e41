//! Every raw host call the probe makes, in one place (as proxy-wasm-rust-sdk keeps its
//! hostcalls in `hostcalls.rs`): each is a safe function that passes borrowed bytes and
//! local out-parameters to the host and returns the host's status unchanged, so the probe
//! can check statuses the SDK's own wrappers turn into panics.
//!
//! Why the calls are sound, once for all: on `wasm32` the host reads and writes this
//! module's linear memory only at the pointer/length pairs passed to it; every pointer
//! here comes from a live slice or a local that outlives the call, and every out-parameter
//! is a properly aligned local of the type the ABI writes (`u32`/`usize`, both 32-bit on
//! wasm32, or `u64`).

use std::ptr::null_mut;

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_buffer_bytes(kind: u32, start: usize, max: usize, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(kind: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_get_header_map_value(kind: u32, key: *const u8, key_size: usize, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_add_header_map_value(kind: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_replace_header_map_value(kind: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_remove_header_map_value(kind: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_get_shared_data(key: *const u8, key_size: usize, ret: *mut *mut u8, ret_size: *mut usize, cas: *mut u32) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_resolve_shared_queue(vm: *const u8, vm_size: usize, name: *const u8, name_size: usize, ret: *mut u32) -> u32;
    fn proxy_dequeue_shared_queue(queue: u32, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_enqueue_shared_queue(queue: u32, value: *const u8, value_size: usize) -> u32;
    fn proxy_continue_stream(kind: u32) -> u32;
    fn proxy_close_stream(kind: u32) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout: u32,
        ret: *mut u32,
    ) -> u32;
    fn proxy_grpc_call(
        service: *const u8,
        service_size: usize,
        name: *const u8,
        name_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        message: *const u8,
        message_size: usize,
        timeout: u32,
        ret: *mut u32,
    ) -> u32;
    fn proxy_grpc_stream(
        service: *const u8,
        service_size: usize,
        name: *const u8,
        name_size: usize,
        method: *const u8,
        method_size: usize,
        metadata: *const u8,
        metadata_size: usize,
        ret: *mut u32,
    ) -> u32;
    fn proxy_grpc_send(token: u32, message: *const u8, message_size: usize, end: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_grpc_close(token: u32) -> u32;
    fn proxy_set_effective_context(id: u32) -> u32;
    fn proxy_done() -> u32;
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        ret: *mut *mut u8,
        ret_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, ret: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_get_metric(id: u32, ret: *mut u64) -> u32;
    fn proxy_get_status(code: *mut u32, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> i32;
}

/// Takes ownership of a value the host returned in memory it allocated (`None` for the
/// null pointer the host stores for an empty or absent value).
fn take(ptr: *mut u8, size: usize) -> Option<Vec<u8>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null `ptr` was allocated by the host through the SDK's
    // `proxy_on_memory_allocate`, which leaks a `Vec<u8>::with_capacity(size)`; so `ptr`,
    // `size` (length) and `size` (capacity) describe that vector, whose ownership the host
    // hands to the guest, and nothing else refers to it.
    Some(unsafe { Vec::from_raw_parts(ptr, size, size) })
}

/// A call that returns a value through `ret`/`ret_size`: runs it with fresh out-parameters
/// and takes the value.
fn with_returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> (u32, Option<Vec<u8>>) {
    let (mut ptr, mut size) = (null_mut(), 0);
    let status = call(&mut ptr, &mut size);
    (status, take(ptr, size))
}

pub fn log(level: u32, message: &[u8]) -> u32 {
    // SAFETY: `message` is a live slice; the host only reads it.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) }
}

pub fn get_buffer_bytes(kind: u32, start: usize, max: usize) -> (u32, Option<Vec<u8>>) {
    // SAFETY: `ret` and `ret_size` point to locals of `with_returned`, alive during the call.
    with_returned(|ret, ret_size| unsafe { proxy_get_buffer_bytes(kind, start, max, ret, ret_size) })
}

pub fn set_buffer_bytes(kind: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    // SAFETY: `data` is a live slice; the host only reads it.
    unsafe { proxy_set_buffer_bytes(kind, start, size, data.as_ptr(), data.len()) }
}

pub fn get_header_map_value(kind: u32, key: &str) -> (u32, Option<Vec<u8>>) {
    // SAFETY: `key` is a live string the host only reads; `ret` and `ret_size` point to
    // locals of `with_returned`, alive during the call.
    with_returned(|ret, ret_size| unsafe { proxy_get_header_map_value(kind, key.as_ptr(), key.len(), ret, ret_size) })
}

pub fn add_header_map_value(kind: u32, key: &str, value: &str) -> u32 {
    // SAFETY: `key` and `value` are live strings; the host only reads them.
    unsafe { proxy_add_header_map_value(kind, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

pub fn replace_header_map_value(kind: u32, key: &str, value: &str) -> u32 {
    // SAFETY: `key` and `value` are live strings; the host only reads them.
    unsafe { proxy_replace_header_map_value(kind, key.as_ptr(), key.len(), value.as_ptr(), value.len()) }
}

pub fn remove_header_map_value(kind: u32, key: &str) -> u32 {
    // SAFETY: `key` is a live string; the host only reads it.
    unsafe { proxy_remove_header_map_value(kind, key.as_ptr(), key.len()) }
}

/// `path` is the serialized property path (segments joined by NUL).
pub fn get_property(path: &[u8]) -> (u32, Option<Vec<u8>>) {
    // SAFETY: `path` is a live slice the host only reads; `ret` and `ret_size` point to
    // locals of `with_returned`, alive during the call.
    with_returned(|ret, ret_size| unsafe { proxy_get_property(path.as_ptr(), path.len(), ret, ret_size) })
}

pub fn set_property(path: &[u8], value: &[u8]) -> u32 {
    // SAFETY: `path` and `value` are live slices; the host only reads them.
    unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) }
}

/// The value and its CAS.
pub fn get_shared_data(key: &str) -> (u32, Option<Vec<u8>>, u32) {
    let mut cas = 0;
    // SAFETY: `key` is a live string the host only reads; `ret`, `ret_size` and `cas` point
    // to locals alive during the call.
    let (status, value) = with_returned(|ret, ret_size| unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), ret, ret_size, &mut cas) });
    (status, value, cas)
}

pub fn set_shared_data(key: &str, value: &str, cas: u32) -> u32 {
    // SAFETY: `key` and `value` are live strings; the host only reads them.
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

/// The queue's id; an empty `vm_id` means the plugin's own VM.
pub fn resolve_shared_queue(vm_id: &str, name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: `vm_id` and `name` are live strings the host only reads; `id` is a local
    // `u32` alive during the call.
    let status = unsafe { proxy_resolve_shared_queue(vm_id.as_ptr(), vm_id.len(), name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn dequeue_shared_queue(queue: u32) -> (u32, Option<Vec<u8>>) {
    // SAFETY: `ret` and `ret_size` point to locals of `with_returned`, alive during the call.
    with_returned(|ret, ret_size| unsafe { proxy_dequeue_shared_queue(queue, ret, ret_size) })
}

pub fn enqueue_shared_queue(queue: u32, value: &[u8]) -> u32 {
    // SAFETY: `value` is a live slice; the host only reads it.
    unsafe { proxy_enqueue_shared_queue(queue, value.as_ptr(), value.len()) }
}

pub fn continue_stream(kind: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_continue_stream(kind) }
}

pub fn close_stream(kind: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_close_stream(kind) }
}

/// The status and the call's token. `headers` and `trailers` are serialized pairs.
pub fn http_call(cluster: &str, headers: &[u8], body: &[u8], trailers: &[u8], timeout_ms: u32) -> (u32, u32) {
    let mut token = 0;
    // SAFETY: `cluster`, `headers`, `body` and `trailers` are live slices the host only
    // reads; `token` is a local `u32` alive during the call.
    let status = unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    };
    (status, token)
}

/// The status and the call's token.
pub fn grpc_call(service: &str, name: &str, method: &str, metadata: &[u8], message: &[u8], timeout_ms: u32) -> (u32, u32) {
    let mut token = 0;
    // SAFETY: every slice is live and only read by the host; `token` is a local `u32`
    // alive during the call.
    let status = unsafe {
        proxy_grpc_call(
            service.as_ptr(),
            service.len(),
            name.as_ptr(),
            name.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    };
    (status, token)
}

/// The status and the stream's token.
pub fn grpc_stream(service: &str, name: &str, method: &str, metadata: &[u8]) -> (u32, u32) {
    let mut token = 0;
    // SAFETY: every slice is live and only read by the host; `token` is a local `u32`
    // alive during the call.
    let status = unsafe {
        proxy_grpc_stream(
            service.as_ptr(),
            service.len(),
            name.as_ptr(),
            name.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            &mut token,
        )
    };
    (status, token)
}

pub fn grpc_send(token: u32, message: &[u8], end_of_stream: bool) -> u32 {
    // SAFETY: `message` is a live slice; the host only reads it.
    unsafe { proxy_grpc_send(token, message.as_ptr(), message.len(), u32::from(end_of_stream)) }
}

pub fn grpc_cancel(token: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_grpc_cancel(token) }
}

pub fn grpc_close(token: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_grpc_close(token) }
}

pub fn set_effective_context(id: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_set_effective_context(id) }
}

pub fn done() -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_done() }
}

pub fn call_foreign_function(name: &str, args: &[u8]) -> (u32, Option<Vec<u8>>) {
    // SAFETY: `name` and `args` are live slices the host only reads; `ret` and `ret_size`
    // point to locals of `with_returned`, alive during the call.
    with_returned(|ret, ret_size| unsafe {
        proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), args.len(), ret, ret_size)
    })
}

/// The status and the metric's id.
pub fn define_metric(kind: u32, name: &str) -> (u32, u32) {
    let mut id = 0;
    // SAFETY: `name` is a live string the host only reads; `id` is a local `u32` alive
    // during the call.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status, id)
}

pub fn increment_metric(id: u32, offset: i64) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_increment_metric(id, offset) }
}

pub fn record_metric(id: u32, value: u64) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_record_metric(id, value) }
}

pub fn get_metric(id: u32) -> (u32, u64) {
    let mut value = 0;
    // SAFETY: `value` is a local `u64` alive during the call.
    let status = unsafe { proxy_get_metric(id, &mut value) };
    (status, value)
}

/// The status, the code `proxy_get_status` reports, and its message.
pub fn get_status() -> (u32, u32, Option<Vec<u8>>) {
    let mut code = 99;
    // SAFETY: `code`, `ret` and `ret_size` point to locals alive during the call.
    let (status, message) = with_returned(|ret, ret_size| unsafe { proxy_get_status(&mut code, ret, ret_size) });
    (status, code, message)
}

/// WASI's errno.
pub fn random(buf: &mut [u8]) -> i32 {
    // SAFETY: `buf` is a live, exclusively borrowed slice; the host writes at most
    // `buf.len()` bytes into it.
    unsafe { random_get(buf.as_mut_ptr(), buf.len()) }
}
