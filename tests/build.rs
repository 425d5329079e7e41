//! Builds the filter exactly as it ships (release, wasm32-wasip1) and generates one test
//! per conformance case file, so that a case without a test cannot exist.

fn main() {
    eventseal_wasm_build::shipped_filter();
    eventseal_testkit::generate::case_tests();
}
