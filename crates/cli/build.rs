//! Builds the filter (`eventseal.wasm`) so the CLI embeds the very module Envoy loads.

fn main() {
    eventseal_wasm_build::shipped_filter();
}
