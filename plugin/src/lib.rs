#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// Natively only the pure modules build (for their unit tests); the rest is for the VM.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

// Pure modules (unit-tested natively).
/// The counters: names, and what one decision adds to them.
mod metrics;
/// The audit records waiting for the collector: batches, retries, bounds.
mod outbox;
/// Envoy's encoding of property values (JWT claims in metadata).
mod property;

// The VM side. Dependencies point one way: root -> http | nats -> exchange -> vm -> kms -> host.
/// One exchange of any transport: its rule, principal, sides; deciding and recording.
#[cfg(target_family = "wasm")]
mod exchange;
/// Every call into the host: log, clock, counters, properties, maps, bodies, calls.
#[cfg(target_family = "wasm")]
mod host;
/// One HTTP stream: buffers the bodies its rule decides on and delivers the decisions.
#[cfg(target_family = "wasm")]
mod http;
/// The Vault Transit key source: sends core's calls, resumes the streams paused for them.
#[cfg(target_family = "wasm")]
mod kms;
/// One NATS client connection (network filter): core's gateway over Envoy's data callbacks.
#[cfg(target_family = "wasm")]
mod nats;
/// Core's replay cache over proxy-wasm shared data.
#[cfg(target_family = "wasm")]
mod replay;
/// The root context: configuration, counters, collector delivery, KMS ticks.
#[cfg(target_family = "wasm")]
mod root;
/// What every stream of one VM shares: engine, counters, audit trail, KMS.
#[cfg(target_family = "wasm")]
mod vm;

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
