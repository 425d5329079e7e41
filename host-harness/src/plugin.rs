//! The public entry points: a compiled [`Module`], a [`PluginConfig`], and a running
//! [`Plugin`] that opens streams and exposes what the plugin did.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wasmtime::{Engine, Extern, Linker, Store};

use crate::abi::LogLevel;
use crate::dispatcher;
use crate::engine::{configured_as_harness, engine};
use crate::error::Error;
use crate::http::message::{HttpExchange, HttpOutcome};
use crate::http::state::HttpState;
use crate::http::stream::HttpStream;
use crate::log::LogLine;
use crate::property::{PropertyPath, PropertyStore, PropertyValue};
use crate::shared::{MetricValue, SharedState};
use crate::store::{ContextState, HostState, Setup};
use crate::tcp::state::TcpState;
use crate::tcp::stream::TcpStream;
use crate::upstream::{HttpCallReply, HttpCallRequest, Upstream};
use crate::vm::{Vm, chain, lock};
use crate::{hostcalls, wasi};

/// A compiled proxy-wasm module. Compile once and share: cloning is cheap, and one module
/// can create any number of independent plugins, in parallel.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    engine: Engine,
    module: wasmtime::Module,
    linker: Linker<HostState>,
}

impl Module {
    /// Compiles a `.wasm` file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Compile`] if it is not valid wasm.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Module::from_bytes(&bytes)
    }

    /// Compiles a module from its bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Compile`] if it is not valid wasm.
    pub fn from_bytes(bytes: &[u8]) -> Result<Module, Error> {
        let module = wasmtime::Module::new(&engine()?, bytes).map_err(|e| Error::Compile(chain(&e)))?;
        Module::linked(module)
    }

    /// Compiles a module ahead of time for this host, with the harness's [`engine()`]:
    /// wasmtime's serialized form (`Engine::precompile_module`), which a later process
    /// turns back into a module with `wasmtime::Module::deserialize` on an [`engine()`] and
    /// [`Module::from_compiled`], without compiling. For a build script that embeds a module
    /// in a program.
    ///
    /// # Errors
    ///
    /// [`Error::Compile`] if it is not valid wasm.
    pub fn precompile(bytes: &[u8]) -> Result<Vec<u8>, Error> {
        engine()?.precompile_module(bytes).map_err(|e| Error::Compile(chain(&e)))
    }

    /// A module wasmtime has compiled already, e.g. deserialized from the output of
    /// [`Module::precompile`]. Its engine must have the harness's configuration (an
    /// [`engine()`]).
    ///
    /// # Errors
    ///
    /// [`Error::Compile`] if the module's engine is configured differently from
    /// [`engine()`], [`Error::Link`] if the harness cannot provide its imports.
    pub fn from_compiled(module: wasmtime::Module) -> Result<Module, Error> {
        if !configured_as_harness(module.engine())? {
            return Err(Error::Compile(
                "the module was compiled with another engine configuration than the harness's".to_owned(),
            ));
        }
        Module::linked(module)
    }

    /// The module with the harness's imports linked.
    fn linked(module: wasmtime::Module) -> Result<Module, Error> {
        let engine = module.engine().clone();
        let mut linker = Linker::new(&engine);
        hostcalls::add_to_linker(&mut linker).map_err(|e| Error::Link(chain(&e)))?;
        wasi::add_to_linker(&mut linker).map_err(|e| Error::Link(chain(&e)))?;
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| Error::Link(chain(&e)))?;
        Ok(Module {
            inner: Arc::new(ModuleInner { engine, module, linker }),
        })
    }

    /// Starts a plugin the way Envoy loads one: instantiates the module, runs
    /// `_initialize`, creates the root context, and calls `proxy_on_vm_start` and
    /// `proxy_on_configure`.
    ///
    /// # Errors
    ///
    /// [`Error::Link`] if the module is not a proxy-wasm 0.2.x module,
    /// [`Error::VmStartRefused`] / [`Error::ConfigurationRefused`] if the plugin returned
    /// false (with its log lines), [`Error::Trap`] if it trapped.
    pub fn plugin(&self, config: PluginConfig) -> Result<Plugin, Error> {
        let mut properties = PropertyStore::default();
        properties.set(PropertyPath::from("plugin_name"), &PropertyValue::from(config.name.as_str()));
        properties.set(PropertyPath::from("plugin_root_id"), &PropertyValue::from(config.root_id.as_str()));
        properties.set(PropertyPath::from("plugin_vm_id"), &PropertyValue::from(config.vm_id.as_str()));
        for (path, value) in &config.properties {
            properties.set(path.clone(), value);
        }
        let setup = Setup {
            vm_id: config.vm_id.clone(),
            vm_configuration: config.vm_configuration,
            configuration: config.configuration,
            environment: config.environment,
            properties,
            upstreams: config.upstreams,
            log_level: config.log_level,
            allow_on_headers_stop_iteration: config.allow_on_headers_stop_iteration,
        };
        let shared = config.shared.unwrap_or_default();
        let start_time = config.start_time.unwrap_or_else(SystemTime::now);
        let host = HostState::new(Arc::new(setup), shared.clone(), start_time);
        let mut store = Store::new(&self.inner.engine, host);
        let instance = self
            .inner
            .linker
            .instantiate(&mut store, &self.inner.module)
            .map_err(|e| Error::Link(chain(&e)))?;
        if !["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"]
            .iter()
            .any(|name| instance.get_func(&mut store, name).is_some())
        {
            return Err(Error::Link(
                "not a proxy-wasm 0.2.x module: it exports no proxy_abi_version_0_2_1 (or _0_2_0)".to_owned(),
            ));
        }
        if let Some(Extern::Memory(memory)) = instance.get_export(&mut store, "memory") {
            store.data_mut().memory = Some(memory);
        }
        let allocate = ["proxy_on_memory_allocate", "malloc"]
            .iter()
            .find_map(|name| instance.get_typed_func::<u32, u32>(&mut store, name).ok());
        store.data_mut().allocate = allocate;
        let mut vm = Vm::new(store, instance);
        for init in ["_initialize", "_start"] {
            if vm.has_export(init) {
                vm.call(init, 0, &[])?;
                break;
            }
        }
        let root = vm.new_context_id();
        vm.host_mut().root_id = root;
        vm.host_mut().contexts.insert(root, ContextState::Root);
        vm.host_mut().configuring = true;
        vm.call("proxy_on_context_create", root, &[root, 0])?;
        vm.host_mut().configuring = false;
        let vm_size = u32::try_from(vm.host().setup.vm_configuration.len()).unwrap_or(u32::MAX);
        if vm.call("proxy_on_vm_start", root, &[root, vm_size])? == Some(0) {
            return Err(Error::VmStartRefused {
                logs: vm.host().logs.clone(),
            });
        }
        let size = u32::try_from(vm.host().setup.configuration.len()).unwrap_or(u32::MAX);
        vm.host_mut().configuring = true;
        let configured = vm.call("proxy_on_configure", root, &[root, size]);
        vm.host_mut().configuring = false;
        if configured? == Some(0) {
            return Err(Error::ConfigurationRefused {
                logs: vm.host().logs.clone(),
            });
        }
        dispatcher::settle(&mut vm)?;
        Ok(Plugin {
            vm: Arc::new(Mutex::new(vm)),
            shared,
            vm_id: config.vm_id,
        })
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").finish_non_exhaustive()
    }
}

