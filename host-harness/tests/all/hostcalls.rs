//! One test per hostcall family, with the statuses Envoy returns for misuse.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventseal_harness::{Error, HttpExchange, LogLevel, MetricValue, PluginConfig, PropertyValue, SharedState};

use crate::{field, probe_plugin, probe_request, result, run_probe};

#[test]
fn proxy_log_rejects_unknown_levels_and_captures_lines_with_their_level() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "log");
    assert_eq!(field(&line, "bad_level"), "BadArgument");
    assert_eq!(field(&line, "info"), "Ok");
    assert!(
        plugin
            .logs()
            .iter()
            .any(|l| l.level == LogLevel::Info && l.message == "probe info line")
    );
}

#[test]
fn proxy_get_log_level_reports_the_configured_level() {
    let plugin = probe_plugin(PluginConfig::new().log_level(LogLevel::Warn));
    assert_eq!(field(&run_probe(&plugin, "log"), "level"), "Some(Warn)");
    let plugin = probe_plugin(PluginConfig::new());
    assert_eq!(field(&run_probe(&plugin, "log"), "level"), "Some(Info)");
}

#[test]
fn current_time_is_the_virtual_clock_for_both_the_abi_and_wasi() {
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let plugin = probe_plugin(PluginConfig::new().start_time(start));
    let line = run_probe(&plugin, "time");
    assert_eq!(field(&line, "host_ms"), "1700000000000");
    assert_eq!(field(&line, "wasi_ms"), "1700000000000");
    assert_eq!(field(&line, "monotonic_ok"), "true");
    plugin.advance_time(Duration::from_millis(1500)).unwrap();
    assert_eq!(plugin.now(), start + Duration::from_millis(1500));
    assert_eq!(field(&run_probe(&plugin, "time"), "host_ms"), "1700000001500");
}

#[test]
fn the_clock_defaults_to_the_real_time_at_creation() {
    let before = SystemTime::now();
    let plugin = probe_plugin(PluginConfig::new());
    assert!(plugin.now() >= before && plugin.now() <= SystemTime::now());
}

#[test]
fn environment_variables_come_from_the_vm_config() {
    let plugin = probe_plugin(PluginConfig::new().env("PROBE_ENV", "from-envoy"));
    assert_eq!(field(&run_probe(&plugin, "env"), "PROBE_ENV"), "from-envoy");
    let plugin = probe_plugin(PluginConfig::new());
    assert_eq!(field(&run_probe(&plugin, "env"), "PROBE_ENV"), "unset");
}

#[test]
fn wasi_stdout_and_stderr_become_info_and_error_lines() {
    let plugin = probe_plugin(PluginConfig::new());
    run_probe(&plugin, "stdio");
    let logs = plugin.logs();
    assert!(logs.iter().any(|l| l.level == LogLevel::Info && l.message == "hello stdout"));
    assert!(logs.iter().any(|l| l.level == LogLevel::Error && l.message == "hello stderr"));
}

#[test]
fn wasi_random_get_fills_fresh_bytes() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "random");
    assert_eq!(field(&line, "errno"), "0/0");
    assert_eq!(field(&line, "differ"), "true");
}

#[test]
fn a_panic_traps_with_its_message_and_fails_the_vm() {
    let plugin = probe_plugin(PluginConfig::new());
    let error = plugin.run_http(probe_request("panic")).unwrap_err();
    let Error::Trap { function, logs, .. } = &error else {
        panic!("expected a trap, got {error}")
    };
    assert_eq!(function, "proxy_on_request_headers");
    assert!(
        logs.iter()
            .any(|l| l.level == LogLevel::Critical && l.message.contains("probe panicked on purpose"))
    );
    assert!(error.to_string().contains("probe panicked on purpose"), "{error}");
    assert!(matches!(plugin.http_stream(), Err(Error::Failed)));
}

