//! Builds the filter exactly as it ships (release, wasm32-wasip1) for the wasm bench.

fn main() {
    eventseal_wasm_build::shipped_filter();
}
