//! The `env.proxy_*` imports (hostcalls) of proxy-wasm ABI 0.2.1, one module per ABI area,
//! each returning the status Envoy returns in the same situation.

use wasmtime::Linker;

use crate::store::HostState;

/// Defines one hostcall whose body returns a [`crate::memory::HostResult`]: `Ok` is
/// `Status::Ok`, a `Fault::Status` that status, a `Fault::Trap` a trap.
macro_rules! host {
    ($linker:ident, $name:literal, |$caller:ident $(, $arg:ident : $ty:ty)*| $body:block) => {
        $linker.func_wrap(
            "env",
            $name,
            |mut $caller: ::wasmtime::Caller<'_, $crate::store::HostState> $(, $arg: $ty)*| -> ::wasmtime::Result<i32> {
                // The closure gives `?` a place to return to inside the macro's body.
                #[allow(clippy::redundant_closure_call)]
                let result: $crate::memory::HostResult = (|| $body)();
                $crate::memory::status(result)
            },
        )?;
    };
}

mod buffers;
mod environment;
mod header_maps;
mod http_calls;
mod lifecycle;
mod metrics;
mod shared;
mod stream_control;

/// Defines every `env.proxy_*` import.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    environment::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    header_maps::add_to_linker(linker)?;
    http_calls::add_to_linker(linker)?;
    shared::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    stream_control::add_to_linker(linker)?;
    lifecycle::add_to_linker(linker)
}