#[test]
fn proxy_get_buffer_bytes_statuses() {
    let plugin = probe_plugin(PluginConfig::new().vm_configuration("vm-config"));
    let line = run_probe(&plugin, "buffers");
    assert_eq!(field(&line, "bad_type"), "BadArgument");
    assert_eq!(
        field(&line, "plugin_config"),
        "NotFound",
        "plugin configuration is only readable in on_configure"
    );
    assert_eq!(field(&line, "vm_config"), "Ok:vm-config");
    assert_eq!(field(&line, "vm_config_slice"), "Ok:-co");
    assert_eq!(
        field(&line, "vm_config_past_end"),
        "Ok:null",
        "a start past the end reads nothing (cpp-host's get_buffer_bytes)"
    );
    assert_eq!(field(&line, "call_body"), "NotFound");
    assert_eq!(field(&line, "request_body"), "Ok:null", "no body in the headers callback");
}

/// Envoy's `Buffer::copyFrom` since 1.20: at start 0 it drains `size` bytes and prepends,
/// at or past the end it appends, anywhere else it refuses (checked against Envoy 1.40).
#[test]
fn proxy_set_buffer_bytes_replaces_a_prefix_prepends_or_appends() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "buffers");
    assert_eq!(field(&line, "set_request_body"), "BadArgument");
    assert_eq!(field(&line, "set_vm_config"), "BadArgument");
    let outcome = plugin.run_http(probe_request("body-rules").request_body("hello")).unwrap();
    let line = result(&plugin, "body-rules");
    assert_eq!(field(&line, "replace_prefix"), "Ok", "the first byte is replaced");
    assert_eq!(field(&line, "middle"), "BadArgument");
    assert_eq!(field(&line, "prepend"), "Ok");
    assert_eq!(field(&line, "append"), "Ok");
    assert_eq!(field(&line, "slice"), "Ok:Xel");
    assert_eq!(field(&line, "past_end"), "Ok:null");
    assert_eq!(field(&line, "empty"), "Ok:null");
    assert_eq!(field(&line, "response_body"), "BadArgument");
    assert_eq!(outcome.forwarded_request().unwrap().body, b"<Xello>");
}

#[test]
fn header_map_value_calls_and_their_statuses() {
    let plugin = probe_plugin(PluginConfig::new());
    let outcome = plugin.run_http(probe_request("headers")).unwrap();
    let line = result(&plugin, "headers");
    assert_eq!(field(&line, "missing"), "NotFound");
    assert_eq!(field(&line, "a"), "Ok:1", "lookups are case-insensitive");
    assert_eq!(field(&line, "bad_type"), "BadArgument");
    assert_eq!(field(&line, "response_value"), "BadArgument", "response headers do not exist yet");
    assert_eq!(
        field(&line, "call_value"),
        "BadArgument",
        "no HTTP call response outside its callback"
    );
    assert_eq!(field(&line, "add_response"), "BadArgument");
    assert_eq!(field(&line, "replace_response"), "BadArgument");
    assert_eq!(field(&line, "remove_response"), "BadArgument");
    assert_eq!(field(&line, "replace"), "Ok");
    assert_eq!(field(&line, "add"), "Ok");
    assert_eq!(field(&line, "remove"), "Ok");
    assert_eq!(field(&line, "response_pairs"), "0");
    let request = outcome.forwarded_request().unwrap();
    assert_eq!(request.header("a"), Some("2"));
    assert_eq!(request.header("b"), Some("3"), "names are stored lower-cased");
    assert_eq!(request.header("x-remove-me"), None);
}

#[test]
fn header_map_pairs_are_listed_and_replaced_whole() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "headers");
    assert_eq!(field(&line, "request_pairs"), "6", "six headers, after one removed and one added");
    let outcome = plugin
        .run_http(
            probe_request("trailers")
                .request_body("x")
                .request_trailers([("x-old", "1"), ("x-older", "2")]),
        )
        .unwrap();
    assert!(plugin.logged("probe trailers count=2"));
    let trailers = outcome.forwarded_request().unwrap().trailers.clone().unwrap();
    assert_eq!(trailers, eventseal_harness::Headers::from([("x-added", "t")]));
}

