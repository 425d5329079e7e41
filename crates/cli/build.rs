//! Builds the filter (`eventseal.wasm`) so the CLI embeds the very module Envoy loads, and
//! compiles it ahead of time with the harness's engine configuration, so that a call of the
//! CLI loads the compiled filter instead of compiling it first (seconds in Cranelift). The
//! compiled code is for this machine's CPU; where wasmtime refuses it (a CLI built for
//! another target, or copied to a CPU without features this one has), the CLI compiles the
//! embedded wasm instead (`src/embedded.rs`).

use std::path::PathBuf;

fn main() {
    let wasm_path = eventseal_wasm_build::shipped_filter();
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", wasm_path.display()));
    let compiled = eventseal_harness::Module::precompile(&wasm).unwrap_or_else(|e| panic!("{e}"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compiled_path = out_dir.join("eventseal.cwasm");
    std::fs::write(&compiled_path, compiled).unwrap_or_else(|e| panic!("cannot write {}: {e}", compiled_path.display()));
    println!("cargo:rustc-env=EVENTSEAL_PROXY_CWASM={}", compiled_path.display());
}