/// How to load a plugin: what Envoy's `envoy.filters.http.wasm` (or network filter)
/// configuration would say, plus the clusters its HTTP calls may reach.
#[derive(Clone)]
pub struct PluginConfig {
    name: String,
    root_id: String,
    vm_id: String,
    vm_configuration: Vec<u8>,
    configuration: Vec<u8>,
    environment: Vec<(String, String)>,
    properties: Vec<(PropertyPath, PropertyValue)>,
    upstreams: HashMap<String, Upstream>,
    log_level: LogLevel,
    start_time: Option<SystemTime>,
    shared: Option<SharedState>,
    allow_on_headers_stop_iteration: bool,
}

impl Default for PluginConfig {
    fn default() -> PluginConfig {
        PluginConfig {
            name: String::new(),
            root_id: String::new(),
            vm_id: String::new(),
            vm_configuration: Vec::new(),
            configuration: Vec::new(),
            environment: Vec::new(),
            properties: Vec::new(),
            upstreams: HashMap::new(),
            log_level: LogLevel::Info,
            start_time: None,
            shared: None,
            allow_on_headers_stop_iteration: false,
        }
    }
}

impl PluginConfig {
    /// An empty configuration.
    pub fn new() -> PluginConfig {
        PluginConfig::default()
    }

    /// The plugin configuration (`config.configuration`), as `proxy_on_configure` reads it.
    pub fn configuration(mut self, configuration: impl Into<Vec<u8>>) -> PluginConfig {
        self.configuration = configuration.into();
        self
    }

    /// The VM configuration (`vm_config.configuration`), as `proxy_on_vm_start` reads it.
    pub fn vm_configuration(mut self, configuration: impl Into<Vec<u8>>) -> PluginConfig {
        self.vm_configuration = configuration.into();
        self
    }