#[test]
fn properties_in_envoys_encoding_with_stream_plugin_and_guest_values() {
    let plugin = probe_plugin(PluginConfig::new().property("node.metadata.tier", "gold"));
    let exchange = probe_request("properties")
        .property("connection.uri_san_peer_certificate", "spiffe://example.org/producer")
        .property("metadata.jwt.sub", "alice")
        .property("metadata.jwt.iat", 1_700_000_000i64);
    plugin.run_http(exchange).unwrap();
    let line = result(&plugin, "properties");
    assert_eq!(field(&line, "plugin_name"), "Ok:probe-plugin");
    assert_eq!(field(&line, "missing"), "NotFound:null");
    assert_eq!(field(&line, "path"), "Ok:/p", "request.* comes from the request headers");
    assert_eq!(field(&line, "peer"), "Ok:spiffe://example.org/producer");
    assert_eq!(field(&line, "tier"), "Ok:gold");
    assert_eq!(field(&line, "response_code"), "NotFound:0", "no response yet");
    assert_eq!(field(&line, "set"), "Ok");
    assert_eq!(field(&line, "get_set"), "Ok:m");
    assert_eq!(field(&line, "metadata_map"), "Ok:2", "a prefix of stored values reads as a map");
    assert_eq!(field(&line, "iat"), "Ok:1700000000", "integers are 8 bytes little-endian");
    assert_eq!(
        field(&line, "root_set"),
        "NotFound",
        "the root context has no stream to set properties on"
    );
    assert_eq!(PropertyValue::from(true).encode(), [1]);
}

#[test]
fn shared_data_with_cas() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "shared");
    assert_eq!(field(&line, "missing"), "NotFound");
    assert_eq!(field(&line, "set"), "Ok");
    assert_eq!(field(&line, "get"), "Ok:v1");
    assert_eq!(field(&line, "stale_cas"), "CasMismatch");
    assert_eq!(field(&line, "cas"), "Ok");
    assert_eq!(field(&line, "reused_cas"), "CasMismatch", "every write changes the CAS");
    assert_eq!(field(&line, "final"), "v2");
    assert_eq!(plugin.shared_data("probe-key").unwrap().0, b"v2");
}

#[test]
fn shared_data_is_shared_only_through_a_shared_state_handle() {
    let shared = SharedState::new();
    let first = probe_plugin(PluginConfig::new().shared_state(&shared));
    let second = probe_plugin(PluginConfig::new().shared_state(&shared));
    let stranger = probe_plugin(PluginConfig::new());
    run_probe(&first, "shared");
    assert_eq!(second.shared_data("probe-key").unwrap().0, b"v2");
    assert_eq!(
        field(&run_probe(&second, "shared"), "missing"),
        "Ok",
        "the second worker sees the first one's data"
    );
    assert_eq!(stranger.shared_data("probe-key"), None);
    assert_eq!(field(&run_probe(&stranger, "shared"), "missing"), "NotFound");
}

#[test]
fn shared_queues_and_queue_ready() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "queue");
    assert_eq!(field(&line, "resolve"), "Ok:true");
    assert_eq!(field(&line, "resolve_missing"), "NotFound");
    assert_eq!(field(&line, "dequeue_empty"), "Empty");
    assert_eq!(field(&line, "enqueue"), "Ok");
    assert_eq!(field(&line, "dequeue_missing"), "NotFound");
    assert_eq!(field(&line, "enqueue_missing"), "NotFound");
    assert!(
        plugin.logs().iter().any(|l| l.message.ends_with("ready: item")),
        "proxy_on_queue_ready ran on the root context"
    );
}

