//! Builds the filter exactly as it ships (release, wasm32-wasip1) and hands its path to the
//! tests, which load it into Envoy (and into the harness, to compare).

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../..");
    let wasm = eventseal_harness::build::wasm_package(&root, "eventseal-proxy-wasm", "wasm32-wasip1").unwrap_or_else(|e| panic!("{e}"));
    println!("cargo:rustc-env=EVENTSEAL_PROXY_WASM={}", wasm.display());
    println!("cargo:rerun-if-changed={}", root.join("tests/cases").display());
}
