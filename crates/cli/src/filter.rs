//! Runs events through the embedded filter in the wasmtime harness, as Envoy would.

use eventseal::Failure;
use eventseal::embedded::filter_module;
use eventseal_harness::{HttpExchange, HttpOutcome, Plugin, PluginConfig, PropertyPath, PropertyValue};

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
