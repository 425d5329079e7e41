//! The benchmark scripts parse (nothing is measured here: benchmarks never run in tests).

use std::path::Path;
use std::process::Command;

fn check(program: &str, args: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (needed to check the benchmark scripts): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn envoy_load_script_parses() {
    check("bash", &["-n", "envoy-load.sh"]);
}

#[test]
fn nats_load_script_parses() {
    check("bash", &["-n", "nats-load.sh"]);
}

#[test]
fn python_alternatives_script_parses() {
    check(
        "python3",
        &[
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read())",
            "python-alternatives.py",
        ],
    );
}

#[test]
fn soak_script_parses() {
    check("bash", &["-n", "soak.sh"]);
}
