//! A network filter: buffers client bytes up to a newline, upper-cases them, prefixes
//! upstream bytes with "> ", closes the connection on "QUIT", and logs lifecycle events.

use log::info;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Line { id: context_id }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }
}

struct Line {
    id: u32,
}

impl Context for Line {}

impl StreamContext for Line {
    fn on_new_connection(&mut self) -> Action {
        info!("connection {} opened", self.id);
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        let data = self.get_downstream_data(0, size).unwrap_or_default();
        info!("downstream data size={size} end={end_of_stream}");
        if data.starts_with(b"QUIT") {
            self.close_downstream();
            return Action::Continue;
        }
        if !data.contains(&b'\n') && !end_of_stream {
            return Action::Pause;
        }
        self.set_downstream_data(0, size, &data.to_ascii_uppercase());
        Action::Continue
    }

    fn on_upstream_data(&mut self, _size: usize, _end_of_stream: bool) -> Action {
        self.set_upstream_data(0, 0, b"> ");
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        info!("downstream closed by {peer:?}");
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        info!("upstream closed by {peer:?}");
    }

    fn on_log(&mut self) {
        info!("connection {} logged", self.id);
    }
}
