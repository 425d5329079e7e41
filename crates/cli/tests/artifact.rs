//! The shipped filter module: what operators download must stay small.

/// The goal for `eventseal.wasm` (release, wasm32-wasip1): under 1 MB.
const SIZE_GOAL_BYTES: u64 = 1_000_000;

#[test]
fn filter_wasm_is_under_one_megabyte() {
    let path = env!("EVENTSEAL_PROXY_WASM");
    let size = std::fs::metadata(path).expect("the build script built the filter").len();
    // Printed with `cargo test -p eventseal --test artifact -- --nocapture`.
    println!("eventseal.wasm: {size} bytes ({path})");
    assert!(
        size < SIZE_GOAL_BYTES,
        "eventseal.wasm is {size} bytes, over the {SIZE_GOAL_BYTES}-byte goal"
    );
}
