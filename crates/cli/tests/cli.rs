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
fn audit_verify_refuses_unkeyed_chains_unless_allowed_and_chains_whose_key_is_missing() {
    let dir = temp_dir("audit-unkeyed");
    let records = |ring: &Keyring| -> String {
        let mut chain = AuditChain::new("test");
        (0..3)
            .map(|i| {
                let facts = AuditFacts {
                    time_unix_nanos: i,
                    operations: vec!["open"],
                    outcome: "allowed",
                    ..AuditFacts::default()
                };
                chain.append(ring, &facts)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let audit_key = |kid: &str| stdout(&eventseal(&["keys", "generate", "--purpose", "audit", "--kid", kid]));
    let (audit_1, audit_2) = (audit_key("audit-1"), audit_key("audit-2"));
    let verify = |keyring: &str, log: &str, extra: &[&str]| {
        let (keys_path, log_path) = (dir.join("keys.json"), dir.join("audit.log"));
        std::fs::write(&keys_path, keyring).unwrap();
        std::fs::write(&log_path, log).unwrap();
        let mut args = vec!["audit", "verify", "--keyring", keys_path.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(log_path.to_str().unwrap());
        eventseal(&args)
    };

    // A chain written without an audit key only detects accidental damage: refused unless allowed.
    let unkeyed = records(&Keyring::from_jwks(r#"{"keys":[]}"#).unwrap());
    let keyring = format!("{{\"keys\":[{audit_1}]}}");
    let refused = verify(&keyring, &unkeyed, &[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(err.contains("unkeyed") || err.contains("without an audit key"), "{err}");
    assert!(stdout(&verify(&keyring, &unkeyed, &["--allow-unkeyed"])).contains("3 records"));

    // A keyed chain checked with a keyring that lacks its key is refused, naming the key.
    let keyed = records(&Keyring::from_jwks(&keyring).unwrap());
    assert!(stdout(&verify(&keyring, &keyed, &[])).contains("3 records"));
    let other = format!("{{\"keys\":[{audit_2}]}}");
    for extra in [&[][..], &["--allow-unkeyed"]] {
        let missing = verify(&other, &keyed, extra);
        assert!(!missing.status.success(), "{extra:?}");
        let err = String::from_utf8_lossy(&missing.stderr).into_owned();
        assert!(err.contains("audit-1"), "{err}");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["keys", "--help"],
        &["keys", "generate", "--help"],
        &["keys", "rotate", "--help"],
        &["keys", "public", "--help"],
        &["reseal", "--help"],
        &["audit", "verify", "--help"],
        &["audit", "--help"],
        &["seal", "--help"],
        &["open", "--help"],
        &["verify", "--help"],
        &["sign", "--help"],
        &["demo", "--help"],
    ] {
        let out = stdout(&eventseal(args));
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    let sign = stdout(&eventseal(&["sign", "--help"]));
    assert!(sign.contains("does not go through the filter"), "{sign}");
}

#[test]
fn demo_seals_then_opens_per_reader() {
    let out = stdout(&eventseal(&["demo"]));
    let sections: Vec<&str> = out.split("== ").filter(|s| !s.is_empty()).collect();
    assert_eq!(sections.len(), 3, "{out}");
    let body = |section: &str| -> serde_json::Value { serde_json::from_str(section.split_once('\n').unwrap().1).unwrap() };
    let (sealed, billing, support) = (body(sections[0]), body(sections[1]), body(sections[2]));
    assert!(
        !sections[0].contains("4111 1111") && !sections[0].contains("zoe@example.test"),
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

/// The demo's policy, keyring and event, as files an operator would pass.
fn demo_file(name: &str) -> String {
    format!("{}/../../examples/demo/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `eventseal seal` of the event file `event` with the demo policy and keyring, on
/// `POST /events/orders`.
fn seal_with_demo_policy(event: &str) -> Output {
    let (policy, keys) = (demo_file("policy.json"), demo_file("keys.json"));
    eventseal(&["seal", "--policy", &policy, "--keyring", &keys, "--path", "/events/orders", event])
}

/// The demo order sealed by `eventseal seal` with the demo policy and keyring.
fn sealed_demo_order() -> String {
    stdout(&seal_with_demo_policy(&demo_file("order.json")))
}

fn fails_with_one_line(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "one clear line: {err:?}");
    err
}

#[test]
fn seal_then_open_per_reader_through_the_filter() {
    let dir = temp_dir("seal-open");
    let (policy, keys) = (demo_file("policy.json"), demo_file("keys.json"));
    let sealed = sealed_demo_order();
    assert!(!sealed.contains("4111 1111") && !sealed.contains("zoe@example.test"), "{sealed}");
    let sealed_json: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    assert!(sealed_json["data"]["card"].as_str().unwrap().starts_with("eyJ"));
    let sealed_path = dir.join("sealed.json");
    std::fs::write(&sealed_path, &sealed).unwrap();
    let sealed_arg = sealed_path.to_str().unwrap();
    let open = |reader: &str| {
        eventseal(&[
            "open",
            "--policy",
            &policy,
            "--keyring",
            &keys,
            "--method",
            "GET",
            "--path",
            "/events/orders/ord-2041",
            "--principal",
            reader,
            sealed_arg,
        ])
    };
    let original: serde_json::Value = serde_json::from_str(include_str!("../../../examples/demo/order.json")).unwrap();
    let billing: serde_json::Value = serde_json::from_str(&stdout(&open("billing"))).unwrap();
    assert_eq!(
        billing, original,
        "billing opens every field (the rule applies to responses: the default direction)"
    );
    let support: serde_json::Value = serde_json::from_str(&stdout(&open("support"))).unwrap();
    assert_eq!(
        support["data"]["card"], sealed_json["data"]["card"],
        "support may not open the card"
    );
    assert_eq!(support["data"]["customer"], original["data"]["customer"]);
    let stranger: serde_json::Value = serde_json::from_str(&stdout(&open("stranger"))).unwrap();
    assert_eq!(stranger, sealed_json, "default deny: nothing opens");

    let wrong_direction = eventseal(&[
        "open",
        "--policy",
        &policy,
        "--keyring",
        &keys,
        "--method",
        "GET",
        "--path",
        "/events/orders/x",
        "--direction",
        "request",
        sealed_arg,
    ]);
    assert!(fails_with_one_line(&wrong_direction).contains("does not apply to request bodies"));
    let not_a_sealing_rule = eventseal(&[
        "seal",
        "--policy",
        &policy,
        "--keyring",
        &keys,
        "--method",
        "GET",
        "--path",
        "/events/orders/x",
        sealed_arg,
    ]);
    assert!(fails_with_one_line(&not_a_sealing_rule).contains("never seals"));
}

#[test]
fn a_refusal_prints_the_problem_and_never_the_plaintext() {
    let dir = temp_dir("refusal");
    let secret = "PLANTED-SECRET-5e0c";
    // No "type": the context value is missing, so the event is refused, not sealed.
    let event = dir.join("untyped.json");
    std::fs::write(
        &event,
        format!(r#"{{"data":{{"card":"{secret}","customer":{{"email":"{secret}"}}}}}}"#),
    )
    .unwrap();
    let out = seal_with_demo_policy(event.to_str().unwrap());
    let err = fails_with_one_line(&out);
    let problem: serde_json::Value = serde_json::from_str(&err).expect("stderr is the problem+json");
    assert_eq!(problem["type"], "urn:eventseal:problem:context-missing");
    assert_eq!(problem["status"], 400);
    assert!(out.stdout.is_empty());
    assert!(!err.contains(secret), "{err}");

    // A tampered envelope in a response: Envoy would reset the stream; the CLI says why.
    let (policy, keys) = (demo_file("policy.json"), demo_file("keys.json"));
    let sealed = sealed_demo_order();
    let mut tampered: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let card = tampered["data"]["card"].as_str().unwrap().to_owned();
    tampered["data"]["card"] = serde_json::Value::String(card.replacen("eyJ", "eyK", 1));
    let path = dir.join("tampered.json");
    std::fs::write(&path, tampered.to_string()).unwrap();
    let out = eventseal(&[
        "open",
        "--policy",
        &policy,
        "--keyring",
        &keys,
        "--method",
        "GET",
        "--path",
        "/events/orders/x",
        "--principal",
        "billing",
        path.to_str().unwrap(),
    ]);
    let err = fails_with_one_line(&out);
    assert!(err.contains("reset the stream") && err.contains("sealed-field-rejected"), "{err}");
    assert!(!err.contains("4111 1111"), "{err}");
}

/// The reported fail-open, as the user ran it: a lone surrogate escape in a nested member
/// name made the filter forward the selected fields in plaintext. Now refused, 400.
#[test]
fn a_lone_surrogate_in_a_nested_member_name_is_refused_not_forwarded_in_plaintext() {
    let dir = temp_dir("lone-surrogate");
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"keys":{"env":"EVENTSEAL_KEYS"},"rules":[{"name":"in","match":{"methods":["POST"],"path":"/in"},
  "context":{"type":{"body":"/type"}},"seal":{"fields":["/data/card","/data/email","/data/items/*/price"]}}]}"#,
    )
    .unwrap();
    let events = [
        r#"{"type":"t.created","data":{"car\ud800d":{"pan":"4000123412341234"},"email":"zed@example.test","items":[{"price":1}]}}"#,
        r#"{"type":"t.created","data":{"items":[{"p\ud800":1,"price":5}],"card":"4000123412341234"}}"#,
    ];
    for (i, event) in events.iter().enumerate() {
        let path = dir.join(format!("{i}.json"));
        std::fs::write(&path, event).unwrap();
        let out = eventseal(&[
            "seal",
            "--policy",
            policy.to_str().unwrap(),
            "--keyring",
            &demo_file("keys.json"),
            "--path",
            "/in",
            "-H",
            "content-type: application/json",
            path.to_str().unwrap(),
        ]);
        let err = fails_with_one_line(&out);
        let problem: serde_json::Value = serde_json::from_str(&err).expect("stderr is the problem+json");
        assert_eq!(
            (problem["type"].as_str(), problem["status"].as_u64()),
            (Some("urn:eventseal:problem:malformed-json"), Some(400)),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "nothing is forwarded");
        assert!(!err.contains("4000123412341234") && !err.contains("zed@"), "{err}");
    }
}

/// The body of [`verify_policy_and_event`]'s event.
const HOOK_BODY: &str = r#"{"type":"invoice.paid","id":"inv-1"}"#;

/// A policy that verifies signatures on `/hooks`, and an event ([`HOOK_BODY`]), in `dir`.
fn verify_policy_and_event(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (policy, event) = (dir.join("policy.json"), dir.join("event.json"));
    std::fs::write(
        &policy,
        r#"{"rules": [{"name": "hooks", "match": {"path": "/hooks"}, "verify": true}]}"#,
    )
    .unwrap();
    std::fs::write(&event, HOOK_BODY).unwrap();
    (policy, event)
}

#[test]
fn sign_then_verify_through_the_filter() {
    let dir = temp_dir("sign-verify");
    let jwk = stdout(&eventseal(&["keys", "generate", "--purpose", "sign", "--kid", "hooks-1"]));
    let keys = dir.join("keys.json");
    std::fs::write(&keys, format!("{{\"keys\":[{jwk}]}}")).unwrap();
    let (policy, event) = verify_policy_and_event(&dir);
    let (keys, policy, event) = (keys.to_str().unwrap(), policy.to_str().unwrap(), event.to_str().unwrap());

    let lines = stdout(&eventseal(&["sign", "--keyring", keys, "--id", "msg_1", event]));
    let headers: Vec<&str> = lines.lines().collect();
    assert_eq!(headers.len(), 3, "{lines}");
    assert_eq!(headers[0], "webhook-id: msg_1");
    assert!(
        headers[1].starts_with("webhook-timestamp: ") && headers[2].starts_with("webhook-signature: v1,"),
        "{lines}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&eventseal(&["sign", "--keyring", keys, "--json", event]))).unwrap();
    assert!(json["webhook-id"].as_str().unwrap().starts_with("msg_"));
    assert!(json["webhook-signature"].as_str().unwrap().starts_with("v1,"));

    let verify = |event: &str| {
        let mut args = vec!["verify", "--policy", policy, "--keyring", keys, "--path", "/hooks"];
        for h in &headers {
            args.extend(["-H", h]);
        }
        args.push(event);
        eventseal(&args)
    };
    assert_eq!(stdout(&verify(event)).trim_end(), HOOK_BODY, "a verified event passes unchanged");
    let forged = dir.join("forged.json");
    std::fs::write(&forged, HOOK_BODY.replace("inv-1", "inv-2")).unwrap();
    let err = fails_with_one_line(&verify(forged.to_str().unwrap()));
    let problem: serde_json::Value = serde_json::from_str(&err).unwrap();
    assert_eq!(
        (problem["status"].as_u64(), problem["type"].as_str()),
        (Some(401), Some("urn:eventseal:problem:signature-invalid"))
    );
    let unsigned = eventseal(&["verify", "--policy", policy, "--keyring", keys, "--path", "/hooks", event]);
    assert!(fails_with_one_line(&unsigned).contains("signature-missing"));

    // Without a signing key there is nothing to sign with.
    let seal_only = dir.join("seal-only.json");
    std::fs::write(&seal_only, std::fs::read_to_string(demo_file("keys.json")).unwrap()).unwrap();
    let err = fails_with_one_line(&eventseal(&["sign", "--keyring", seal_only.to_str().unwrap(), event]));
    assert!(err.contains("no primary signing key"), "{err}");
}

#[test]
fn bad_arguments_are_one_clear_line() {
    let dir = temp_dir("bad-args");
    let (policy, keys) = (demo_file("policy.json"), demo_file("keys.json"));
    let order = demo_file("order.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["seal", "--policy", "/nonexistent/p.json", "--keyring", &keys, &order],
            "cannot read /nonexistent/p.json",
        ),
        (
            vec!["seal", "--policy", &policy, "--keyring", &keys, "--path", "/elsewhere", &order],
            "no rule of the policy matches POST /elsewhere",
        ),
        (
            vec!["seal", "--policy", &policy, "--keyring", &keys, "-H", "no-colon", &order],
            "is not 'name: value'",
        ),
        (
            vec!["open", "--policy", &policy, "--keyring", &keys, "--claims", "{}", &order],
            "--claims needs",
        ),
    ];
    for (args, expected) in cases {
        let err = fails_with_one_line(&eventseal(&args));
        assert!(err.starts_with("eventseal: ") && err.contains(expected), "{args:?}: {err}");
    }
    let bad_policy = dir.join("policy.json");
    std::fs::write(&bad_policy, r#"{"rules": [{"name": "r", "seal": {"fields": ["card"]}}]}"#).unwrap();
    let err = fails_with_one_line(&eventseal(&[
        "seal",
        "--policy",
        bad_policy.to_str().unwrap(),
        "--keyring",
        &keys,
        &order,
    ]));
    assert!(err.contains("/rules/0/seal/fields/0"), "{err}");
}

/// A proxy log written by the filter itself, through the harness, as Envoy would write it.
fn filter_audit_log(dir: &std::path::Path) -> (PathBuf, PathBuf, Vec<String>) {
    use eventseal_harness::{Headers, PluginConfig};
    let keys = serde_json::json!({"keys": [
        {"kty": "oct", "kid": "k1", "alg": "A256GCM", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "status": "primary"},
        {"kty": "oct", "kid": "a1", "alg": "HS256", "use": "audit", "k": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8", "status": "primary"},
    ]});
    let policy = serde_json::json!({
        "principal": {"source": "header", "header": "x-client"},
        "rules": [
            {"name": "publish", "match": {"methods": ["POST"], "path": "/orders"}, "producers": ["shop-*"], "seal": {"fields": ["/card"]}},
            {"name": "read", "match": {"methods": ["GET"], "path": "/orders"}, "apply_to": "response",
             "open": {"fields": ["/card"], "readers": ["billing"]}}
        ]
    });
    // The CLI's own filter (precompiled), not compiled again here.
    let plugin = eventseal::embedded::filter_module()
        .unwrap()
        .plugin(
            PluginConfig::new()
                .configuration(policy.to_string())
                .env("EVENTSEAL_KEYS", keys.to_string()),
        )
        .unwrap();
    let send = |method: &str, client: &str, body: Option<&str>, response: Option<&str>| {
        let headers: Headers = [
            (":method", method),
            (":path", "/orders"),
            (":authority", "gateway.example"),
            ("content-type", "application/json"),
            ("x-client", client),
        ]
        .into();
        let mut exchange =
            eventseal_harness::HttpExchange::new(headers).response_headers([(":status", "200"), ("content-type", "application/json")]);
        if let Some(body) = body {
            exchange = exchange.request_body(body);
        }
        if let Some(response) = response {
            exchange = exchange.response_body(response);
        }
        plugin.run_http(exchange).unwrap()
    };
    let card = r#"{"id":"e1","card":"4111 1111 1111 1111"}"#;
    let sealed = send("POST", "shop-1", Some(card), None).forwarded_request().unwrap().body_text();
    send("POST", "mailer", Some(card), None); // producer refused
    send("GET", "billing", None, Some(&sealed)); // opened
    send("GET", "support", None, Some(&sealed)); // withheld
    send("POST", "shop-2", Some("{not json"), None); // refused: malformed
    send("POST", "shop-3", Some(card), None); // sealed
    let lines: Vec<String> = plugin
        .logs()
        .into_iter()
        .map(|l| format!("[2026-11-23 19:00:00.000][17][info][wasm] wasm log eventseal: {}", l.message))
        .collect();
    let keys_path = dir.join("keys.json");
    std::fs::write(&keys_path, keys.to_string()).unwrap();
    (dir.join("envoy.log"), keys_path, lines)
}

#[test]
fn audit_verify_accepts_the_filters_log_and_names_the_first_broken_link() {
    let dir = temp_dir("filter-audit");
    let (log, keys, lines) = filter_audit_log(&dir);
    let records: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains("{\"audit\":1,")).collect();
    assert_eq!(records.len(), 6, "one record per decision: {lines:#?}");
    assert!(!lines.concat().contains("4111 1111"), "no plaintext in the log");
    let verify = |lines: &[String]| {
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        eventseal(&["audit", "verify", "--keyring", keys.to_str().unwrap(), log.to_str().unwrap()])
    };
    assert!(stdout(&verify(&lines)).contains("ok: 6 records in 1 chain(s)"));

    // One record deleted: the next record is the first broken link.
    let mut deleted = lines.clone();
    deleted.remove(records[2]);
    let err = fails_with_one_line(&verify(&deleted));
    assert!(
        err.contains(&format!("line {}: sequence 3 where 2 was expected", records[3])),
        "{err}"
    );

    // Two records swapped.
    let mut swapped = lines.clone();
    swapped.swap(records[1], records[2]);
    let err = fails_with_one_line(&verify(&swapped));
    assert!(
        err.contains(&format!("line {}: sequence 2 where 1 was expected", records[1] + 1)),
        "{err}"
    );

    // One field edited: the refused producer becomes allowed.
    let mut edited = lines.clone();
    assert!(edited[records[1]].contains("\"outcome\":\"refused\""));
    edited[records[1]] = edited[records[1]].replace("\"outcome\":\"refused\"", "\"outcome\":\"allowed\"");
    let err = fails_with_one_line(&verify(&edited));
    assert!(err.contains(&format!("line {}: record was modified", records[1] + 1)), "{err}");
}

#[test]
fn ed25519_keys_sign_v1a_and_their_public_half_verifies_it_through_the_filter() {
    let dir = temp_dir("ed25519");
    let private = stdout(&eventseal(&[
        "keys",
        "generate",
        "--purpose",
        "sign",
        "--alg",
        "ed25519",
        "--kid",
        "hooks-ed",
    ]));
    let jwk: serde_json::Value = serde_json::from_str(&private).unwrap();
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert!(jwk["d"].is_string() && jwk["x"].is_string(), "{private}");
    let key_file = dir.join("private.json");
    std::fs::write(&key_file, &private).unwrap();
    let public = stdout(&eventseal(&["keys", "public", key_file.to_str().unwrap()]));
    let public_jwk: serde_json::Value = serde_json::from_str(&public).unwrap();
    assert_eq!(public_jwk["x"], jwk["x"]);
    assert!(
        public_jwk.get("d").is_none() && !public.contains(jwk["d"].as_str().unwrap()),
        "{public}"
    );
    // A symmetric key has no public half.
    let hs = dir.join("hs.json");
    std::fs::write(&hs, stdout(&eventseal(&["keys", "generate", "--purpose", "sign", "--kid", "h"]))).unwrap();
    assert!(fails_with_one_line(&eventseal(&["keys", "public", hs.to_str().unwrap()])).contains("no public half"));

    let (signer, verifier, hmac_only) = (dir.join("signer.json"), dir.join("verifier.json"), dir.join("hmac.json"));
    std::fs::write(&signer, format!("{{\"keys\":[{private}]}}")).unwrap();
    std::fs::write(&verifier, format!("{{\"keys\":[{public}]}}")).unwrap();
    std::fs::write(&hmac_only, format!("{{\"keys\":[{}]}}", std::fs::read_to_string(&hs).unwrap())).unwrap();
    let (policy, event) = verify_policy_and_event(&dir);
    let (policy, event) = (policy.to_str().unwrap(), event.to_str().unwrap());

    let lines = stdout(&eventseal(&["sign", "--keyring", signer.to_str().unwrap(), "--id", "msg_1", event]));
    let headers: Vec<&str> = lines.lines().collect();
    assert!(headers[2].starts_with("webhook-signature: v1a,"), "{lines}");
    let verify = |keys: &PathBuf, event: &str| {
        let mut args = vec![
            "verify",
            "--policy",
            policy,
            "--keyring",
            keys.to_str().unwrap(),
            "--path",
            "/hooks",
        ];
        for h in &headers {
            args.extend(["-H", h]);
        }
        args.push(event);
        eventseal(&args)
    };
    assert_eq!(stdout(&verify(&verifier, event)).trim_end(), HOOK_BODY, "the public key verifies");
    let problem = |out: &Output| -> serde_json::Value { serde_json::from_str(&fails_with_one_line(out)).unwrap() };
    let forged = dir.join("forged.json");
    std::fs::write(&forged, HOOK_BODY.replace("inv-1", "inv-2")).unwrap();
    let tampered = problem(&verify(&verifier, forged.to_str().unwrap()));
    assert_eq!(tampered["type"], "urn:eventseal:problem:signature-invalid");
    assert_eq!(tampered["detail"], "no valid signature");
    let unchecked = problem(&verify(&hmac_only, event));
    assert_eq!(unchecked["type"], "urn:eventseal:problem:signature-invalid");
    assert!(
        unchecked["detail"]
            .as_str()
            .unwrap()
            .contains("no signature this keyring can check"),
        "{unchecked}"
    );
    // A verifier's keyring cannot sign.
    let err = fails_with_one_line(&eventseal(&["sign", "--keyring", verifier.to_str().unwrap(), event]));
    assert!(err.contains("no primary signing key that can sign"), "{err}");
}

/// A keyring mid-rotation: `k-new` primary, `k-old` retired, `k-gone` disabled.
const RESEAL_KEYS: &str = r#"{"keys": [
    {"kty": "oct", "kid": "k-new", "alg": "A256GCM", "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "status": "primary"},
    {"kty": "oct", "kid": "k-old", "alg": "A256GCM", "k": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8", "status": "retired"},
    {"kty": "oct", "kid": "k-gone", "alg": "A256GCM", "k": "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8", "status": "disabled"}
]}"#;

/// An envelope of `value` at `pointer` under `kid` (a key of [`RESEAL_KEYS`], or any other
/// kid for a key the keyring does not have).
fn sealed_under(kid: &str, pointer: &str, value: &serde_json::Value) -> String {
    let all: serde_json::Value = serde_json::from_str(RESEAL_KEYS).unwrap();
    let k = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kid"] == kid)
        .map_or("YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8", |j| j["k"].as_str().unwrap());
    let only = Keyring::from_jwks(&format!(
        r#"{{"keys":[{{"kty":"oct","kid":"{kid}","alg":"A256GCM","k":"{k}","status":"primary"}}]}}"#
    ))
    .unwrap();
    let context: eventseal_core::Context = [("type", "order.created")].into_iter().collect();
    eventseal_core::seal_value(&only, pointer, &context, value).unwrap().0
}

/// The kid in an envelope's protected header.
fn kid_of(envelope: &str) -> String {
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(envelope.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An event with odd spacing and member order, so a rewrite would show.
fn reseal_event(card: &str, email: &str) -> String {
    format!(
        "{{\n  \"type\":  \"order.created\",\n  \"data\": {{\"card\": \"{card}\",   \"note\": \"keep  me\", \"amount\": 1.50,\n    \"email\":\"{email}\"}}\n}}\n"
    )
}

fn reseal(dir: &std::path::Path, event: &str, extra: &[&str]) -> (Output, PathBuf) {
    let (keys, file) = (dir.join("keys.json"), dir.join("event.json"));
    std::fs::write(&keys, RESEAL_KEYS).unwrap();
    std::fs::write(&file, event).unwrap();
    let mut args = vec!["reseal", "--keyring", keys.to_str().unwrap()];
    args.extend(extra);
    args.push(file.to_str().unwrap());
    (eventseal(&args), file)
}

#[test]
fn reseal_moves_a_retired_envelope_to_the_primary_and_touches_nothing_else() {
    let dir = temp_dir("reseal-moves");
    let card = sealed_under("k-old", "/data/card", &serde_json::json!("4111 1111 1111 1111"));
    let email = sealed_under("k-new", "/data/email", &serde_json::json!("ada@example.org"));
    let event = reseal_event(&card, &email);
    let (out, _) = reseal(&dir, &event, &[]);
    let printed = stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("moved /data/card: k-old -> k-new"), "{err}");
    assert!(
        err.contains("resealed 1 envelope(s); 1 already under keys in service; 0 could not be moved"),
        "{err}"
    );
    let value: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let new_card = value["data"]["card"].as_str().unwrap();
    assert_eq!(kid_of(new_card), "k-new");
    // Byte for byte the same event, but for the one envelope.
    assert_eq!(printed, event.replace(&card, new_card));
    // It opens under the primary, for the same field and context.
    let ring = Keyring::from_jwks(RESEAL_KEYS).unwrap();
    let context: eventseal_core::Context = [("type", "order.created")].into_iter().collect();
    let (opened, kid) = eventseal_core::open_value(&ring, "/data/card", &context, new_card).unwrap();
    assert_eq!((opened, kid.as_str()), (serde_json::json!("4111 1111 1111 1111"), "k-new"));
    assert!(
        !err.contains("4111 1111") && !printed.contains("4111 1111"),
        "no plaintext anywhere"
    );
}

#[test]
fn reseal_leaves_envelopes_under_keys_in_service_alone() {
    let dir = temp_dir("reseal-current");
    let card = sealed_under("k-new", "/data/card", &serde_json::json!({"n": "4111"}));
    let email = sealed_under("k-new", "/data/email", &serde_json::json!("ada@example.org"));
    let event = reseal_event(&card, &email);
    let (out, file) = reseal(&dir, &event, &["--in-place"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), event, "the file is untouched");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resealed 0 envelope(s); 2 already under keys in service"), "{err}");
}

#[test]
fn reseal_reports_unknown_and_disabled_keys_and_fails() {
    let dir = temp_dir("reseal-refused");
    for (kid, reason) in [("k-gone", "key k-gone is disabled"), ("k-elsewhere", "unknown key k-elsewhere")] {
        let card = sealed_under(kid, "/data/card", &serde_json::json!("4111 1111 1111 1111"));
        let email = sealed_under("k-old", "/data/email", &serde_json::json!("ada@example.org"));
        let event = reseal_event(&card, &email);
        let (out, file) = reseal(&dir, &event, &["--in-place"]);
        assert!(!out.status.success(), "{kid}: must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("not moved /data/card: {reason}")), "{err}");
        assert!(err.contains("moved /data/email: k-old -> k-new"), "{err}");
        assert!(
            err.lines()
                .last()
                .unwrap()
                .starts_with("eventseal: 1 envelope(s) could not be moved"),
            "{err}"
        );
        // What could be moved is written; the refused envelope and everything else stay.
        let written = std::fs::read_to_string(&file).unwrap();
        let value: serde_json::Value = serde_json::from_str(&written).unwrap();
        let new_email = value["data"]["email"].as_str().unwrap();
        assert_eq!(kid_of(new_email), "k-new");
        assert_eq!(written, event.replace(&email, new_email), "{kid}");
    }
}
