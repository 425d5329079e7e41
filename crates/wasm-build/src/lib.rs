//! Building cdylib packages for wasm from a build script (std only).
//!
//! A test that loads the `.wasm` a package ships must build that package for its wasm
//! target first. Doing it from a build script with a nested `cargo build` needs care: the
//! nested cargo must use its own target directory (the outer one is locked while build
//! scripts run) and must not inherit the outer build's flags. [`wasm_package`] does that
//! and returns the artifact's path; [`WasmBuild`] is the configurable form.
//!
//! Most build scripts want one of the two artifacts eventseal ships, and hand its path to
//! the crate as an environment variable; each is one call:
//!
//! ```no_run
//! // in main() of the build.rs of a crate whose tests load plugin/'s wasm
//! // ([build-dependencies] eventseal-wasm-build = { path = "..." })
//! eventseal_wasm_build::shipped_filter(); // env!("EVENTSEAL_PROXY_WASM") in the crate
//! ```
//!
//! The build also prints `cargo:rerun-if-changed` for every source file that went into
//! the artifact (read from cargo's dep-info file), for the manifest, the lock file and the
//! workspace's `.cargo/config.toml`, so the outer build script reruns exactly when the
//! wasm would change.
//!
//! This crate depends on nothing but `std`, so a build dependency on it costs nothing.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a wasm build failed.
#[derive(Debug)]
pub struct BuildError {
    message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

fn error(message: impl Into<String>) -> BuildError {
    BuildError { message: message.into() }
}

/// The eventseal workspace (where this crate lives: `crates/wasm-build`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a build script says when it cannot build a shipped artifact.
const SETUP_HINT: &str = "The wasm targets may be missing: run scripts/setup (it runs `rustup target add wasm32-wasip1 wasm32-wasip2`).";

/// Builds one shipped artifact and hands its path to the crate being built as `variable`.
fn shipped(package: &str, target: &str, variable: &str) -> PathBuf {
    let wasm = wasm_package(workspace(), package, target).unwrap_or_else(|e| panic!("{e}\n{SETUP_HINT}"));
    println!("cargo:rustc-env={variable}={}", wasm.display());
    wasm
}

/// Builds the filter exactly as it ships (`eventseal-proxy-wasm`, release, wasm32-wasip1)
/// and hands its path to the crate being built as `EVENTSEAL_PROXY_WASM`
/// (`env!("EVENTSEAL_PROXY_WASM")`). For build scripts only.
///
/// # Panics
///
/// When the build fails: a build script reports its failure by panicking, and the message
/// has cargo's output.
pub fn shipped_filter() -> PathBuf {
    shipped("eventseal-proxy-wasm", "wasm32-wasip1", "EVENTSEAL_PROXY_WASM")
}

/// Builds the component exactly as it ships (`eventseal-component`, release,
/// wasm32-wasip2) and hands its path to the crate being built as
/// `EVENTSEAL_COMPONENT_WASM`. For build scripts only.
///
/// # Panics
///
/// When the build fails, with cargo's output.
pub fn shipped_component() -> PathBuf {
    shipped("eventseal-component", "wasm32-wasip2", "EVENTSEAL_COMPONENT_WASM")
}

/// Builds one cdylib `package` of the workspace (or package) at `manifest_dir` for
/// `target` in the release profile, and returns the path of its `.wasm`.
///
/// # Errors
///
/// When cargo fails (the message includes its output) or the artifact is missing.
pub fn wasm_package(manifest_dir: impl AsRef<Path>, package: &str, target: &str) -> Result<PathBuf, BuildError> {
    let mut paths = WasmBuild::new(manifest_dir).package(package).target(target).build()?;
    paths.pop().ok_or_else(|| error("no artifact"))
}

/// A nested `cargo build` of cdylib packages for a wasm target.
#[derive(Debug, Clone)]
pub struct WasmBuild {
    manifest_dir: PathBuf,
    packages: Vec<String>,
    target: String,
    profile: String,
    features: Vec<String>,
    target_dir: Option<PathBuf>,
    rerun_if_changed: bool,
    locked: bool,
}

/// Environment variables of the outer build that must not leak into the nested one.
const OUTER_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "__CARGO_FIX_PLZ",
];

impl WasmBuild {
    /// A build of packages of the workspace (or package) whose `Cargo.toml` is in
    /// `manifest_dir`, for `wasm32-wasip1`, release profile.
    pub fn new(manifest_dir: impl AsRef<Path>) -> WasmBuild {
        WasmBuild {
            manifest_dir: manifest_dir.as_ref().to_path_buf(),
            packages: Vec::new(),
            target: "wasm32-wasip1".to_owned(),
            profile: "release".to_owned(),
            features: Vec::new(),
            target_dir: None,
            rerun_if_changed: true,
            locked: true,
        }
    }

    /// Adds a package to build (its library must be a `cdylib` named after the package).
    pub fn package(mut self, package: impl Into<String>) -> WasmBuild {
        self.packages.push(package.into());
        self
    }

    /// The target triple (default `wasm32-wasip1`).
    pub fn target(mut self, target: impl Into<String>) -> WasmBuild {
        self.target = target.into();
        self
    }

