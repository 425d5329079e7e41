//! Paths of the guest programs eventseal-harness's tests run: tiny proxy-wasm modules in
//! `guests/`, built for wasm32-wasip1 by this crate's build script.
//!
//! * `probe` calls hostcalls directly to check each status the host returns;
//! * `filter` is a typical HTTP filter written with the SDK's safe API;
//! * `tcp` is a network filter.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
