//! What an operator sees when the policy is invalid: Envoy refuses to start, and its log
//! names the JSON location of the mistake (`docs/OPERATIONS.md`).
//!
//! The conformance cases with `config_refused` (in `cases`) show it for policies that sign;
//! this test shows it for a plain mistake, with the lines an operator looks for.

use crate::case::Case;
use crate::cases::listener;
use crate::envoy::{self, Envoy};
use crate::jwt::JwtIssuer;
use crate::pki::TestCa;
use crate::upstream::Upstream;
use serde_json::json;

#[test]
fn an_invalid_policy_keeps_envoy_from_starting_and_names_the_location() {
    let mut case = Case::load_from(&envoy::workspace().join("tests/cases"), "seal-request-fields");
    // A misspelt member of the second rule's seal action.
    case.config["rules"] = json!([
        case.config["rules"][0],
        {"name": "typo", "match": {"path": "/typo"}, "seal": {"feilds": ["/x"]}},
    ]);
    let (ca, jwt, upstream) = (TestCa::new(), JwtIssuer::new(), Upstream::start());
    let bootstrap = envoy::bootstrap(&[listener("refused", &case, &ca, &jwt)], &[("upstream".to_owned(), upstream.addr)]);
    let refused = match Envoy::start(&bootstrap) {
        Ok(envoy) => panic!("Envoy started with an invalid policy:\n{}", envoy.stop()),
        Err(refused) => refused,
    };
    assert!(!refused.status.success(), "Envoy exited with {}", refused.status);
    let filter_lines = envoy::wasm_log_lines(&refused.log, Some("refused"));
    assert!(
        filter_lines
            .iter()
            .any(|l| l.starts_with("eventseal: configuration refused: configuration /rules/1/seal")),
        "the filter's log line names the location: {filter_lines:#?}\n{}",
        refused.log
    );
    // Envoy's own lines: the plugin failed to load, and the listener with it.
    for line in [
        "Wasm VM failed Failed to configure base Wasm plugin",
        "Unable to create Wasm plugin eventseal-refused",
    ] {
        assert!(refused.log.contains(line), "no {line:?} in:\n{}", refused.log);
    }
    // The keys are not in the log.
    let key = case.keys["keys"][0]["k"].as_str().expect("a key");
    assert!(!refused.log.contains(key), "the log shows a key");
}
