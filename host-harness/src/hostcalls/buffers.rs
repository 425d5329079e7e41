//! Hostcalls for buffers (bodies, TCP data, configurations, HTTP call responses), with
//! Envoy's `set_buffer` rules.

use wasmtime::Linker;

use crate::abi::{Status, buffer};
use crate::memory::{copy_out, read, u, write_u32};
use crate::store::HostState;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(
        linker,
        "proxy_get_buffer_bytes",
        |caller, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| {
            if u(kind) > buffer::MAX {
                return Err(Status::BadArgument.into());
            }
            let data = caller.data().buffer(u(kind))?;
            let (start, max) = (u64::from(u(start)), u64::from(u(max)));
            let size = data.len() as u64;
            if start > size {
                return Err(Status::BadArgument.into());
            }
            let length = max.min(size - start);
            if length == 0 {
                return Ok(());
            }
            let slice = data[start as usize..(start + length) as usize].to_vec();
            copy_out(&mut caller, &slice, ret_ptr, ret_size)
        }
    );
    host!(
        linker,
        "proxy_get_buffer_status",
        |caller, kind: i32, len_ptr: i32, flags_ptr: i32| {
            if u(kind) > buffer::MAX {
                return Err(Status::BadArgument.into());
            }
            let len = caller.data().buffer(u(kind))?.len();
            write_u32(&mut caller, len_ptr, u32::try_from(len).unwrap_or(u32::MAX))?;
            write_u32(&mut caller, flags_ptr, 0)
        }
    );
    // Envoy supports only replace-all, prepend and append.
    host!(
        linker,
        "proxy_set_buffer_bytes",
        |caller, kind: i32, start: i32, size: i32, data: i32, data_size: i32| {
            let bytes = read(&mut caller, data, data_size)?;
            let buffer = caller.data_mut().buffer_mut(u(kind))?;
            let (start, size) = (u(start) as usize, u(size) as usize);
            let len = buffer.len();
            if start == 0 {
                if size == 0 {
                    buffer.splice(0..0, bytes);
                } else if size >= len {
                    *buffer = bytes;
                } else {
                    return Err(Status::BadArgument.into());
                }
            } else if start >= len {
                buffer.extend_from_slice(&bytes);
            } else {
                return Err(Status::BadArgument.into());
            }
            Ok(())
        }
    );
    Ok(())
}
