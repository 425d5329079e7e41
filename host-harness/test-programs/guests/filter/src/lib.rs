//! A typical HTTP filter written with the SDK's safe API, to test the harness's flows:
//! configuration refusal, buffering, body rewriting, local replies, HTTP calls that pause
//! the request, ticks, metrics, shared data with CAS, environment, and access logging.
//!
//! Configuration: `key=value` lines. `refuse` makes `on_configure` fail; `tick_ms=N` sets
//! the tick period; `auth_cluster=NAME` names the cluster for the `x-auth` check.
//!
//! Paths under `/hold` behave like a filter written for Envoy's
//! `allow_on_headers_stop_iteration`: the headers callbacks pause, the body callbacks pause
//! until the end of the stream, then the body is rewritten, `content-length` fixed and a
//! header added, or a body holding `refuse` gets a local reply (403 on the request, 502 on
//! the response).

use std::time::Duration;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Clone)]
struct Settings {
    auth_cluster: String,
    requests_metric: u32,
}

#[derive(Default)]
struct Root {
    settings: Settings,
    ticks_metric: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config).into_owned();
        for line in config.lines() {
            match line.split_once('=') {
                Some(("tick_ms", ms)) => match ms.parse() {
                    Ok(ms) => self.set_tick_period(Duration::from_millis(ms)),
                    Err(_) => {
                        error!("bad tick_ms: {ms}");
                        return false;
                    }
                },
                Some(("auth_cluster", name)) => self.settings.auth_cluster = name.to_owned(),
                _ if line.trim() == "refuse" => {
                    error!("configuration refused: {line}");
                    return false;
                }
                _ => {}
            }
        }
        self.settings.requests_metric = hostcalls::define_metric(MetricType::Counter, "filter_requests_total").unwrap_or(0);
        self.ticks_metric = hostcalls::define_metric(MetricType::Counter, "filter_ticks_total").unwrap_or(0);
        info!("configured");
        true
    }

    fn on_tick(&mut self) {
        let _ = hostcalls::increment_metric(self.ticks_metric, 1);
        let now = self.get_current_time().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        info!("tick at {}", now.as_millis());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            id: context_id,
            settings: self.settings.clone(),
            body_calls: Vec::new(),
            hold: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    id: u32,
    settings: Settings,
    body_calls: Vec<String>,
    /// The request's path is under `/hold`.
    hold: bool,
}

impl Filter {
    fn count_request(&self) {
        let _ = hostcalls::increment_metric(self.settings.requests_metric, 1);
        loop {
            let (value, cas) = self.get_shared_data("requests");
            let count: u64 = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if self
                .set_shared_data("requests", Some((count + 1).to_string().as_bytes()), cas)
                .is_ok()
            {
                break;
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, _trailers: usize) {
        let status = self.get_http_call_response_header(":status");
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        info!("auth answered: headers={headers} status={status:?}");
        if status.as_deref() == Some("200") {
            self.set_http_request_header("x-auth-user", Some(&String::from_utf8_lossy(&body)));
            self.resume_http_request();
        } else {
            let reason = format!("auth failed: {}", status.as_deref().unwrap_or("no response"));
            self.send_http_response(403, vec![("x-auth-failure", "yes")], Some(reason.as_bytes()));
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.count_request();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path.starts_with("/hold") {
            self.hold = true;
            return if end_of_stream { Action::Continue } else { Action::Pause };
        }
        if path.starts_with("/deny") {
            self.send_http_response(403, vec![("x-denied", "yes")], Some(b"denied by filter"));
            return Action::Pause;
        }
        if let Ok(greeting) = std::env::var("FILTER_GREETING") {
            self.set_http_request_header("x-greeting", Some(&greeting));
        }
        self.add_http_request_header("x-filter", "on");
        if let Some(token) = self.get_http_request_header("x-auth") {
            let call = self.dispatch_http_call(
                &self.settings.auth_cluster,
                vec![
                    (":method", "GET"),
                    (":path", "/auth"),
                    (":authority", "auth.local"),
                    ("x-token", &token),
                ],
                None,
                vec![],
                Duration::from_secs(2),
            );
            return match call {
                Ok(_) => Action::Pause,
                Err(status) => {
                    self.send_http_response(500, vec![], Some(format!("dispatch failed: {status:?}").as_bytes()));
                    Action::Pause
                }
            };
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.body_calls.push(format!("{size}/{end_of_stream}"));
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        if self.hold {
            if body.windows(6).any(|w| w == b"refuse") {
                self.send_http_response(403, vec![("x-refused", "yes")], Some(b"refused before the upstream"));
                return Action::Pause;
            }
            // The headers are still held: they can change with the body.
            let new = [&b"["[..], &body.to_ascii_uppercase(), b"]"].concat();
            self.set_http_request_body(0, size, &new);
            self.set_http_request_header("content-length", Some(&new.len().to_string()));
            self.set_http_request_header("x-signed", Some(&format!("len={}", new.len())));
            info!("held request body callbacks: {}", self.body_calls.join(" "));
            return Action::Continue;
        }
        self.set_http_request_body(0, size, &body.to_ascii_uppercase());
        info!("request body callbacks: {}", self.body_calls.join(" "));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if self.hold && !end_of_stream {
            return Action::Pause;
        }
        self.set_http_response_header("x-filter-response", Some("on"));
        self.set_http_response_header("server", None);
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if self.hold {
            let body = self.get_http_response_body(0, size).unwrap_or_default();
            if body.windows(6).any(|w| w == b"refuse") {
                self.send_http_response(502, vec![("x-refused", "yes")], Some(b"refused before the client"));
                return Action::Pause;
            }
            self.set_http_response_header("content-length", Some(&body.len().to_string()));
            self.set_http_response_header("x-checked", Some("yes"));
            return Action::Continue;
        }
        self.set_http_response_body(size, 0, b" (filtered)");
        Action::Continue
    }

    fn on_log(&mut self) {
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let status = self.get_http_response_header(":status").unwrap_or_default();
        info!("access {} method={method} status={status}", self.id);
    }
}
