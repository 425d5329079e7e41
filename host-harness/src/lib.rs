#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The public API.
#[cfg(feature = "component")]
pub mod component;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
mod plugin;
#[cfg(feature = "runtime")]
mod upstream;

// Streams: public values, per-side state, drivers, handles.
#[cfg(feature = "runtime")]
mod http;
#[cfg(feature = "runtime")]
mod tcp;

// The VM and Envoy's event loop.
#[cfg(feature = "runtime")]
mod dispatcher;
#[cfg(feature = "runtime")]
mod engine;
#[cfg(feature = "runtime")]
mod vm;

// The host side of the ABI: store state, guest memory, imports.
#[cfg(feature = "runtime")]
mod hostcalls;
#[cfg(feature = "runtime")]
mod memory;
#[cfg(feature = "runtime")]
mod store;
#[cfg(feature = "runtime")]
mod wasi;

// Vocabulary and values shared by all of the above.
#[cfg(feature = "runtime")]
mod abi;
#[cfg(feature = "runtime")]
mod headers;
#[cfg(feature = "runtime")]
mod log;
#[cfg(feature = "runtime")]
mod property;
#[cfg(feature = "runtime")]
mod shared;

#[cfg(feature = "runtime")]
pub use crate::{
    abi::{LogLevel, Status},
    engine::engine,
    error::Error,
    headers::Headers,
    http::{HttpExchange, HttpOutcome, HttpStream, LocalReply, Message, StreamState},
    log::LogLine,
    plugin::{Module, Plugin, PluginConfig},
    property::{PropertyPath, PropertyValue},
    shared::{MetricKind, MetricValue, SharedState},
    tcp::{PeerType, TcpSide, TcpStream},
    upstream::{HttpCallReply, HttpCallRequest, HttpCallResponse, Upstream},
};
