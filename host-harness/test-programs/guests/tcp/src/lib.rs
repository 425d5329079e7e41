//! A network filter with two modes, chosen by the plugin configuration:
//!
//! * none: [`Line`], a typical SDK filter: buffers client bytes up to a newline, upper-cases
//!   them, prefixes upstream bytes with "> ", closes the connection on "QUIT", and logs
//!   lifecycle events;
//! * `probe`: [`Probe`], which runs the commands on the first line of each data buffer with
//!   raw host calls and logs every call with the status the host returned, so a test can
//!   check what the host does, and the same module can be run in Envoy to compare.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod raw;

use log::info;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { probe: false }) });
}}

struct Root {
    probe: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.probe = self.get_plugin_configuration().is_some_and(|c| c == b"probe");
        true
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        if self.probe {
            Some(Box::new(Probe))
        } else {
            Some(Box::new(Line { id: context_id }))
        }
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

/// The buffer and stream type of the client's side (`DownstreamData`, `Downstream`).
const DOWNSTREAM: u32 = 2;
/// The buffer and stream type of the upstream's side (`UpstreamData`, `Upstream`).
const UPSTREAM: u32 = 3;

/// Runs the commands on the first line of each data buffer, `;`-separated, against that
/// side's buffer (`other` names the other side's):
///
/// * `hold`: return `StopIteration`;
/// * `get START MAX`, `set START SIZE TEXT`: `proxy_get_buffer_bytes` /
///   `proxy_set_buffer_bytes` on this side's buffer (`\n` in TEXT is a newline);
/// * `peek START MAX`, `poke TEXT`: read the other side's buffer / append TEXT to it;
/// * `continue KIND`, `close KIND`: `proxy_continue_stream` / `proxy_close_stream` with
///   stream type KIND (0-3, or anything else to see the status);
/// * `reply`: `proxy_send_local_response` (403, body "denied\n"), an HTTP-only call.
///
/// A number may be `max` (`usize::MAX`); a word that is not a command ends the line. A
/// buffer without a newline is held until one arrives (or the end of stream). Every call is
/// logged as `name(args) -> Status ...`.
struct Probe;

impl Context for Probe {
    fn on_done(&mut self) -> bool {
        info!("connection done");
        true
    }
}

impl StreamContext for Probe {
    fn on_new_connection(&mut self) -> Action {
        info!("connection opened");
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        data(DOWNSTREAM, size, end_of_stream)
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        data(UPSTREAM, size, end_of_stream)
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        info!("downstream closed by {peer:?}");
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        info!("upstream closed by {peer:?}");
    }

    fn on_log(&mut self) {
        info!("connection logged");
    }
}

fn data(side: u32, size: usize, end_of_stream: bool) -> Action {
    let (_, bytes) = raw::get_buffer_bytes(side, 0, usize::MAX);
    let bytes = bytes.unwrap_or_default();
    info!("{} size={size} end={end_of_stream}: {}", side_name(side), shown(Some(&bytes)));
    let Some(line_end) = bytes.iter().position(|b| *b == b'\n') else {
        if end_of_stream {
            return Action::Continue;
        }
        info!("{} waits for a line", side_name(side));
        return Action::Pause;
    };
    let line = String::from_utf8_lossy(&bytes[..line_end]);
    let mut action = Action::Continue;
    for command in line.trim_end_matches('\r').split(';') {
        match run(side, command) {
            Some(Action::Pause) => action = Action::Pause,
            Some(_) => {}
            None => break,
        }
    }
    action
}

/// Runs one command; `None` for a word that is not one, which ends the line.
fn run(side: u32, command: &str) -> Option<Action> {
    let other = if side == DOWNSTREAM { UPSTREAM } else { DOWNSTREAM };
    let mut words = command.splitn(4, ' ');
    let verb = words.next().unwrap_or_default();
    let mut args = words;
    let mut number = || match args.next() {
        Some("max") => usize::MAX,
        Some(n) => n.parse().unwrap_or(0),
        None => 0,
    };
    match verb {
        "hold" => {
            info!("{} holds", side_name(side));
            return Some(Action::Pause);
        }
        "get" | "peek" => {
            let kind = if verb == "get" { side } else { other };
            let (start, max) = (number(), number());
            let (status, value) = raw::get_buffer_bytes(kind, start, max);
            info!(
                "proxy_get_buffer_bytes({}, {start}, {max}) -> {} {}",
                buffer_name(kind),
                status_name(status),
                shown(value.as_deref())
            );
        }
        "set" => {
            let (start, size) = (number(), number());
            let text = unescaped(command.splitn(4, ' ').nth(3).unwrap_or_default());
            let status = raw::set_buffer_bytes(side, start, size, text.as_bytes());
            info!(
                "proxy_set_buffer_bytes({}, {start}, {size}, {text:?}) -> {}",
                buffer_name(side),
                status_name(status)
            );
        }
        "poke" => {
            let text = unescaped(command.split_once(' ').map(|(_, t)| t).unwrap_or_default());
            let status = raw::set_buffer_bytes(other, usize::MAX, 0, text.as_bytes());
            info!(
                "proxy_set_buffer_bytes({}, max, 0, {text:?}) -> {}",
                buffer_name(other),
                status_name(status)
            );
        }
        "reply" => {
            let status = raw::send_local_response(403, b"denied\n");
            info!("proxy_send_local_response(403) -> {}", status_name(status));
        }
        "continue" | "close" => {
            let kind = u32::try_from(number()).unwrap_or(u32::MAX);
            let status = if verb == "continue" {
                raw::continue_stream(kind)
            } else {
                raw::close_stream(kind)
            };
            info!("proxy_{verb}_stream({}) -> {}", stream_name(kind), status_name(status));
        }
        _ => return None,
    }
    Some(Action::Continue)
}

fn side_name(side: u32) -> &'static str {
    if side == DOWNSTREAM { "downstream" } else { "upstream" }
}

fn buffer_name(kind: u32) -> String {
    match kind {
        DOWNSTREAM => "DownstreamData".to_owned(),
        UPSTREAM => "UpstreamData".to_owned(),
        n => n.to_string(),
    }
}

fn stream_name(kind: u32) -> String {
    match kind {
        0 => "HttpRequest".to_owned(),
        1 => "HttpResponse".to_owned(),
        DOWNSTREAM => "Downstream".to_owned(),
        UPSTREAM => "Upstream".to_owned(),
        n => n.to_string(),
    }
}

fn status_name(status: u32) -> String {
    match status {
        0 => "Ok".to_owned(),
        1 => "NotFound".to_owned(),
        2 => "BadArgument".to_owned(),
        6 => "InvalidMemoryAccess".to_owned(),
        12 => "Unimplemented".to_owned(),
        n => n.to_string(),
    }
}

/// TEXT with each `\\n` made a newline (a command line cannot hold one).
fn unescaped(text: &str) -> String {
    text.replace("\\n", "\n")
}

/// Bytes as a quoted, escaped string; `null` for none.
fn shown(value: Option<&[u8]>) -> String {
    value.map_or_else(|| "null".to_owned(), |v| format!("{:?}", String::from_utf8_lossy(v)))
}
