//! The filter embedded in this program: its wasm, the same compiled ahead of time by
//! build.rs, and loading it once per process.

use std::sync::OnceLock;

use eventseal_harness::Module;

use crate::Failure;

/// The filter module (wasm), embedded in this binary at build time.
const FILTER_WASM: &[u8] = include_bytes!(env!("EVENTSEAL_PROXY_WASM"));

/// [`FILTER_WASM`] compiled ahead of time for this machine by build.rs
/// (`Module::precompile`): wasmtime's serialized module.
const FILTER_PRECOMPILED: &[u8] = include_bytes!(env!("EVENTSEAL_PROXY_CWASM"));

/// The filter, loaded once per process: the precompiled one, or, if wasmtime refuses it,
/// the wasm compiled now (which takes seconds, so it is said once on stderr).
///
/// # Errors
///
/// When neither loads (the harness's error, as one line).
pub fn filter_module() -> Result<&'static Module, Failure> {
    static MODULE: OnceLock<Module> = OnceLock::new();
    if let Some(module) = MODULE.get() {
        return Ok(module);
    }
    let module = match precompiled_filter() {
        Ok(module) => module,
        Err(reason) => {
            eprintln!("eventseal: compiling the filter, the precompiled one does not load here: {reason}");
            Module::from_bytes(FILTER_WASM).map_err(|e| Failure::new(format!("cannot load the filter: {e}")))?
        }
    };
    Ok(MODULE.get_or_init(|| module))
}

/// Loads [`FILTER_PRECOMPILED`] without compiling.
///
/// # Errors
///
/// wasmtime's reason when the precompiled filter does not fit this process: another
/// wasmtime version or engine configuration, or a CPU without features of the build
/// machine's.
#[allow(unsafe_code)]
fn precompiled_filter() -> Result<Module, String> {
    let engine = eventseal_harness::engine().map_err(|e| e.to_string())?;
    // SAFETY: `deserialize` trusts its input to be wasmtime's own output, unmodified (it
    // maps the code in it as executable). FILTER_PRECOMPILED is exactly that: our build
    // artifact, written by build.rs with `Module::precompile` (this workspace's wasmtime,
    // the harness's engine configuration) and embedded in this binary by `include_bytes!`;
    // no input of the user reaches it. If the wasmtime version, the configuration or the
    // CPU differ, wasmtime itself checks that and returns an error, and we compile instead.
    let compiled = unsafe { wasmtime::Module::deserialize(&engine, FILTER_PRECOMPILED) }.map_err(|e| format!("{e:#}"))?;
    Module::from_compiled(compiled).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI starts fast only if the build script's compiled filter loads: the build
    /// script and the CLI use one engine configuration and one wasmtime.
    #[test]
    fn the_precompiled_filter_loads_without_compiling() {
        if let Err(reason) = precompiled_filter() {
            panic!("the precompiled filter does not load: {reason}");
        }
    }
}
