//! Builds the guest programs in `guests/` for wasm32-wasip1 with the workspace's wasm
//! build helper, hands their paths to the tests as constants, and fails the build when a guest
//! has no test that names its constant.

use std::path::Path;

use eventseal_wasm_build::WasmBuild;

const GUESTS: &[&str] = &["probe", "filter", "tcp"];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let manifest_dir = Path::new(&manifest_dir);
    let guests = manifest_dir.join("guests");
    let mut build = WasmBuild::new(&guests);
    for guest in GUESTS {
        build = build.package(*guest);
    }
    let artifacts = build.build().unwrap_or_else(|e| panic!("building the guest programs failed: {e}"));

    let tests_dir = manifest_dir.join("..").join("tests");
    println!("cargo:rerun-if-changed={}", tests_dir.display());
    let tests = read_tree(&tests_dir);
    let mut constants = String::new();
    for (guest, wasm) in GUESTS.iter().zip(artifacts) {
        let constant = format!("{}_WASM", guest.to_ascii_uppercase());
        assert!(
            tests.contains(&constant),
            "guest `{guest}` has no test: no file under host-harness/tests names {constant}"
        );
        constants.push_str(&format!(
            "/// The `{guest}` guest program, built for wasm32-wasip1.\npub const {constant}: &str = {:?};\n",
            wasm.display().to_string()
        ));
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(&out, constants).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

fn read_tree(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                text.push_str(&read_tree(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}
