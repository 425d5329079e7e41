//! Guest memory access for hostcalls: reading arguments, writing results, copying values
//! into memory the guest allocates, and the `Fault` a hostcall fails with.

use wasmtime::{Caller, Extern, Memory};

use crate::abi::Status;
use crate::headers::Headers;
use crate::store::HostState;

/// A hostcall's failure: a status for the guest, or a trap.
pub(crate) enum Fault {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for Fault {
    fn from(status: Status) -> Fault {
        Fault::Status(status)
    }
}

pub(crate) type HostResult = Result<(), Fault>;

/// The value a proxy-wasm hostcall returns: its status code, or a trap.
pub(crate) fn status(result: HostResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(0),
        Err(Fault::Status(s)) => Ok(i32::try_from(s.code()).unwrap_or(i32::MAX)),
        Err(Fault::Trap(e)) => Err(e),
    }
}

/// An `i32` argument as the `u32` the ABI means.
pub(crate) fn u(value: i32) -> u32 {
    u32::from_ne_bytes(value.to_ne_bytes())
}

fn memory(caller: &mut Caller<'_, HostState>) -> Result<Memory, Fault> {
    if let Some(memory) = caller.data().memory {
        return Ok(memory);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(Fault::Status(Status::InvalidMemoryAccess)),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, Fault> {
    let memory = memory(caller)?;
    let (ptr, len) = (u(ptr) as usize, u(len) as usize);
    let data = memory.data(&*caller);
    let end = ptr.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    data.get(ptr..end)
        .map(<[u8]>::to_vec)
        .ok_or(Fault::Status(Status::InvalidMemoryAccess))
}

/// Reads a string argument (lossy UTF-8).
pub(crate) fn read_text(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String, Fault> {
    Ok(text(&read(caller, ptr, len)?))
}

/// Reads serialized pairs the way cpp-host does: malformed input becomes an empty list.
/// Names are lower-cased, as Envoy stores them.
pub(crate) fn read_pairs(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Headers, Fault> {
    Ok(Headers::deserialize(&read(caller, ptr, len)?).unwrap_or_default().lowercased())
}

/// Bytes as text, lossy.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `bytes` into guest memory at `ptr`.
pub(crate) fn write(caller: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> HostResult {
    let memory = memory(caller)?;
    memory
        .write(&mut *caller, ptr as usize, bytes)
        .map_err(|_| Fault::Status(Status::InvalidMemoryAccess))
}

/// Writes a little-endian `u32` result.
pub(crate) fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, value: u32) -> HostResult {
    write(caller, u(ptr), &value.to_le_bytes())
}

/// Writes a little-endian `u64` result.
pub(crate) fn write_u64(caller: &mut Caller<'_, HostState>, ptr: i32, value: u64) -> HostResult {
    write(caller, u(ptr), &value.to_le_bytes())
}

/// Copies `data` into memory the guest allocates, and stores its address and size (both 0
/// for empty data, as cpp-host does).
pub(crate) fn copy_out(caller: &mut Caller<'_, HostState>, data: &[u8], ptr_ptr: i32, size_ptr: i32) -> HostResult {
    let mut address = 0u32;
    if !data.is_empty() {
        let Some(allocate) = caller.data().allocate.clone() else {
            return Err(Fault::Trap(wasmtime::Error::msg(
                "the module exports neither proxy_on_memory_allocate nor malloc",
            )));
        };
        let size = u32::try_from(data.len()).map_err(|_| Status::InvalidMemoryAccess)?;
        address = allocate.call(&mut *caller, size).map_err(Fault::Trap)?;
        if address == 0 {
            return Err(Fault::Status(Status::InvalidMemoryAccess));
        }
        write(caller, address, data)?;
    }
    write_u32(caller, ptr_ptr, address)?;
    write_u32(caller, size_ptr, u32::try_from(data.len()).unwrap_or(u32::MAX))
}
