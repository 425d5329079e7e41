//! Floors of any proxy-wasm filter in Envoy, for `benches/envoy-load.sh`.
//!
//! With no configuration: a filter that does nothing (the SDK's default callbacks, which
//! continue). With the configuration `copy-body`: a filter that does only what any
//! body-rewriting filter must do under ABI 0.2.1, as eventseal's does — drop
//! `content-length` from the request headers, hold the body until its end, read it whole
//! and write it back unchanged — so the cost of the host side of buffering shows apart
//! from any work on the body.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { copy_body: false }) });
}}

struct Root {
    copy_body: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.copy_body = self.get_plugin_configuration().as_deref() == Some(b"copy-body");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.copy_body {
            Some(Box::new(CopyBody))
        } else {
            Some(Box::new(Noop))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {}

struct CopyBody;

impl Context for CopyBody {}

impl HttpContext for CopyBody {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            self.set_http_request_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.set_http_request_body(0, body_size, &body);
        Action::Continue
    }
}
