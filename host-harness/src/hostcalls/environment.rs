//! Hostcalls for the plugin's environment: logging, the virtual clock and ticks, and
//! properties.

use std::time::Duration;

use wasmtime::Linker;

use crate::abi::{LogLevel, Status};
use crate::memory::{copy_out, read, read_text, u, write_u32, write_u64};
use crate::property::PropertyPath;
use crate::store::{ContextState, HostState};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(linker, "proxy_log", |caller, level: i32, ptr: i32, len: i32| {
        let level = LogLevel::from_u32(u(level)).ok_or(Status::BadArgument)?;
        let message = read_text(&mut caller, ptr, len)?;
        caller.data_mut().log(level, message);
        Ok(())
    });
    host!(linker, "proxy_get_log_level", |caller, ret: i32| {
        let level = caller.data().setup.log_level as u32;
        write_u32(&mut caller, ret, level)
    });
    host!(linker, "proxy_get_current_time_nanoseconds", |caller, ret: i32| {
        let now = caller.data().now_nanos();
        write_u64(&mut caller, ret, now)
    });
    host!(linker, "proxy_set_tick_period_milliseconds", |caller, period: i32| {
        let state = caller.data_mut();
        let period = Duration::from_millis(u64::from(u(period)));
        if period.is_zero() {
            state.tick_period = None;
            state.next_tick = None;
        } else {
            state.tick_period = Some(period);
            state.next_tick = Some(state.elapsed + period);
        }
        Ok(())
    });

    host!(
        linker,
        "proxy_get_property",
        |caller, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_size: i32| {
            let path = PropertyPath::from_wire(&read(&mut caller, path_ptr, path_len)?);
            let value = caller.data().property(&path).ok_or(Status::NotFound)?;
            copy_out(&mut caller, &value, ret_ptr, ret_size)
        }
    );
    host!(
        linker,
        "proxy_set_property",
        |caller, path_ptr: i32, path_len: i32, value_ptr: i32, value_len: i32| {
            let path = PropertyPath::from_wire(&read(&mut caller, path_ptr, path_len)?);
            let value = read(&mut caller, value_ptr, value_len)?;
            let state = caller.data_mut();
            let id = state.context_id();
            match state.contexts.get_mut(&id) {
                Some(ContextState::Http(http)) => http.properties.set_raw(path, value),
                Some(ContextState::Tcp(tcp)) => tcp.properties.set_raw(path, value),
                _ => return Err(Status::NotFound.into()),
            }
            Ok(())
        }
    );
    Ok(())
}
