//! Every call into the host (Envoy), and nothing else: the log, the clock, the counters,
//! properties, header maps and bodies, local replies, HTTP calls, shared data and context
//! switches. The rest of the filter is plain Rust over these functions, as the proxy-wasm
//! SDK keeps its own raw calls in one file; a host error is turned into a value here, once.

use crate::metrics::Counter;
use eventseal_core::Direction;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes one line to the proxy log. Never pass key material or field values.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// The host clock (Envoy's, not the VM's).
fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// The host clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(now().as_millis()).unwrap_or(u64::MAX)
}

/// The host clock in seconds since the Unix epoch (signature timestamps).
pub fn now_secs() -> i64 {
    i64::try_from(now().as_secs()).unwrap_or(i64::MAX)
}

/// The host clock in nanoseconds since the Unix epoch (audit records).
pub fn now_nanos() -> u128 {
    now().as_nanos()
}

/// Metric ids, indexed by [`Counter::index`].
#[derive(Debug)]
pub struct Metrics(Vec<u32>);

impl Metrics {
    /// Defines every counter (once per VM, at configure time).
    pub fn define() -> Self {
        Self(
            Counter::all()
                // A host that cannot define a metric gets an id that increments nothing.
                .map(|counter| {
                    let kind = if counter.is_gauge() {
                        MetricType::Gauge
                    } else {
                        MetricType::Counter
                    };
                    hostcalls::define_metric(kind, &counter.name()).unwrap_or(u32::MAX)
                })
                .collect(),
        )
    }

    /// Adds one to each counter listed, with one host call per distinct counter: a body
    /// with ten sealed fields adds ten to `fields_sealed` at once.
    pub fn add(&self, counters: &[Counter]) {
        let mut counts = vec![0usize; self.0.len()];
        for counter in counters {
            if let Some(count) = counts.get_mut(counter.index()) {
                *count += 1;
            }
        }
        for (&id, &n) in self.0.iter().zip(&counts).filter(|(_, n)| **n > 0) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Moves a gauge by `change`, up or down.
    pub fn shift(&self, gauge: Counter, change: i64) {
        if change != 0
            && let Some(&id) = self.0.get(gauge.index())
        {
            let _ = hostcalls::increment_metric(id, change);
        }
    }

    /// Adds `n` to one counter.
    pub fn add_n(&self, counter: Counter, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(&id) = self.0.get(counter.index()) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The plugin configuration (the policy), as bytes.
pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// How often the root context's tick runs.
pub fn set_tick_period(period: Duration) {
    let _ = hostcalls::set_tick_period(period);
}

/// Tells the host a root context that answered "not done" in `on_done` is done now.
pub fn done() {
    let _ = hostcalls::done();
}

/// A property's raw bytes; absent or unreadable (Envoy: serialization failure) is `None`.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// A string-valued property; an empty value counts as absent.
pub fn property_text(path: &[&str]) -> Option<String> {
    property(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .filter(|s| !s.is_empty())
}

fn header_map(direction: Direction) -> MapType {
    match direction {
        Direction::Request => MapType::HttpRequestHeaders,
        Direction::Response => MapType::HttpResponseHeaders,
    }
}

fn body_buffer(direction: Direction) -> BufferType {
    match direction {
        Direction::Request => BufferType::HttpRequestBody,
        Direction::Response => BufferType::HttpResponseBody,
    }
}

/// The headers travelling with `direction`, names in lower case, values read as [`text`];
/// the host's buffers are reused (this runs on every request whose path a rule could match).
pub fn headers(direction: Direction) -> Vec<(String, String)> {
    hostcalls::get_map_bytes(header_map(direction))
        .unwrap_or_default()
        .into_iter()
        .map(|(mut name, value)| {
            name.make_ascii_lowercase();
            (name, text(value))
        })
        .collect()
}

/// The value of header `name` travelling with `direction`, read as [`text`].
pub fn header_value(direction: Direction, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(header_map(direction), name).ok().flatten().map(text)
}

/// A header value as text: bytes that are not UTF-8 are read lossily rather than trapping,
/// and a UTF-8 value keeps its buffer.
fn text(value: Vec<u8>) -> String {
    String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Sets (or, with `None`, removes) a header travelling with `direction`; only possible
/// before the headers have gone on.
pub fn set_header(direction: Direction, name: &str, value: Option<&str>) {
    let _ = hostcalls::set_map_value(header_map(direction), name, value);
}

/// The first `size` bytes of the body buffered for `direction`.
pub fn body(direction: Direction, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(body_buffer(direction), 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Replaces the first `size` bytes of the body buffered for `direction` with `bytes`.
pub fn set_body(direction: Direction, size: usize, bytes: &[u8]) {
    let _ = hostcalls::set_buffer(body_buffer(direction), 0, size, bytes);
}

/// A side of a TCP connection (network filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The client's side: what it sends is downstream data.
    Client,
    /// The upstream server's side: what it sends is upstream data.
    Server,
}

fn data_buffer(from: Peer) -> BufferType {
    match from {
        Peer::Client => BufferType::DownstreamData,
        Peer::Server => BufferType::UpstreamData,
    }
}

/// The `size` bytes of connection data received from `from` in this callback.
pub fn data(from: Peer, size: usize) -> Vec<u8> {
    hostcalls::get_buffer(data_buffer(from), 0, size).ok().flatten().unwrap_or_default()
}

/// Replaces the whole connection data from `from` (`size` bytes) with `bytes`: Envoy lets a
/// network filter replace a buffer whole, prepend or append, nothing else.
pub fn set_data(from: Peer, size: usize, bytes: &[u8]) {
    let _ = hostcalls::set_buffer(data_buffer(from), 0, size, bytes);
}

/// Closes the client's connection (Envoy flushes what was already written to it); the
/// upstream connection goes with it.
pub fn close_client() {
    let _ = hostcalls::close_downstream();
}

/// Answers the client with a local reply; the stream goes no further.
pub fn send_local_reply(status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
}

/// Continues a stream paused in `direction`, under the effective context.
pub fn resume(direction: Direction) {
    let _ = match direction {
        Direction::Request => hostcalls::resume_http_request(),
        Direction::Response => hostcalls::resume_http_response(),
    };
}

/// Makes context `id` the one the next host calls act on; false if it is gone.
pub fn set_effective_context(id: u32) -> bool {
    hostcalls::set_effective_context(id).is_ok()
}

/// A POST to `cluster` (`headers` with the pseudo-headers first); the call's token. Its
/// answer reaches the context whose callback runs now.
pub fn dispatch_post(cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout: Duration) -> Result<u32, Status> {
    hostcalls::dispatch_http_call(cluster, headers.to_vec(), Some(body), Vec::new(), timeout)
}

/// The `:status` of the answer to an HTTP call (in its response callback).
pub fn call_status() -> Option<u16> {
    hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse().ok())
}

/// The body of the answer to an HTTP call (in its response callback).
pub fn call_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A shared-data entry and its CAS; `Err` when the host fails.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    hostcalls::get_shared_data(key)
}

/// Writes a shared-data entry if its CAS still matches; `Err` (`CasMismatch`) otherwise.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
    hostcalls::set_shared_data(key, Some(value), cas)
}
