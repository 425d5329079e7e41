//! Builds the filter exactly as it ships (release, wasm32-wasip1) for the tests that run it
//! against a real OpenBao.

fn main() {
    eventseal_wasm_build::shipped_filter();
}
