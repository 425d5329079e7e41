//! Hostcalls for header maps (request and response headers and trailers, HTTP call
//! response headers and trailers), readable and writable only when Envoy allows it.

use wasmtime::Linker;

use crate::abi::{Status, map};
use crate::memory::{copy_out, read, read_pairs, read_text, u, write_u32};
use crate::store::HostState;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(
        linker,
        "proxy_get_header_map_pairs",
        |caller, kind: i32, ret_ptr: i32, ret_size: i32| {
            if u(kind) > map::MAX {
                return Err(Status::BadArgument.into());
            }
            let serialized = match caller.data().map(u(kind)) {
                Some(headers) if !headers.is_empty() => headers.serialize(),
                _ => Vec::new(),
            };
            copy_out(&mut caller, &serialized, ret_ptr, ret_size)
        }
    );
    host!(linker, "proxy_set_header_map_pairs", |caller, kind: i32, ptr: i32, size: i32| {
        if u(kind) > map::MAX {
            return Err(Status::BadArgument.into());
        }
        let new = read_pairs(&mut caller, ptr, size)?;
        let headers = caller.data_mut().map_mut(u(kind)).ok_or(Status::BadArgument)?;
        *headers = new;
        Ok(())
    });
    host!(
        linker,
        "proxy_get_header_map_value",
        |caller, kind: i32, key_ptr: i32, key_len: i32, ret_ptr: i32, ret_size: i32| {
            if u(kind) > map::MAX {
                return Err(Status::BadArgument.into());
            }
            let key = read_text(&mut caller, key_ptr, key_len)?;
            let state = caller.data();
            let value = match state.map(u(kind)) {
                Some(headers) => headers.get_bytes(&key).map(<[u8]>::to_vec).ok_or(Status::NotFound)?,
                None if state.in_log_phase() => return Err(Status::NotFound.into()),
                None => return Err(Status::BadArgument.into()),
            };
            copy_out(&mut caller, &value, ret_ptr, ret_size)
        }
    );
    host!(
        linker,
        "proxy_replace_header_map_value",
        |caller, kind: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| {
            if u(kind) > map::MAX {
                return Err(Status::BadArgument.into());
            }
            let key = read_text(&mut caller, key_ptr, key_len)?.to_ascii_lowercase();
            let value = read(&mut caller, value_ptr, value_len)?;
            caller.data_mut().map_mut(u(kind)).ok_or(Status::BadArgument)?.set(key, value);
            Ok(())
        }
    );
    host!(
        linker,
        "proxy_add_header_map_value",
        |caller, kind: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| {
            if u(kind) > map::MAX {
                return Err(Status::BadArgument.into());
            }
            let key = read_text(&mut caller, key_ptr, key_len)?.to_ascii_lowercase();
            let value = read(&mut caller, value_ptr, value_len)?;
            caller.data_mut().map_mut(u(kind)).ok_or(Status::BadArgument)?.add(key, value);
            Ok(())
        }
    );
    host!(
        linker,
        "proxy_remove_header_map_value",
        |caller, kind: i32, key_ptr: i32, key_len: i32| {
            if u(kind) > map::MAX {
                return Err(Status::BadArgument.into());
            }
            let key = read_text(&mut caller, key_ptr, key_len)?;
            caller.data_mut().map_mut(u(kind)).ok_or(Status::BadArgument)?.remove(&key);
            Ok(())
        }
    );
    host!(linker, "proxy_get_header_map_size", |caller, kind: i32, ret: i32| {
        if u(kind) > map::MAX {
            return Err(Status::BadArgument.into());
        }
        let size = caller
            .data_mut()
            .map_mut(u(kind))
            .ok_or(Status::BadArgument)?
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
        write_u32(&mut caller, ret, u32::try_from(size).unwrap_or(u32::MAX))
    });
    Ok(())
}
