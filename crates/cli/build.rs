//! Builds the filter (`eventseal.wasm`) so the CLI embeds the very module Envoy loads.

fn main() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = eventseal_harness::build::wasm_package(&workspace, "eventseal-proxy-wasm", "wasm32-wasip1")
        .unwrap_or_else(|e| panic!("{e}\nThe wasm target may be missing: run scripts/setup (it runs `rustup target add wasm32-wasip1`)."));
    println!("cargo:rustc-env=EVENTSEAL_PROXY_WASM={}", wasm.display());
}
