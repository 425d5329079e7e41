//! Builds the filter exactly as it ships (release, wasm32-wasip1) and hands its path to the
//! tests, which load it into Envoy (and into the harness, to compare).

fn main() {
    eventseal_wasm_build::shipped_filter();
    println!("cargo:rerun-if-changed={}", concat!(env!("CARGO_MANIFEST_DIR"), "/../cases"));
}
