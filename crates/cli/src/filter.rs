//! Runs events through the embedded filter in the wasmtime harness, as Envoy would.

use std::sync::OnceLock;

use eventseal::Failure;
use eventseal_harness::{HttpExchange, HttpOutcome, Module, Plugin, PluginConfig, PropertyPath, PropertyValue};

/// The filter module (wasm), embedded in this binary at build time.
const FILTER_WASM: &[u8] = include_bytes!(env!("EVENTSEAL_PROXY_WASM"));

/// [`FILTER_WASM`] compiled ahead of time for this machine by build.rs
/// (`Module::precompile`): wasmtime's serialized module.
const FILTER_PRECOMPILED: &[u8] = include_bytes!(env!("EVENTSEAL_PROXY_CWASM"));

/// The filter, loaded once per process: the precompiled one, or, if wasmtime refuses it,
/// the wasm compiled now (which takes seconds, so it is said once on stderr).
fn filter_module() -> Result<&'static Module, Failure> {
    static MODULE: OnceLock<Module> = OnceLock::new();
    if let Some(module) = MODULE.get() {
        return Ok(module);
    }
    let module = match precompiled_filter() {
        Ok(module) => module,
        Err(reason) => {
            eprintln!("eventseal: compiling the filter, the precompiled one does not load here: {reason}");
            Module::from_bytes(FILTER_WASM).map_err(|e| Failure::new(format!("cannot load the filter: {e}")))?
        }
    };
    Ok(MODULE.get_or_init(|| module))
}

/// Loads [`FILTER_PRECOMPILED`] without compiling.
///
/// # Errors
///
/// wasmtime's reason when the precompiled filter does not fit this process: another
/// wasmtime version or engine configuration, or a CPU without features of the build
/// machine's.
#[allow(unsafe_code)]
fn precompiled_filter() -> Result<Module, String> {
    let engine = eventseal_harness::engine().map_err(|e| e.to_string())?;
    // SAFETY: `deserialize` trusts its input to be wasmtime's own output, unmodified (it
    // maps the code in it as executable). FILTER_PRECOMPILED is exactly that: our build
    // artifact, written by build.rs with `Module::precompile` (this workspace's wasmtime,
    // the harness's engine configuration) and embedded in this binary by `include_bytes!`;
    // no input of the user reaches it. If the wasmtime version, the configuration or the
    // CPU differ, wasmtime itself checks that and returns an error, and we compile instead.
    let compiled = unsafe { wasmtime::Module::deserialize(&engine, FILTER_PRECOMPILED) }.map_err(|e| format!("{e:#}"))?;
    Module::from_compiled(compiled).map_err(|e| e.to_string())
}

/// A configured filter instance.
pub struct Filter {
    plugin: Plugin,
}

/// One request to send through the filter.
pub struct Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`.
    pub path: &'a str,
    /// Extra request headers (names lower case).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Option<&'a [u8]>,
    /// The upstream's response body, for rules that apply to responses.
    pub response_body: Option<&'a [u8]>,
    /// Stream properties, as Envoy would provide them (peer certificate, JWT metadata).
    pub properties: Vec<(PropertyPath, PropertyValue)>,
}

impl Filter {
    /// Starts the filter with a policy and a keyring passed as `EVENTSEAL_KEYS`, as Envoy's
    /// `vm_config.environment_variables` would.
    ///
    /// # Errors
    /// The filter's own log lines when it refuses the configuration.
    pub fn start(policy: &str, keyring: &str) -> Result<Self, Failure> {
        let module = filter_module()?;
        let config = PluginConfig::new()
            .configuration(policy)
            .env("EVENTSEAL_KEYS", keyring)
            .property("plugin_name", "eventseal");
        let plugin = module
            .plugin(config)
            .map_err(|e| Failure::new(format!("the filter refused to start: {e}")))?;
        Ok(Self { plugin })
    }

    /// Sends one exchange through the filter.
    ///
    /// # Errors
    /// When the harness fails (a trap in the filter).
    pub fn exchange(&self, request: &Request<'_>) -> Result<HttpOutcome, Failure> {
        let mut headers = vec![
            (":method".to_owned(), request.method.to_owned()),
            (":path".to_owned(), request.path.to_owned()),
        ];
        let given = |name: &str| request.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if !given(":authority") {
            headers.push((":authority".to_owned(), "eventseal.local".to_owned()));
        }
        if !given("content-type") {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        headers.extend(request.headers.iter().cloned());
        let mut exchange = HttpExchange::new(headers);
        if let Some(body) = request.body {
            exchange = exchange.request_body(body.to_vec());
        }
        exchange = exchange.response_headers([(":status", "200"), ("content-type", "application/json")]);
        exchange = exchange.response_body(request.response_body.unwrap_or_default().to_vec());
        for (path, value) in &request.properties {
            exchange = exchange.property(path.clone(), value.clone());
        }
        self.plugin
            .run_http(exchange)
            .map_err(|e| Failure::new(format!("the filter failed: {e}")))
    }

    /// The filter's log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.plugin.logs().into_iter().map(|l| l.message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI starts fast only if the build script's compiled filter loads: the build
    /// script and the CLI use one engine configuration and one wasmtime.
    #[test]
    fn the_precompiled_filter_loads_without_compiling() {
        if let Err(reason) = precompiled_filter() {
            panic!("the precompiled filter does not load: {reason}");
        }
    }
}
