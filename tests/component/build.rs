//! Builds the component and the filter exactly as they ship (release; wasm32-wasip2 and
//! wasm32-wasip1) and hands their paths to the tests, so the tests drive the artifacts
//! that services and Envoy load.

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../..");
    for (package, target, variable) in [
        ("eventseal-component", "wasm32-wasip2", "EVENTSEAL_COMPONENT_WASM"),
        ("eventseal-proxy-wasm", "wasm32-wasip1", "EVENTSEAL_PROXY_WASM"),
    ] {
        let wasm = eventseal_harness::build::wasm_package(&root, package, target).unwrap_or_else(|e| panic!("{e}"));
        println!("cargo:rustc-env={variable}={}", wasm.display());
    }
}
