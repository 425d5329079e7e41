//! The harness's one wasmtime configuration.

use std::hash::{DefaultHasher, Hash, Hasher};

use wasmtime::{Config, Engine, ProfilingStrategy};

use crate::error::Error;
use crate::vm::chain;

/// A wasmtime engine with the harness's configuration, the only one it uses: plugins and
/// the component are compiled for it and run in it, [`Module::precompile`] compiles ahead
/// of time with it, and [`Module::from_compiled`] takes only modules compiled with it.
///
/// It is wasmtime's default configuration: Cranelift, code for this host's CPU features,
/// synchronous calls. With `EVENTSEAL_PERF_MAP` set in the environment it also writes
/// `/tmp/perf-<pid>.map`, so that `perf report` names the JIT code of each wasm function
/// (the profiles in docs/BENCHMARKS.md); nothing else changes.
///
/// [`Module::precompile`]: crate::Module::precompile
/// [`Module::from_compiled`]: crate::Module::from_compiled
///
/// # Errors
///
/// [`Error::Compile`] if wasmtime cannot compile for this host.
pub fn engine() -> Result<Engine, Error> {
    let mut config = Config::new();
    if std::env::var_os("EVENTSEAL_PERF_MAP").is_some() {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(|e| Error::Compile(chain(&e)))
}

/// Whether `other` compiles code as [`engine`] does (so each loads the other's precompiled
/// modules): wasmtime's hash of the settings compiled code depends on, compared.
///
/// # Errors
///
/// As [`engine`].
pub(crate) fn configured_as_harness(other: &Engine) -> Result<bool, Error> {
    let compatibility = |engine: &Engine| {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    };
    Ok(compatibility(other) == compatibility(&engine()?))
}
