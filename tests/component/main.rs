//! Integration tests of `eventseal.component.wasm`, the WASI 0.2 component services embed,
//! hosted by wasmtime's component model (`eventseal_harness::component`).
//!
//! - `vectors`: every envelope vector of `tests/vectors/` opens (or is rejected with its
//!   class) through the component, as through core;
//! - `cross`: what the component seals and signs, the filter (`eventseal_proxy_wasm.wasm`
//!   in the harness) verifies and opens, and the other way round, and both refuse the
//!   same input the same way.
//!
//! `build.rs` builds both artifacts in release, as they ship.

mod cross;
mod vectors;

use eventseal_harness::Module;
use eventseal_harness::component::SealerComponent;
use std::sync::OnceLock;

/// The shipped component, compiled once for every test.
pub fn component() -> &'static SealerComponent {
    static COMPONENT: OnceLock<SealerComponent> = OnceLock::new();
    COMPONENT.get_or_init(|| {
        let path = env!("EVENTSEAL_COMPONENT_WASM");
        SealerComponent::from_file(path).unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
    })
}

/// The shipped filter, compiled once for every test.
pub fn filter() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = env!("EVENTSEAL_PROXY_WASM");
        Module::from_file(path).unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
    })
}
