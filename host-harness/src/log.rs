//! What the plugin logged: one line per `proxy_log` call or WASI stdout/stderr write.

use crate::abi::LogLevel;

/// A line the plugin logged (`proxy_log`, or WASI stdout/stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level (stdout is `Info`, stderr `Error`, as in proxy-wasm-cpp-host).
    pub level: LogLevel,
    /// The message (one trailing newline of a WASI write removed).
    pub message: String,
    /// The context that was active when it was logged (0 outside any callback).
    pub context_id: u32,
}
