//! Runs the `eventseal` binary as an operator would.

use eventseal_core::{AuditChain, AuditFacts, KeyStatus, KeyUse, Keyring};
use std::path::PathBuf;
use std::process::{Command, Output};

fn eventseal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventseal"))
        .args(args)
        .output()
        .expect("run eventseal")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "eventseal failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eventseal-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn keys_generate_makes_a_valid_random_key_of_each_purpose() {
    let mut seen = Vec::new();
    for (purpose, key_use) in [("seal", KeyUse::Seal), ("sign", KeyUse::Sign), ("audit", KeyUse::Audit)] {
        let jwk = stdout(&eventseal(&["keys", "generate", "--purpose", purpose, "--kid", "k-1"]));
        let ring = Keyring::from_jwks(&format!("{{\"keys\":[{jwk}]}}")).expect("generated key is valid");
        let key = ring.get("k-1").unwrap();
        assert_eq!((key.key_use(), key.status()), (key_use, KeyStatus::Primary));
        let k: serde_json::Value = serde_json::from_str(&jwk).unwrap();
        seen.push(k["k"].as_str().unwrap().to_owned());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "keys must be random");
    let retired = stdout(&eventseal(&["keys", "generate", "--kid", "old", "--status", "retired"]));
    assert!(retired.contains("\"status\":\"retired\""));
}

#[test]
fn keys_rotate_adds_a_primary_and_demotes_the_old_one() {
    let dir = temp_dir("rotate");
    let path = dir.join("keys.json");
    let first = stdout(&eventseal(&["keys", "generate", "--kid", "k1"]));
    std::fs::write(&path, format!("{{\"keys\":[{first}]}}")).unwrap();
    let path_arg = path.to_str().unwrap();
    stdout(&eventseal(&["keys", "rotate", "--keyring", path_arg, "--kid", "k2"]));
    let ring = Keyring::from_jwks(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(ring.primary(KeyUse::Seal).unwrap().kid().as_str(), "k2");
    assert_eq!(ring.get("k1").unwrap().status(), KeyStatus::Retired);
    let again = eventseal(&["keys", "rotate", "--keyring", path_arg, "--kid", "k2"]);
    assert!(!again.status.success());
    let err = String::from_utf8(again.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("already in the keyring"), "{err}");
}

#[test]
fn audit_verify_accepts_intact_logs_and_names_the_first_broken_link() {
    let dir = temp_dir("audit");
    let jwk = stdout(&eventseal(&["keys", "generate", "--purpose", "audit", "--kid", "audit-1"]));
    let keyring = format!("{{\"keys\":[{jwk}]}}");
    let ring = Keyring::from_jwks(&keyring).unwrap();
    let keys_path = dir.join("keys.json");
    std::fs::write(&keys_path, &keyring).unwrap();
    let mut chain = AuditChain::new("test");
    let lines: Vec<String> = (0..3)
        .map(|i| {
            let facts = AuditFacts {
                time_unix_nanos: i,
                operations: vec!["seal"],
                outcome: "allowed",
                ..AuditFacts::default()
            };
            format!("[proxy log prefix] {}", chain.append(&ring, &facts))
        })
        .collect();
    let log = dir.join("audit.log");
    let verify = |text: String| {
        std::fs::write(&log, text).unwrap();
        eventseal(&["audit", "verify", "--keyring", keys_path.to_str().unwrap(), log.to_str().unwrap()])
    };
    assert!(stdout(&verify(lines.join("\n"))).contains("3 records"));
    let deleted = verify([lines[0].clone(), lines[2].clone()].join("\n"));
    assert!(!deleted.status.success());
    assert!(
        String::from_utf8_lossy(&deleted.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["keys", "--help"],
        &["keys", "generate", "--help"],
        &["keys", "rotate", "--help"],
        &["audit", "verify", "--help"],
    ] {
        let out = stdout(&eventseal(args));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
}

#[test]
fn demo_seals_then_opens_per_reader() {
    let out = stdout(&eventseal(&["demo"]));
    let sections: Vec<&str> = out.split("== ").filter(|s| !s.is_empty()).collect();
    assert_eq!(sections.len(), 3, "{out}");
    let body = |section: &str| -> serde_json::Value { serde_json::from_str(section.split_once('\n').unwrap().1).unwrap() };
    let (sealed, billing, support) = (body(sections[0]), body(sections[1]), body(sections[2]));
    assert!(
        !sections[0].contains("4111") && !sections[0].contains("zoe@example.test"),
        "{}",
        sections[0]
    );
    assert!(sealed["data"]["card"].as_str().unwrap().starts_with("eyJ"));
    assert_eq!(sealed["data"]["order_id"], "ord-2041", "fields outside the policy stay readable");
    let original: serde_json::Value = serde_json::from_str(include_str!("../../../examples/demo/order.json")).unwrap();
    assert_eq!(billing, original, "billing may open every sealed field");
    assert_eq!(
        support["data"]["card"], sealed["data"]["card"],
        "support may not open the card: it stays sealed"
    );
    assert_eq!(support["data"]["customer"], original["data"]["customer"]);
}
