//! Exercises hostcalls directly, including their error statuses, which the SDK's wrappers
//! turn into panics. The `x-probe` request header names a scenario; the results are logged
//! as one line, `probe <scenario>: key=value ...`, for the test to check.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod raw;

use std::time::Duration;

use log::info;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

fn name(status: u32) -> &'static str {
    match status {
        0 => "Ok",
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        6 => "InvalidMemoryAccess",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        11 => "BrokenConnection",
        12 => "Unimplemented",
        _ => "Unknown",
    }
}

fn shown(value: Option<Vec<u8>>) -> String {
    match value {
        None => "null".to_owned(),
        Some(v) => String::from_utf8_lossy(&v).replace(' ', "_"),
    }
}

fn get_buffer(kind: u32, start: usize, max: usize) -> (u32, String) {
    let (status, value) = raw::get_buffer_bytes(kind, start, max);
    (status, shown(value))
}

fn set_buffer(kind: u32, start: usize, size: usize, data: &[u8]) -> u32 {
    raw::set_buffer_bytes(kind, start, size, data)
}

fn get_header(kind: u32, key: &str) -> (u32, String) {
    let (status, value) = raw::get_header_map_value(kind, key);
    (status, shown(value))
}

fn get_property(path: &[&str]) -> (u32, Option<Vec<u8>>) {
    raw::get_property(path.join("\0").as_bytes())
}

fn set_property(path: &[&str], value: &[u8]) -> u32 {
    raw::set_property(path.join("\0").as_bytes(), value)
}

fn get_shared(key: &str) -> (u32, String, u32) {
    let (status, value, cas) = raw::get_shared_data(key);
    (status, shown(value), cas)
}

fn set_shared(key: &str, value: &str, cas: u32) -> u32 {
    raw::set_shared_data(key, value, cas)
}

