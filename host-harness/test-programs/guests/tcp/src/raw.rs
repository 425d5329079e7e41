//! The raw host calls the `probe` mode makes, in one place: each is a safe function that
//! passes borrowed bytes and local out-parameters to the host and returns the host's status
//! unchanged, so the probe can report statuses the SDK's wrappers turn into panics
//! (`resume_upstream` panics on Envoy's `Unimplemented`, `set_*_data` on `BadArgument`).
//!
//! Why the calls are sound, once for all: on `wasm32` the host reads and writes this
//! module's linear memory only at the pointer/length pairs passed to it; every pointer
//! here comes from a live slice or a local that outlives the call, and every out-parameter
//! is a properly aligned local of the type the ABI writes (`*mut u8` and `usize`, both 32-bit
//! on wasm32).

/// What `ret` holds before the call: a dangling address no allocation has, so an `Ok` that
/// leaves the out-parameters unwritten is visible.
const UNWRITTEN: *mut u8 = std::ptr::dangling_mut();

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_buffer_bytes(kind: u32, start: usize, max: usize, ret: *mut *mut u8, ret_size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(kind: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_continue_stream(kind: u32) -> u32;
    fn proxy_close_stream(kind: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// The status and the bytes the host returned (`None` for the null pointer it stores for
/// nothing). `ret` starts as [`UNWRITTEN`], so a host that returns `Ok` without writing
/// the out-parameters shows up as `<unwritten>` rather than passing by luck.
pub fn get_buffer_bytes(kind: u32, start: usize, max: usize) -> (u32, Option<Vec<u8>>) {
    let mut ptr = UNWRITTEN;
    let mut size = usize::MAX;
    // SAFETY: `ptr` and `size` are locals alive during the call; the host only writes them.
    let status = unsafe { proxy_get_buffer_bytes(kind, start, max, &mut ptr, &mut size) };
    if status != 0 || ptr.is_null() {
        return (status, None);
    }
    if ptr == UNWRITTEN {
        return (status, Some(b"<unwritten>".to_vec()));
    }
    // SAFETY: a non-null `ptr` the host wrote was allocated through the SDK's
    // `proxy_on_memory_allocate`, which leaks a `Vec<u8>::with_capacity(size)`; so `ptr`,
    // `size` (length) and `size` (capacity) describe that vector, whose ownership the host
    // hands to the guest, and nothing else refers to it.
    (status, Some(unsafe { Vec::from_raw_parts(ptr, size, size) }))
}

pub fn set_buffer_bytes(kind: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    // SAFETY: `data` is a live slice; the host only reads it.
    unsafe { proxy_set_buffer_bytes(kind, start, size, data.as_ptr(), data.len()) }
}

pub fn continue_stream(kind: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_continue_stream(kind) }
}

pub fn close_stream(kind: u32) -> u32 {
    // SAFETY: no pointers are passed.
    unsafe { proxy_close_stream(kind) }
}

/// An HTTP local reply with `body`, no details, no headers and no gRPC status.
pub fn send_local_response(status: u32, body: &[u8]) -> u32 {
    // SAFETY: `body` is a live slice the host only reads; the other pointers are of empty
    // slices, which the host reads nothing from.
    unsafe { proxy_send_local_response(status, [].as_ptr(), 0, body.as_ptr(), body.len(), [].as_ptr(), 0, -1) }
}
