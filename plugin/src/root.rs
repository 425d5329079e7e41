//! The root context: loads the policy and keyring once per VM, defines the counters, and
//! hands every HTTP stream the shared engine.

use crate::filter::{Exchange, Unconfigured};
use crate::metrics::Counter;
use eventseal_core::{AuditChain, ConfigError, Engine, KeySource, Policy};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::rc::Rc;

/// Writes one line to the proxy log. Never pass key material or field values.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Metric ids, indexed by [`Counter::index`].
#[derive(Debug)]
pub struct Metrics(Vec<u32>);

impl Metrics {
    fn define() -> Self {
        Self(
            Counter::all()
                // A host that cannot define a metric gets an id that increments nothing.
                .map(|counter| hostcalls::define_metric(MetricType::Counter, &counter.name()).unwrap_or(u32::MAX))
                .collect(),
        )
    }

    /// Adds one to each counter.
    pub fn add(&self, counters: &[Counter]) {
        for counter in counters {
            if let Some(&id) = self.0.get(counter.index()) {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }
}

/// What every stream shares: the decisions and the counters.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The engine built from the plugin configuration.
    pub engine: Rc<Engine>,
    /// The counters.
    pub metrics: Rc<Metrics>,
    /// This VM's audit chain (one instance per worker VM).
    pub audit: Rc<RefCell<AuditChain>>,
}

/// A random id for this VM's audit chain, so chains of several workers stay apart.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the id is still unique enough to read; the chain stays verifiable.
    let _ = getrandom::fill(&mut bytes);
    format!("eventseal-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The root context of one VM.
#[derive(Default)]
pub struct Root {
    shared: Option<Shared>,
}

impl Root {
    fn load(&self) -> Result<Engine, ConfigError> {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let policy = Policy::from_json(&text)?;
        refuse_what_envoy_cannot_do(&policy)?;
        if matches!(policy.keys, KeySource::Inline(_)) {
            log(
                LogLevel::Warn,
                "eventseal: keys are inline in the plugin configuration: for development only; use \"keys\": {\"env\": ...}",
            );
        }
        // Envoy passes `vm_config.environment_variables` to the VM as WASI environ.
        let keyring = policy.load_keyring(|name| std::env::var(name).ok())?;
        Ok(Engine::new(policy, keyring))
    }
}

/// Refuses, at load time, rules that this host cannot carry out.
///
/// Signing sets `webhook-*` headers computed over the body. In proxy-wasm ABI 0.2.1 Envoy
/// forwards request and response headers before the filter sees any body: a headers
/// callback that pauses also holds the body back from the filter (proxy-wasm-cpp-host turns
/// `StopIteration` into `StopAllIterationAndWatermark`), and header maps are read-only once
/// forwarded. Refusing here keeps the failure out of the request path.
fn refuse_what_envoy_cannot_do(policy: &Policy) -> Result<(), ConfigError> {
    match policy.rules.iter().position(|rule| rule.sign) {
        Some(i) => Err(ConfigError::Invalid {
            at: format!("/rules/{i}/sign"),
            expected: "false: the Envoy filter cannot add signature headers after reading the body \
                       (proxy-wasm ABI 0.2.1 forwards headers first); sign with the component or the CLI"
                .to_owned(),
        }),
        None => Ok(()),
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match self.load() {
            Ok(engine) => {
                let rules = engine.policy().rules.len();
                self.shared = Some(Shared {
                    engine: Rc::new(engine),
                    metrics: Rc::new(Metrics::define()),
                    audit: Rc::new(RefCell::new(AuditChain::new(instance_id()))),
                });
                log(LogLevel::Info, &format!("eventseal: configured with {rules} rule(s)"));
                true
            }
            Err(error) => {
                // ConfigError and KeyringError never carry key material.
                log(LogLevel::Error, &format!("eventseal: configuration refused: {error}"));
                self.shared = None;
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match &self.shared {
            Some(shared) => Box::new(Exchange::new(shared.clone())),
            None => Box::new(Unconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
