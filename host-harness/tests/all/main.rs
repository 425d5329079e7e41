//! eventseal-harness's own tests: one binary, one module per area, each test independent
//! (its own plugin) so they run in parallel.

mod filter;
mod hold;
mod hostcalls;
mod lifecycle;
mod streams;
mod tcp;
mod upstreams;

use std::sync::OnceLock;

use eventseal_harness::{HttpExchange, Module, Plugin, PluginConfig, Upstream};
use eventseal_harness_test_programs::{FILTER_WASM, PROBE_WASM, TCP_WASM};

fn cached(cell: &'static OnceLock<Module>, path: &str) -> Module {
    cell.get_or_init(|| Module::from_file(path).unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

/// The `probe` guest: raw hostcalls, results logged as `probe <scenario>: k=v ...`.
pub fn probe_module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    cached(&MODULE, PROBE_WASM)
}

/// The `filter` guest: a typical SDK HTTP filter.
pub fn filter_module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    cached(&MODULE, FILTER_WASM)
}

/// The `tcp` guest: a network filter.
pub fn tcp_module() -> Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    cached(&MODULE, TCP_WASM)
}

/// A probe plugin with the clusters the scenarios name.
pub fn probe_plugin(config: PluginConfig) -> Plugin {
    let config = config.name("probe-plugin").upstream("grpc-cluster", Upstream::manual());
    probe_module().plugin(config).unwrap_or_else(|e| panic!("{e}"))
}

/// A request that runs a probe scenario.
pub fn probe_request(scenario: &str) -> HttpExchange {
    HttpExchange::new([
        (":method", "GET"),
        (":path", "/p"),
        (":authority", "example.com"),
        ("x-probe", scenario),
        ("a", "1"),
        ("x-remove-me", "z"),
    ])
}

/// The result line a scenario logged (what follows `probe <scenario>: `).
pub fn result(plugin: &Plugin, scenario: &str) -> String {
    let prefix = format!("probe {scenario}: ");
    let logs = plugin.logs();
    logs.iter()
        .rev()
        .find_map(|line| line.message.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("no result for {scenario}; logs: {logs:#?}"))
}

/// Runs a scenario whose results are logged in the request headers callback.
pub fn run_probe(plugin: &Plugin, scenario: &str) -> String {
    plugin.run_http(probe_request(scenario)).unwrap_or_else(|e| panic!("{e}"));
    result(plugin, scenario)
}

/// The value of `key=value` in a result line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}
