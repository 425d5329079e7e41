//! Builds the filter exactly as it ships (release, wasm32-wasip1) for the tests that run it
//! against a real OpenBao.

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../..");
    let wasm = eventseal_harness::build::wasm_package(&root, "eventseal-proxy-wasm", "wasm32-wasip1").unwrap_or_else(|e| panic!("{e}"));
    println!("cargo:rustc-env=EVENTSEAL_PROXY_WASM={}", wasm.display());
}
