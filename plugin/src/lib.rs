#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// Natively only the pure modules build (for their unit tests); the rest is for the VM.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod metrics;
mod outbox;
mod property;

#[cfg(target_family = "wasm")]
mod filter;
#[cfg(target_family = "wasm")]
mod kms;
#[cfg(target_family = "wasm")]
mod replay;
#[cfg(target_family = "wasm")]
mod root;

/// The module's entry point (`_initialize`): registers the root context factory.
#[cfg(target_family = "wasm")]
mod entry {
    #![allow(missing_docs)]
    proxy_wasm::main! {{
        // Panics (there should be none) reach the proxy log instead of vanishing.
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Warn);
        proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(super::root::Root::new(id)) });
    }}
}
