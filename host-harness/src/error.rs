//! The harness's error type.

use std::fmt;

use crate::log::LogLine;

/// Why the harness could not do what a test asked.
///
/// Guest misbehaviour (a trap, a refused configuration, a missing export) is reported here,
/// never as a panic. The variants that come from the guest carry the log lines it wrote,
/// because the reason is usually in them (the SDK logs a panic message before aborting).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The module file could not be read.
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime rejected the module (invalid wasm, or compilation failed).
    Compile(String),
    /// The module is not a proxy-wasm 0.2.1 module, or it imports something the harness
    /// cannot provide.
    Link(String),
    /// The guest trapped (a panic in the SDK aborts, which traps).
    Trap {
        /// The export that was running.
        function: String,
        /// wasmtime's trap message.
        message: String,
        /// Everything the guest logged so far.
        logs: Vec<LogLine>,
    },
    /// `proxy_on_vm_start` returned false.
    VmStartRefused {
        /// Everything the guest logged so far.
        logs: Vec<LogLine>,
    },
    /// `proxy_on_configure` returned false: the plugin refused its configuration, and Envoy
    /// would not load it.
    ConfigurationRefused {
        /// Everything the guest logged so far.
        logs: Vec<LogLine>,
    },
    /// An earlier trap left the VM unusable (Envoy marks such a VM failed, too).
    Failed,
    /// The test drove a stream in an order HTTP or TCP does not allow (e.g. body after
    /// end of stream), or named an HTTP call token that is not pending.
    Usage(String),
}

fn write_logs(f: &mut fmt::Formatter<'_>, logs: &[LogLine]) -> fmt::Result {
    if logs.is_empty() {
        return f.write_str(" (the plugin logged nothing)");
    }
    f.write_str("; plugin log:")?;
    for line in logs {
        write!(f, "\n  [{}] {}", line.level, line.message)?;
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "cannot read module {path}: {source}"),
            Error::Compile(message) => write!(f, "cannot compile module: {message}"),
            Error::Link(message) => write!(f, "cannot instantiate module: {message}"),
            Error::Trap { function, message, logs } => {
                write!(f, "guest trapped in {function}: {message}")?;
                write_logs(f, logs)
            }
            Error::VmStartRefused { logs } => {
                f.write_str("the plugin refused to start (proxy_on_vm_start returned false)")?;
                write_logs(f, logs)
            }
            Error::ConfigurationRefused { logs } => {
                f.write_str("the plugin refused its configuration (proxy_on_configure returned false)")?;
                write_logs(f, logs)
            }
            Error::Failed => f.write_str("the plugin VM failed earlier and cannot be used"),
            Error::Usage(message) => write!(f, "harness misuse: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
