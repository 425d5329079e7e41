//! eventseal-harness: a native wasmtime host for proxy-wasm ABI 0.2.1 modules (work in progress).
#![forbid(unsafe_code)]