    /// An environment variable the VM sees (`vm_config.environment_variables`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> PluginConfig {
        self.environment.push((name.into(), value.into()));
        self
    }

    /// A property every context of the plugin sees (streams' own properties win).
    pub fn property(mut self, path: impl Into<PropertyPath>, value: impl Into<PropertyValue>) -> PluginConfig {
        self.properties.push((path.into(), value.into()));
        self
    }

    /// Registers a cluster the plugin's `proxy_http_call`s may name.
    pub fn upstream(mut self, cluster: impl Into<String>, upstream: Upstream) -> PluginConfig {
        self.upstreams.insert(cluster.into(), upstream);
        self
    }

    /// The plugin's name (`plugin_name` property).
    pub fn name(mut self, name: impl Into<String>) -> PluginConfig {
        self.name = name.into();
        self
    }

    /// The plugin's root id (`plugin_root_id` property).
    pub fn root_id(mut self, root_id: impl Into<String>) -> PluginConfig {
        self.root_id = root_id.into();
        self
    }

    /// The VM id (`plugin_vm_id` property; shared data and queues are per VM id).
    pub fn vm_id(mut self, vm_id: impl Into<String>) -> PluginConfig {
        self.vm_id = vm_id.into();
        self
    }

    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration` (Envoy >= 1.35; default
    /// false). Without it, a headers callback's `Pause` stops all iteration
    /// (`StopAllIterationAndWatermark`): the body waits until the filter continues the
    /// stream. With it, `Pause` holds only the headers: body callbacks run while the headers
    /// are held and still writable, and nothing is forwarded until the filter continues
    /// (so a local reply means the upstream sees nothing).
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> PluginConfig {
        self.allow_on_headers_stop_iteration = allow;
        self
    }

    /// The level `proxy_get_log_level` reports (default `Info`, Envoy's default). Every
    /// line is captured whatever the level.
    pub fn log_level(mut self, level: LogLevel) -> PluginConfig {
        self.log_level = level;
        self
    }

    /// The instant the virtual clock starts at (default: the real time at creation).
    pub fn start_time(mut self, start: SystemTime) -> PluginConfig {
        self.start_time = Some(start);
        self
    }

    /// Shares shared data, queues and metrics with other plugins created with the same
    /// handle (like Envoy's worker VMs of one VM id).
    pub fn shared_state(mut self, shared: &SharedState) -> PluginConfig {
        self.shared = Some(shared.clone());
        self
    }
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginConfig")
            .field("name", &self.name)
            .field("root_id", &self.root_id)
            .field("vm_id", &self.vm_id)
            .field("configuration_bytes", &self.configuration.len())
            .field("upstreams", &self.upstreams.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A running plugin: one VM with its root context, configured and ready for streams.
///
/// All methods take `&self`; streams hold a handle to the plugin, so several streams can be
/// open at once. Upstream handlers run while the plugin is busy and must not call it.
pub struct Plugin {
    vm: Arc<Mutex<Vm>>,
    shared: SharedState,
    vm_id: String,
}

impl Plugin {
    fn with<T>(&self, f: impl FnOnce(&mut Vm) -> Result<T, Error>) -> Result<T, Error> {
        let mut vm = lock(&self.vm);
        f(&mut vm)
    }

    fn read<T>(&self, f: impl FnOnce(&HostState) -> T) -> T {
        f(lock(&self.vm).host())
    }

    /// Opens an HTTP stream (`proxy_on_context_create(id, root)`).
    ///
    /// # Errors
    ///
    /// A trap, or a VM that failed earlier.
    pub fn http_stream(&self) -> Result<HttpStream, Error> {
        let id = self.with(|vm| dispatcher::new_context(vm, ContextState::Http(Box::new(HttpState::new(PropertyStore::default())))))?;
        Ok(HttpStream {
            vm: Arc::clone(&self.vm),
            id,
            finished: false,
        })
    }

    /// Opens a TCP stream (`proxy_on_context_create`, then `proxy_on_new_connection`).
    ///
    /// # Errors
    ///
    /// A trap, or a VM that failed earlier.
    pub fn tcp_stream(&self) -> Result<TcpStream, Error> {
        let id = self.with(|vm| {
            let id = dispatcher::new_context(vm, ContextState::Tcp(Box::new(TcpState::new(PropertyStore::default()))))?;
            vm.call("proxy_on_new_connection", id, &[id])?;
            dispatcher::settle(vm)?;
            Ok(id)
        })?;
        Ok(TcpStream {
            vm: Arc::clone(&self.vm),
            id,
            finished: false,
        })
    }

    /// Runs a whole exchange: the request (headers, body chunks, trailers); then, if the
    /// filter let the whole request through, the response; then ends the stream.
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn run_http(&self, exchange: HttpExchange) -> Result<HttpOutcome, Error> {
        let mut stream = self.http_stream()?;
        for (path, value) in exchange.properties {
            stream.set_property(path, value)?;
        }
        let request_ends_with_headers = exchange.request_body.is_empty() && exchange.request_trailers.is_none();
        stream.send_request_headers(exchange.request_headers, request_ends_with_headers)?;
        let chunks = exchange.request_body.len();
        for (i, chunk) in exchange.request_body.into_iter().enumerate() {
            stream.send_request_body(chunk, i + 1 == chunks && exchange.request_trailers.is_none())?;
        }
        if let Some(trailers) = exchange.request_trailers {
            stream.send_request_trailers(trailers)?;
        }
        if stream.upstream_request().end_of_stream {
            let response_ends_with_headers = exchange.response_body.is_empty() && exchange.response_trailers.is_none();
            stream.send_response_headers(exchange.response_headers, response_ends_with_headers)?;
            let chunks = exchange.response_body.len();
            for (i, chunk) in exchange.response_body.into_iter().enumerate() {
                stream.send_response_body(chunk, i + 1 == chunks && exchange.response_trailers.is_none())?;
            }
            if let Some(trailers) = exchange.response_trailers {
                stream.send_response_trailers(trailers)?;
            }
        }
        stream.finish()
    }

    /// Every line the plugin logged so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.read(|host| host.logs.clone())
    }

    /// Returns the lines logged so far and forgets them.
    pub fn take_logs(&self) -> Vec<LogLine> {
        std::mem::take(&mut lock(&self.vm).host_mut().logs)
    }

    /// Whether any logged line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.read(|host| host.logs.iter().any(|line| line.message.contains(needle)))
    }

    /// A metric the plugin defined, by name.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.shared.metric(name)
    }

    /// The metrics as Envoy's `/stats` lists them.
    pub fn stats_text(&self) -> String {
        self.shared.stats_text()
    }

    /// The value and CAS of a shared-data key of this plugin's VM id.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.shared_data(&self.vm_id, key)
    }

    /// The handle to this plugin's shared data, queues and metrics.
    pub fn shared_state(&self) -> SharedState {
        self.shared.clone()
    }

    /// The virtual clock's current time.
    pub fn now(&self) -> SystemTime {
        self.read(HostState::now)
    }

    /// The tick period the plugin set, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.read(|host| host.tick_period)
    }

    /// Moves the virtual clock forward, calling `proxy_on_tick` for every tick period that
    /// elapses and timing out manual HTTP calls whose timeout elapses (504), in time order.
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn advance_time(&self, by: Duration) -> Result<(), Error> {
        self.with(|vm| dispatcher::advance(vm, by))
    }

    /// Every HTTP call the plugin made so far, answered or not, in order.
    pub fn http_calls(&self) -> Vec<HttpCallRequest> {
        self.read(|host| host.calls_made.clone())
    }

    /// The calls to [`Upstream::manual`] clusters still waiting for an answer.
    pub fn pending_http_calls(&self) -> Vec<HttpCallRequest> {
        self.read(|host| host.calls_pending.iter().map(|p| p.request.clone()).collect())
    }

    /// Answers a pending call to a manual upstream and delivers the answer to the plugin
    /// (`proxy_on_http_call_response`).
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if no call with this token is pending; a trap in the guest.
    pub fn respond_http_call(&self, token: u32, reply: impl Into<HttpCallReply>) -> Result<(), Error> {
        let reply = reply.into();
        self.with(|vm| {
            let host = vm.host_mut();
            let index = host
                .calls_pending
                .iter()
                .position(|p| p.request.token == token)
                .ok_or_else(|| Error::Usage(format!("no HTTP call with token {token} is pending")))?;
            let pending = host.calls_pending.remove(index);
            dispatcher::deliver_call(vm, &pending, reply)?;
            dispatcher::settle(vm)
        })
    }

    /// Runs what Envoy's event loop would run now: queue-ready notifications caused by
    /// other plugins sharing this plugin's [`SharedState`], and deferred work.
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn run_pending(&self) -> Result<(), Error> {
        self.with(dispatcher::settle)
    }

    /// Shuts the plugin down as Envoy does when it removes it: `proxy_on_done` on the root
    /// context; if that returns false, waits for the plugin to call `proxy_done` (answering
    /// HTTP calls meanwhile); then `proxy_on_delete`. Returns whether the plugin finished.
    ///
    /// # Errors
    ///
    /// A trap in the guest.
    pub fn shutdown(&self) -> Result<bool, Error> {
        self.with(|vm| {
            let root = vm.host().root_id;
            let done = vm.call("proxy_on_done", root, &[root])?;
            if done == Some(0) {
                vm.host_mut().done_pending = true;
                dispatcher::settle(vm)?;
                if !vm.host().done_called {
                    return Ok(false);
                }
            }
            vm.call("proxy_on_delete", root, &[root])?;
            vm.host_mut().contexts.remove(&root);
            Ok(true)
        })
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("vm_id", &self.vm_id).finish_non_exhaustive()
    }
}