    /// The cargo profile (default `release`, so the tested wasm is the shipped one).
    pub fn profile(mut self, profile: impl Into<String>) -> WasmBuild {
        self.profile = profile.into();
        self
    }

    /// Enables a cargo feature of the packages.
    pub fn feature(mut self, feature: impl Into<String>) -> WasmBuild {
        self.features.push(feature.into());
        self
    }

    /// The nested target directory (default: `wasm-target` inside the outer build's
    /// profile directory, derived from `OUT_DIR`; else `target/wasm-target` of the
    /// manifest directory).
    pub fn target_dir(mut self, dir: impl AsRef<Path>) -> WasmBuild {
        self.target_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Whether cargo must build exactly what `Cargo.lock` pins (`--locked`, default true),
    /// so that the tested wasm has the dependencies the shipped one has.
    pub fn locked(mut self, locked: bool) -> WasmBuild {
        self.locked = locked;
        self
    }

    /// Whether to print `cargo:rerun-if-changed` lines (default true).
    pub fn rerun_if_changed(mut self, emit: bool) -> WasmBuild {
        self.rerun_if_changed = emit;
        self
    }

    fn default_target_dir(&self) -> PathBuf {
        if let Some(out_dir) = std::env::var_os("OUT_DIR") {
            let out_dir = PathBuf::from(out_dir);
            if let Some(profile_dir) = out_dir
                .ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "build"))
                .and_then(Path::parent)
            {
                return profile_dir.join("wasm-target");
            }
        }
        self.manifest_dir.join("target").join("wasm-target")
    }

    /// Runs the build and returns the artifacts' paths, in the order the packages were
    /// added.
    ///
    /// # Errors
    ///
    /// When cargo cannot be run or fails (the message includes its output), or an
    /// artifact is missing.
    pub fn build(&self) -> Result<Vec<PathBuf>, BuildError> {
        if self.packages.is_empty() {
            return Err(error("no package to build"));
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        let target_dir = self.target_dir.clone().unwrap_or_else(|| self.default_target_dir());
        let manifest = self.manifest_dir.join("Cargo.toml");
        let mut command = Command::new(&cargo);
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target")
            .arg(&self.target);
        command.arg("--profile").arg(&self.profile);
        if self.locked {
            command.arg("--locked");
        }
        for package in &self.packages {
            command.arg("--package").arg(package);
        }
        if !self.features.is_empty() {
            command.arg("--features").arg(self.features.join(","));
        }
        for name in OUTER_ENV {
            command.env_remove(name);
        }
        command.env("CARGO_TARGET_DIR", &target_dir);
        let output = command
            .output()
            .map_err(|e| error(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;
        if !output.status.success() {
            return Err(error(format!(
                "`cargo build` of {} for {} failed ({}):\n{}",
                self.packages.join(", "),
                self.target,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let profile_dir = match self.profile.as_str() {
            "dev" | "test" => "debug",
            "bench" => "release",
            other => other,
        };
        let artifacts_dir = target_dir.join(&self.target).join(profile_dir);
        let mut artifacts = Vec::new();
        for package in &self.packages {
            let stem = package.replace('-', "_");
            let wasm = artifacts_dir.join(format!("{stem}.wasm"));
            if !wasm.is_file() {
                return Err(error(format!("{} was not produced (is {package} a cdylib?)", wasm.display())));
            }
            if self.rerun_if_changed {
                print_rerun_lines(&artifacts_dir.join(format!("{stem}.d")));
            }
            artifacts.push(wasm);
        }
        if self.rerun_if_changed {
            println!("cargo:rerun-if-changed={}", manifest.display());
            // The lock pins the dependencies; the cargo configuration holds the wasm
            // target's flags (`+simd128`), which change the artifact as much as a source.
            for file in [
                self.manifest_dir.join("Cargo.lock"),
                self.manifest_dir.join(".cargo").join("config.toml"),
            ] {
                if file.is_file() {
                    println!("cargo:rerun-if-changed={}", file.display());
                }
            }
        }
        Ok(artifacts)
    }
}

/// Prints a `rerun-if-changed` line for every local source file in a dep-info file.
fn print_rerun_lines(dep_info: &Path) {
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return;
    };
    let registry = std::env::var_os("CARGO_HOME").map(PathBuf::from);
    for path in dep_info_paths(&text) {
        let path = PathBuf::from(path);
        if registry.as_ref().is_some_and(|home| path.starts_with(home)) || path.components().any(|c| c.as_os_str() == ".cargo") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The prerequisites of a Makefile-style dep-info file (`target: dep dep ...`, with spaces
/// in paths escaped as `\ `).
fn dep_info_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&' ') => {
                    current.push(' ');
                    chars.next();
                }
                ' ' => {
                    if !current.is_empty() {
                        paths.push(std::mem::take(&mut current));
                    }
                }
                _ => current.push(c),
            }
        }
        if !current.is_empty() {
            paths.push(current);
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_paths_unescape_spaces() {
        let text = "/t/x.wasm: /src/a.rs /src/my\\ file.rs\n\n/src/a.rs:\n";
        assert_eq!(dep_info_paths(text), ["/src/a.rs", "/src/my file.rs"]);
    }
}
