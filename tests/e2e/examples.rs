//! The examples work as their READMEs say: `examples/envoy/run.sh` seals an event through
//! Envoy (hold mode) and opens it for a reader; `examples/istio/wasmplugin.yaml` carries
//! the same policy in forward mode, and `examples/istio/envoyfilter-hold.yaml` in hold mode
//! with Envoy's knob set; both are policies the filter accepts.

use crate::envoy;
use eventseal_core::Policy;
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

#[test]
fn the_envoy_example_runs_with_one_command() {
    envoy::binary();
    // The build helper's target directory already holds the release wasm: run.sh's own
    // `cargo build` finds it fresh there, and the outer target directory stays unlocked.
    let wasm_target = std::path::Path::new(envoy::filter_wasm())
        .ancestors()
        .nth(3)
        .expect("<target>/wasm32-wasip1/release/x.wasm");
    let output = Command::new(envoy::workspace().join("examples/envoy/run.sh"))
        .env("CARGO_TARGET_DIR", wasm_target)
        .output()
        .expect("run examples/envoy/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run.sh failed ({}):\n{stdout}\n{stderr}", output.status);
    let section = |title: &str| -> &str {
        let start = stdout.find(title).unwrap_or_else(|| panic!("no section {title:?} in:\n{stdout}"));
        // The body of the section: after the title's line, up to the next title.
        let rest = &stdout[start..];
        let rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
        &rest[..rest.find("==>").unwrap_or(rest.len())]
    };
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