fn pairs(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (entries.len() as u32).to_le_bytes().to_vec();
    for (k, v) in entries {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in entries {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

fn http_call(cluster: &str, headers: &[(&str, &str)], timeout_ms: u32) -> (u32, u32) {
    raw::http_call(cluster, &pairs(headers), b"ping", &pairs(&[]), timeout_ms)
}

fn grpc_call(service: &str) -> u32 {
    raw::grpc_call(service, "s", "m", &[], &[], 1000).0
}

fn grpc_stream(service: &str) -> u32 {
    raw::grpc_stream(service, "s", "m", &[]).0
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Clone)]
struct Shared {
    queue: u32,
    root_set_property: u32,
}

#[derive(Default)]
struct Root {
    shared: Shared,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        self.get_vm_configuration().as_deref() != Some(b"refuse")
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        if self.get_plugin_configuration().as_deref() == Some(b"refuse") {
            info!("probe refuses its configuration");
            return false;
        }
        self.shared.queue = self.register_shared_queue("probe-queue");
        self.shared.root_set_property = set_property(&["probe", "root"], b"r");
        true
    }

    fn on_queue_ready(&mut self, queue: u32) {
        let item = self.dequeue_shared_queue(queue).ok().flatten().unwrap_or_default();
        info!("queue {queue} ready: {}", String::from_utf8_lossy(&item));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            id: context_id,
            scenario: String::new(),
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    id: u32,
    scenario: String,
    shared: Shared,
}

impl Probe {
    fn report(&self, results: &[String]) {
        info!("probe {}: {}", self.scenario, results.join(" "));
    }

    fn headers_scenario(&mut self) -> Action {
        let mut r: Vec<String> = Vec::new();
        match self.scenario.as_str() {
            "log" => {
                r.push(format!("bad_level={}", name(raw::log(9, b"x"))));
                r.push(format!("info={}", name(raw::log(2, b"probe info line"))));
                r.push(format!("level={:?}", hostcalls::get_log_level().ok()));
            }
            "time" => {
                let host = hostcalls::get_current_time()
                    .unwrap()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let wasi = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                let started = std::time::Instant::now();
                r.push(format!(
                    "host_ms={} wasi_ms={} monotonic_ok={}",
                    host.as_millis(),
                    wasi.as_millis(),
                    started.elapsed() < Duration::from_secs(1)
                ));
            }
            "env" => r.push(format!(
                "PROBE_ENV={}",
                std::env::var("PROBE_ENV").unwrap_or_else(|_| "unset".to_owned())
            )),
            "stdio" => {
                println!("hello stdout");
                eprintln!("hello stderr");
                r.push("printed=yes".to_owned());
            }
            "random" => {
                let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
                let (sa, sb) = (raw::random(&mut a), raw::random(&mut b));
                r.push(format!("errno={sa}/{sb} differ={}", a != b));
            }
            "panic" => panic!("probe panicked on purpose"),
            "buffers" => {
                r.push(format!("bad_type={}", name(get_buffer(99, 0, 10).0)));
                r.push(format!("plugin_config={}", name(get_buffer(7, 0, 100).0)));
                let (status, vm) = get_buffer(6, 0, 100);
                r.push(format!("vm_config={}:{vm}", name(status)));
                let (status, partial) = get_buffer(6, 2, 3);
                r.push(format!("vm_config_slice={}:{partial}", name(status)));
                let (status, past_end) = get_buffer(6, 1000, 1);
                r.push(format!("vm_config_past_end={}:{past_end}", name(status)));
                r.push(format!("call_body={}", name(get_buffer(4, 0, 10).0)));
                let (status, body) = get_buffer(0, 0, 10);
                r.push(format!("request_body={}:{body}", name(status)));
                r.push(format!("set_request_body={}", name(set_buffer(0, 0, 0, b"x"))));
                r.push(format!("set_vm_config={}", name(set_buffer(6, 0, 0, b"x"))));
            }
            "headers" => {
                r.push(format!("missing={}", name(get_header(0, "missing").0)));
                let (status, value) = get_header(0, "A");
                r.push(format!("a={}:{value}", name(status)));
                r.push(format!("bad_type={}", name(get_header(99, "a").0)));
                r.push(format!("response_value={}", name(get_header(2, "a").0)));
                r.push(format!("call_value={}", name(get_header(6, ":status").0)));
                let (add, replace, remove) = (
                    raw::add_header_map_value,
                    raw::replace_header_map_value,
                    raw::remove_header_map_value,
                );
                r.push(format!("add_response={}", name(add(2, "x", "y"))));
                r.push(format!("replace_response={}", name(replace(2, "x", "y"))));
                r.push(format!("remove_response={}", name(remove(2, "x"))));
                r.push(format!("replace={}", name(replace(0, "A", "2"))));
                r.push(format!("add={}", name(add(0, "B", "3"))));
                r.push(format!("remove={}", name(remove(0, "x-remove-me"))));
                r.push(format!(
                    "response_pairs={}",
                    hostcalls::get_map(MapType::HttpResponseHeaders).unwrap().len()
                ));
                r.push(format!(
                    "request_pairs={}",
                    hostcalls::get_map(MapType::HttpRequestHeaders).unwrap().len()
                ));
            }
            "properties" => {
                let text = |(status, value): (u32, Option<Vec<u8>>)| format!("{}:{}", name(status), shown(value));
                r.push(format!("plugin_name={}", text(get_property(&["plugin_name"]))));
                r.push(format!("missing={}", text(get_property(&["no", "such"]))));
                r.push(format!("path={}", text(get_property(&["request", "path"]))));
                r.push(format!("peer={}", text(get_property(&["connection", "uri_san_peer_certificate"]))));
                r.push(format!("tier={}", text(get_property(&["node", "metadata", "tier"]))));
                let (status, size) = get_property(&["response", "code"]);
                r.push(format!("response_code={}:{}", name(status), size.map_or(0, |v| v.len())));
                r.push(format!("set={}", name(set_property(&["probe", "mark"], b"m"))));
                r.push(format!("get_set={}", text(get_property(&["probe", "mark"]))));
                let (status, map) = get_property(&["metadata", "jwt"]);
                let count = map.map_or(0, |m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
                r.push(format!("metadata_map={}:{count}", name(status)));
                let (status, number) = get_property(&["metadata", "jwt", "iat"]);
                let number = number.map_or(0, |v| i64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
                r.push(format!("iat={}:{number}", name(status)));
                r.push(format!("root_set={}", name(self.shared.root_set_property)));
            }
            "shared" => {
                r.push(format!("missing={}", name(get_shared("probe-key").0)));
                r.push(format!("set={}", name(set_shared("probe-key", "v1", 0))));
                let (status, value, cas) = get_shared("probe-key");
                r.push(format!("get={}:{value}", name(status)));
                r.push(format!("stale_cas={}", name(set_shared("probe-key", "lost", cas + 1000))));
                r.push(format!("cas={}", name(set_shared("probe-key", "v2", cas))));
                r.push(format!("reused_cas={}", name(set_shared("probe-key", "lost", cas))));
                r.push(format!("final={}", get_shared("probe-key").1));
            }
            "queue" => {
                let resolve = |n: &str| raw::resolve_shared_queue("", n);
                let (status, id) = resolve("probe-queue");
                r.push(format!("resolve={}:{}", name(status), id == self.shared.queue));
                r.push(format!("resolve_missing={}", name(resolve("nope").0)));
                let dequeue = raw::dequeue_shared_queue;
                r.push(format!("dequeue_empty={}", name(dequeue(id).0)));
                r.push(format!("enqueue={}", name(raw::enqueue_shared_queue(id, b"item"))));
                r.push(format!("dequeue_missing={}", name(dequeue(9999).0)));
                r.push(format!("enqueue_missing={}", name(raw::enqueue_shared_queue(9999, b"x"))));
            }
            "metrics" => {
                r.push(format!("bad_type={}", name(raw::define_metric(7, "x").0)));
                let (_, counter) = raw::define_metric(0, "probe_counter");
                let (_, gauge) = raw::define_metric(1, "probe_gauge");
                let (_, histogram) = raw::define_metric(2, "probe_histogram");
                r.push(format!("inc_counter={}", name(raw::increment_metric(counter, 5))));
                r.push(format!("dec_counter={}", name(raw::increment_metric(counter, -1))));
                r.push(format!("record_gauge={}", name(raw::record_metric(gauge, 20))));
                r.push(format!("dec_gauge={}", name(raw::increment_metric(gauge, -3))));
                r.push(format!("inc_histogram={}", name(raw::increment_metric(histogram, 1))));
                r.push(format!("record_histogram={}", name(raw::record_metric(histogram, 42))));
                let (status, value) = raw::get_metric(counter);
                r.push(format!("get_counter={}:{value}", name(status)));
                let (status, value) = raw::get_metric(gauge);
                r.push(format!("get_gauge={}:{value}", name(status)));
                r.push(format!("get_histogram={}", name(raw::get_metric(histogram).0)));
                r.push(format!("get_missing={}", name(raw::get_metric(99999).0)));
                r.push(format!("record_missing={}", name(raw::record_metric(99999, 1))));
                r.push(format!("inc_missing={}", name(raw::increment_metric(99999, 1))));
            }
            "contexts" => {
                r.push(format!("effective_self={}", name(raw::set_effective_context(self.id))));
                r.push(format!("effective_missing={}", name(raw::set_effective_context(9999))));
                r.push(format!("done={}", name(raw::done())));
                r.push(format!("foreign={}", name(raw::call_foreign_function("nope", &[]).0)));
                let (status, code, _message) = raw::get_status();
                r.push(format!("get_status={}:{code}", name(status)));
            }
            "streams" => {
                r.push(format!("continue_bad={}", name(raw::continue_stream(99))));
                r.push(format!("continue_upstream={}", name(raw::continue_stream(3))));
                r.push(format!("continue_downstream={}", name(raw::continue_stream(2))));
                r.push(format!("close_bad={}", name(raw::close_stream(99))));
            }
            "grpc" => {
                r.push(format!("call_unknown={}", name(grpc_call("nope"))));
                r.push(format!("call_known={}", name(grpc_call("grpc-cluster"))));
                r.push(format!("stream_unknown={}", name(grpc_stream("nope"))));
                r.push(format!("send={}", name(raw::grpc_send(1, &[], true))));
                r.push(format!("cancel={}", name(raw::grpc_cancel(1))));
                r.push(format!("close={}", name(raw::grpc_close(1))));
            }
            "http-call" => {
                let valid = [(":method", "POST"), (":path", "/echo"), (":authority", "echo.local")];
                r.push(format!("unknown_cluster={}", name(http_call("nope", &valid, 1000).0)));
                r.push(format!("no_authority={}", name(http_call("echo", &valid[..2], 1000).0)));
                let timeout = self
                    .get_http_request_header("x-timeout-ms")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1000u64);
                let call = self.dispatch_http_call("echo", valid.to_vec(), Some(b"ping"), vec![], Duration::from_millis(timeout));
                r.push(format!("call={call:?}"));
                self.report(&r);
                return Action::Pause;
            }
            "local" => {
                self.send_http_response(418, vec![("x-local", "yes")], Some(b"short and stout"));
                return Action::Pause;
            }
            "reset" => {
                self.reset_http_request();
                return Action::Continue;
            }
            "pause" => return Action::Pause,
            _ => return Action::Continue,
        }
        self.report(&r);
        Action::Continue
    }
}

impl Context for Probe {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, trailers: usize) {
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let trailer = self.get_http_call_response_trailer("x-trailer");
        let (code, message) = self.get_grpc_status();
        info!(
            "probe call-response: headers={headers} trailers={trailers} status={} body={} trailer={} get_status={code}:{}",
            status.unwrap_or_else(|| "none".to_owned()),
            body.unwrap_or_else(|| "none".to_owned()).replace(' ', "_"),
            trailer.unwrap_or_else(|| "none".to_owned()),
            message.unwrap_or_default()
        );
        self.resume_http_request();
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.scenario = self.get_http_request_header("x-probe").unwrap_or_default();
        self.headers_scenario()
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        info!(
            "probe body size={size} end={end_of_stream} headers={}",
            name(get_header(0, ":path").0)
        );
        match self.scenario.as_str() {
            "buffer-until-end" if !end_of_stream => Action::Pause,
            "body-rules" if end_of_stream => {
                let mut r = Vec::new();
                r.push(format!("replace_prefix={}", name(set_buffer(0, 0, 1, b"X"))));
                r.push(format!("middle={}", name(set_buffer(0, 2, 0, b"X"))));
                r.push(format!("prepend={}", name(set_buffer(0, 0, 0, b"<"))));
                r.push(format!("append={}", name(set_buffer(0, size + 1, 0, b">"))));
                let (status, slice) = get_buffer(0, 1, 3);
                r.push(format!("slice={}:{slice}", name(status)));
                let (status, past_end) = get_buffer(0, 100, 1);
                r.push(format!("past_end={}:{past_end}", name(status)));
                let (status, nothing) = get_buffer(0, 2, 0);
                r.push(format!("empty={}:{nothing}", name(status)));
                r.push(format!("response_body={}", name(set_buffer(1, 0, 0, b"x"))));
                self.report(&r);
                Action::Continue
            }
            "replace-body" if end_of_stream => {
                self.set_http_request_body(0, size, b"replaced");
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_trailers(&mut self, trailers: usize) -> Action {
        info!("probe trailers count={trailers}");
        if self.scenario == "trailers" {
            self.set_http_request_trailers(vec![("x-added", "t")]);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let status = self.get_http_response_header(":status").unwrap_or_default();
        self.set_http_response_header("x-probe-saw-response", Some(&status));
        info!("probe response headers end={end_of_stream}");
        if self.scenario == "response-local" {
            self.send_http_response(502, vec![], Some(b"replaced by probe"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        info!("probe response body size={size} end={end_of_stream}");
        if self.scenario == "response-body-local" {
            self.send_http_response(502, vec![], Some(b"too late"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (status, value) = get_header(0, "x-probe");
        let (missing, _) = get_header(0, "not-there");
        let add = raw::add_header_map_value(0, "k", "v");
        let (response_status, code) = get_header(2, ":status");
        info!(
            "probe access-log: request_header={}:{value} missing={} add={} response_status={}:{code}",
            name(status),
            name(missing),
            name(add),
            name(response_status)
        );
    }
}
