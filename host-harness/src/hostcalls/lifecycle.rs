//! Hostcalls about contexts and the plugin's lifecycle: the effective context,
//! `proxy_done`, and foreign functions (none are registered).

use wasmtime::Linker;

use crate::abi::Status;
use crate::memory::{read, u};
use crate::store::HostState;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(linker, "proxy_set_effective_context", |caller, id: i32| {
        let state = caller.data_mut();
        if !state.contexts.contains_key(&u(id)) {
            return Err(Status::BadArgument.into());
        }
        state.effective = u(id);
        Ok(())
    });
    host!(linker, "proxy_done", |caller| {
        let state = caller.data_mut();
        if !state.done_pending {
            return Err(Status::NotFound.into());
        }
        state.done_pending = false;
        state.done_called = true;
        Ok(())
    });
    host!(
        linker,
        "proxy_call_foreign_function",
        |caller, name_ptr: i32, name_len: i32, args_ptr: i32, args_len: i32, _r: i32, _s: i32| {
            read(&mut caller, name_ptr, name_len)?;
            read(&mut caller, args_ptr, args_len)?;
            Err(Status::NotFound.into())
        }
    );
    Ok(())
}
