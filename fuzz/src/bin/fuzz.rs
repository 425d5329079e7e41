//! The libFuzzer driver: `EVENTSEAL_FUZZ_TARGET=<target>` picks the target
//! (`eventseal_fuzz::TARGETS`). Built and run by `scripts/fuzz`.
#![no_main]
#![allow(unsafe_code)] // the entry point `fuzz_target!` expands to

use std::sync::OnceLock;

fn target() -> fn(&[u8]) {
    static TARGET: OnceLock<fn(&[u8])> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("EVENTSEAL_FUZZ_TARGET").unwrap_or_default();
        eventseal_fuzz::target(&name).unwrap_or_else(|| panic!("EVENTSEAL_FUZZ_TARGET={name:?}: not one of {:?}", eventseal_fuzz::TARGETS))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| target()(data));
