//! Hostcalls for buffers (bodies, TCP data, configurations, HTTP call responses), with
//! cpp-host's ranges and Envoy's `set_buffer` rules.

use wasmtime::Linker;

use crate::abi::{Status, buffer};
use crate::memory::{copy_out, read, u, write_u32};
use crate::store::HostState;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // proxy-wasm-cpp-host's `get_buffer_bytes` (src/exports.cc): the range is cut to the
    // buffer (a start past its end reads nothing), and reading nothing is `Ok` with a null
    // pointer and a zero size stored.
    host!(
        linker,
        "proxy_get_buffer_bytes",
        |caller, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| {
            if u(kind) > buffer::MAX {
                return Err(Status::BadArgument.into());
            }
            let data = caller.data().buffer(u(kind))?;
            let (start, max) = (u(start) as usize, u(max) as usize);
            let slice = data.get(start..).map_or(&[][..], |rest| &rest[..max.min(rest.len())]).to_vec();
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
    // cpp-host's `set_buffer_bytes` (src/exports.cc) finds the buffer, reads the bytes, then
    // applies Envoy's `Buffer::copyFrom` (source/extensions/common/wasm/context.cc), which
    // since Envoy 1.20 (envoyproxy/envoy#17280) does one of three things:
    // * start 0: drain `size` bytes (all of them if `size` is larger) and prepend the new
    //   bytes: a prepend (size 0), a whole replacement (size >= length) or a replacement
    //   of the first `size` bytes;
    // * start >= length (and not 0): append;
    // * anything else (0 < start < length): `BadArgument`, buffer unchanged.
    host!(
        linker,
        "proxy_set_buffer_bytes",
        |caller, kind: i32, start: i32, size: i32, data: i32, data_size: i32| {
            caller.data_mut().buffer_mut(u(kind))?;
            let bytes = read(&mut caller, data, data_size)?;
            let buffer = caller.data_mut().buffer_mut(u(kind))?;
            let (start, size) = (u(start) as usize, u(size) as usize);
            if start == 0 {
                buffer.splice(..size.min(buffer.len()), bytes);
            } else if start >= buffer.len() {
                buffer.extend_from_slice(&bytes);
            } else {
                return Err(Status::BadArgument.into());
            }
            Ok(())
        }
    );
    Ok(())
}
