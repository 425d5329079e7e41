//! Builds the component and the filter exactly as they ship (release; wasm32-wasip2 and
//! wasm32-wasip1) and hands their paths to the tests, so the tests drive the artifacts
//! that services and Envoy load; and generates one test per conformance case file, so
//! that a case without a component test cannot exist.

fn main() {
    eventseal_wasm_build::shipped_component();
    eventseal_wasm_build::shipped_filter();
    eventseal_testkit::generate::case_tests();
}
