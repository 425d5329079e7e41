//! Hostcalls for shared data (with CAS) and shared queues, across the plugins of one
//! [`crate::SharedState`].

use wasmtime::Linker;

use crate::abi::Status;
use crate::memory::{Fault, copy_out, read, read_text, u, write_u32};
use crate::store::HostState;

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host!(
        linker,
        "proxy_get_shared_data",
        |caller, key_ptr: i32, key_len: i32, ret_ptr: i32, ret_size: i32, cas_ptr: i32| {
            let key = read_text(&mut caller, key_ptr, key_len)?;
            let state = caller.data();
            let (value, cas) = state.shared.shared_data(&state.setup.vm_id, &key).ok_or(Status::NotFound)?;
            copy_out(&mut caller, &value, ret_ptr, ret_size)?;
            write_u32(&mut caller, cas_ptr, cas)
        }
    );
    host!(
        linker,
        "proxy_set_shared_data",
        |caller, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32, cas: i32| {
            let key = read_text(&mut caller, key_ptr, key_len)?;
            let value = read(&mut caller, value_ptr, value_len)?;
            let state = caller.data();
            state
                .shared
                .set_shared_data(&state.setup.vm_id, &key, &value, u(cas))
                .map_err(Fault::Status)
        }
    );
    host!(
        linker,
        "proxy_register_shared_queue",
        |caller, name_ptr: i32, name_len: i32, ret: i32| {
            let name = read_text(&mut caller, name_ptr, name_len)?;
            let state = caller.data();
            let token = state
                .shared
                .register_queue(&state.setup.vm_id, &name, state.instance_id, state.root_id);
            write_u32(&mut caller, ret, token)
        }
    );
    host!(
        linker,
        "proxy_resolve_shared_queue",
        |caller, vm_ptr: i32, vm_len: i32, name_ptr: i32, name_len: i32, ret: i32| {
            let vm_id = read_text(&mut caller, vm_ptr, vm_len)?;
            let name = read_text(&mut caller, name_ptr, name_len)?;
            let state = caller.data();
            let vm_id = if vm_id.is_empty() { state.setup.vm_id.clone() } else { vm_id };
            let token = state.shared.resolve_queue(&vm_id, &name).ok_or(Status::NotFound)?;
            write_u32(&mut caller, ret, token)
        }
    );
    host!(
        linker,
        "proxy_dequeue_shared_queue",
        |caller, queue: i32, ret_ptr: i32, ret_size: i32| {
            let value = caller.data().shared.dequeue(u(queue)).map_err(Fault::Status)?;
            copy_out(&mut caller, &value, ret_ptr, ret_size)
        }
    );
    host!(
        linker,
        "proxy_enqueue_shared_queue",
        |caller, queue: i32, value_ptr: i32, value_len: i32| {
            let value = read(&mut caller, value_ptr, value_len)?;
            caller.data().shared.enqueue(u(queue), &value).map_err(Fault::Status)
        }
    );
    Ok(())
}