#[test]
fn queue_ready_reaches_the_plugin_that_registered_the_queue() {
    let shared = SharedState::new();
    let owner = probe_plugin(PluginConfig::new().shared_state(&shared));
    let producer = probe_plugin(PluginConfig::new().shared_state(&shared));
    run_probe(&producer, "queue");
    assert!(
        producer.logs().iter().any(|l| l.message.ends_with("ready: item")),
        "the producer registered last, so it owns the queue"
    );
    assert!(!owner.logs().iter().any(|l| l.message.contains("ready:")));
    owner.run_pending().unwrap();
}

#[test]
fn metrics_define_increment_record_get() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "metrics");
    assert_eq!(field(&line, "bad_type"), "BadArgument");
    assert_eq!(field(&line, "inc_counter"), "Ok");
    assert_eq!(field(&line, "dec_counter"), "BadArgument", "counters only go up");
    assert_eq!(field(&line, "record_gauge"), "Ok");
    assert_eq!(field(&line, "dec_gauge"), "Ok");
    assert_eq!(field(&line, "inc_histogram"), "BadArgument");
    assert_eq!(field(&line, "record_histogram"), "Ok");
    assert_eq!(field(&line, "get_counter"), "Ok:5");
    assert_eq!(field(&line, "get_gauge"), "Ok:17");
    assert_eq!(field(&line, "get_histogram"), "BadArgument");
    assert_eq!(field(&line, "get_missing"), "NotFound");
    assert_eq!(field(&line, "record_missing"), "NotFound");
    assert_eq!(field(&line, "inc_missing"), "NotFound");
    assert_eq!(plugin.metric("probe_counter"), Some(MetricValue::Counter(5)));
    assert_eq!(plugin.metric("probe_gauge"), Some(MetricValue::Gauge(17)));
    assert_eq!(plugin.metric("probe_histogram"), Some(MetricValue::Histogram(vec![42])));
    let stats = plugin.stats_text();
    assert!(
        stats.contains("probe_counter: 5\n") && stats.contains("probe_gauge: 17\n"),
        "{stats}"
    );
}

#[test]
fn effective_context_done_foreign_functions_and_status() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "contexts");
    assert_eq!(field(&line, "effective_self"), "Ok");
    assert_eq!(field(&line, "effective_missing"), "BadArgument");
    assert_eq!(
        field(&line, "done"),
        "NotFound",
        "proxy_done is only valid after on_done returned false"
    );
    assert_eq!(field(&line, "foreign"), "NotFound");
    assert_eq!(field(&line, "get_status"), "Ok:0");
}

#[test]
fn continue_and_close_stream_statuses() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "streams");
    assert_eq!(field(&line, "continue_bad"), "BadArgument");
    assert_eq!(field(&line, "continue_upstream"), "Unimplemented");
    assert_eq!(field(&line, "continue_downstream"), "Ok");
    assert_eq!(field(&line, "close_bad"), "BadArgument");
}

#[test]
fn grpc_calls_are_refused_like_envoy_refuses_unknown_clusters() {
    let plugin = probe_plugin(PluginConfig::new());
    let line = run_probe(&plugin, "grpc");
    assert_eq!(field(&line, "call_unknown"), "ParseFailure");
    assert_eq!(field(&line, "call_known"), "InternalFailure");
    assert_eq!(field(&line, "stream_unknown"), "ParseFailure");
    assert_eq!(field(&line, "send"), "NotFound");
    assert_eq!(field(&line, "cancel"), "NotFound");
    assert_eq!(field(&line, "close"), "NotFound");
}

#[test]
fn independent_plugins_do_not_share_anything() {
    let a = probe_plugin(PluginConfig::new());
    let b = probe_plugin(PluginConfig::new());
    run_probe(&a, "metrics");
    assert_eq!(b.metric("probe_counter"), None);
    let exchange = HttpExchange::new([(":path", "/")]);
    b.run_http(exchange).unwrap();
    assert!(!b.logged("probe metrics"));
}
