//! The numeric vocabulary of proxy-wasm ABI 0.2.1: statuses, buffer, map and stream types.
//!
//! Values follow `proxy-wasm/spec` (`abi-versions/v0.2.1`) and proxy-wasm-cpp-host's
//! `WasmResult`, which is what Envoy returns to the guest.

/// A hostcall result code (`proxy_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// The call succeeded.
    Ok = 0,
    /// The key, context, queue or metric does not exist.
    NotFound = 1,
    /// An argument is out of range or not acceptable in the current state.
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// An argument could not be parsed.
    ParseFailure = 4,
    /// A guest pointer or length points outside its memory.
    InvalidMemoryAccess = 6,
    /// The queue is empty.
    Empty = 7,
    /// A compare-and-swap value did not match.
    CasMismatch = 8,
    /// The host failed internally.
    InternalFailure = 10,
    /// The connection broke (reported by `proxy_get_status` after a failed call).
    BrokenConnection = 11,
    /// The host does not implement this call.
    Unimplemented = 12,
}

impl Status {
    pub(crate) fn code(self) -> u32 {
        self as u32
    }
}

/// Buffer types of `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes`.
pub(crate) mod buffer {
    pub const HTTP_REQUEST_BODY: u32 = 0;
    pub const HTTP_RESPONSE_BODY: u32 = 1;
    pub const DOWNSTREAM_DATA: u32 = 2;
    pub const UPSTREAM_DATA: u32 = 3;
    pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
    pub const GRPC_RECEIVE_BUFFER: u32 = 5;
    pub const VM_CONFIGURATION: u32 = 6;
    pub const PLUGIN_CONFIGURATION: u32 = 7;
    pub const CALL_DATA: u32 = 8;
    pub const MAX: u32 = CALL_DATA;
}

/// Map types of the `proxy_*_header_map_*` calls.
pub(crate) mod map {
    pub const REQUEST_HEADERS: u32 = 0;
    pub const REQUEST_TRAILERS: u32 = 1;
    pub const RESPONSE_HEADERS: u32 = 2;
    pub const RESPONSE_TRAILERS: u32 = 3;
    pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;
    pub const MAX: u32 = HTTP_CALL_RESPONSE_TRAILERS;
}

/// Stream types of `proxy_continue_stream` / `proxy_close_stream`.
pub(crate) mod stream {
    pub const HTTP_REQUEST: u32 = 0;
    pub const HTTP_RESPONSE: u32 = 1;
    pub const DOWNSTREAM: u32 = 2;
    pub const UPSTREAM: u32 = 3;
}

/// Metric types of `proxy_define_metric`.
pub(crate) mod metric {
    pub const COUNTER: u32 = 0;
    pub const GAUGE: u32 = 1;
    pub const HISTOGRAM: u32 = 2;
}

/// WASI preview1 errno values used by the host.
pub(crate) mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
    pub const NOSYS: i32 = 52;
}

/// A log level, as `proxy_log` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info (also WASI stdout).
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error (also WASI stderr).
    Error = 4,
    /// Critical (the SDK's panic hook logs here).
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_u32(level: u32) -> Option<LogLevel> {
        Some(match level {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        })
    }
}
