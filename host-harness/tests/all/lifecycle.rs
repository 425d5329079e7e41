//! Loading plugins: the cpp-host lifecycle, refusals, and modules that are not plugins.

use eventseal_harness::{Error, Module, PluginConfig};

use crate::{filter_module, probe_module};

#[test]
fn a_refused_configuration_is_an_error_with_the_plugins_log() {
    let error = filter_module().plugin(PluginConfig::new().configuration("refuse")).unwrap_err();
    let Error::ConfigurationRefused { logs } = &error else {
        panic!("{error}")
    };
    assert!(logs.iter().any(|l| l.message == "configuration refused: refuse"));
    let text = error.to_string();
    assert!(
        text.contains("refused its configuration") && text.contains("configuration refused: refuse"),
        "{text}"
    );
}

#[test]
fn a_refused_vm_start_is_an_error() {
    let error = probe_module().plugin(PluginConfig::new().vm_configuration("refuse")).unwrap_err();
    assert!(matches!(error, Error::VmStartRefused { .. }), "{error}");
}

#[test]
fn a_module_that_is_not_a_proxy_wasm_plugin_is_refused() {
    let empty_module = b"\0asm\x01\0\0\0";
    let error = Module::from_bytes(empty_module).unwrap().plugin(PluginConfig::new()).unwrap_err();
    assert!(matches!(&error, Error::Link(m) if m.contains("proxy_abi_version_0_2_1")), "{error}");
    assert!(matches!(Module::from_bytes(b"not wasm"), Err(Error::Compile(_))));
    assert!(matches!(Module::from_file("/nonexistent/plugin.wasm"), Err(Error::Io { .. })));
}

#[test]
fn shutdown_runs_on_done_and_on_delete_on_the_root() {
    let plugin = probe_module().plugin(PluginConfig::new()).unwrap();
    assert!(plugin.shutdown().unwrap());
}

#[test]
fn plugins_from_one_module_run_in_parallel_threads() {
    let module = filter_module();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let module = module.clone();
            std::thread::spawn(move || {
                let plugin = module.plugin(PluginConfig::new()).unwrap();
                for _ in 0..=i {
                    plugin
                        .run_http(eventseal_harness::HttpExchange::new([(":method", "GET"), (":path", "/")]))
                        .unwrap();
                }
                plugin.metric("filter_requests_total").unwrap().value()
            })
        })
        .collect();
    let counts: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(counts, [1, 2, 3, 4]);
}

#[test]
fn a_module_compiled_ahead_of_time_is_wasmtimes_serialized_module() {
    let wasm = std::fs::read(eventseal_harness_test_programs::FILTER_WASM).unwrap();
    let compiled = Module::precompile(&wasm).unwrap();
    assert_eq!(wasmtime::Engine::detect_precompiled(&compiled), Some(wasmtime::Precompiled::Module));
    assert!(matches!(Module::precompile(b"not wasm"), Err(Error::Compile(_))));
}

#[test]
fn a_module_compiled_with_the_harness_engine_runs_and_one_from_another_configuration_is_refused() {
    let wasm = std::fs::read(eventseal_harness_test_programs::FILTER_WASM).unwrap();
    let ours = wasmtime::Module::new(&eventseal_harness::engine().unwrap(), &wasm).unwrap();
    let plugin = Module::from_compiled(ours).unwrap().plugin(PluginConfig::new()).unwrap();
    plugin
        .run_http(eventseal_harness::HttpExchange::new([(":method", "GET"), (":path", "/")]))
        .unwrap();
    assert_eq!(plugin.metric("filter_requests_total").unwrap().value(), 1);

    let fuel = wasmtime::Engine::new(wasmtime::Config::new().consume_fuel(true)).unwrap();
    let theirs = wasmtime::Module::new(&fuel, &wasm).unwrap();
    let Err(error) = Module::from_compiled(theirs) else {
        panic!("a module from another engine configuration was accepted")
    };
    assert!(
        matches!(&error, Error::Compile(m) if m.contains("another engine configuration")),
        "{error}"
    );
}
