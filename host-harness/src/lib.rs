#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod build;

#[cfg(feature = "runtime")]
mod abi;
#[cfg(feature = "runtime")]
pub mod component;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
mod headers;
#[cfg(feature = "runtime")]
mod host;
#[cfg(feature = "runtime")]
mod http;
#[cfg(feature = "runtime")]
mod plugin;
#[cfg(feature = "runtime")]
mod property;
#[cfg(feature = "runtime")]
mod shared;
#[cfg(feature = "runtime")]
mod tcp;
#[cfg(feature = "runtime")]
mod upstream;

#[cfg(feature = "runtime")]
pub use crate::{
    abi::{LogLevel, Status},
    error::Error,
    headers::Headers,
    http::{HttpExchange, HttpOutcome, HttpStream, LocalReply, Message, StreamState},
    plugin::{LogLine, Module, Plugin, PluginConfig},
    property::{PropertyPath, PropertyValue},
    shared::{MetricKind, MetricValue, SharedState},
    tcp::{PeerType, TcpSide, TcpStream},
    upstream::{HttpCallReply, HttpCallRequest, HttpCallResponse, Upstream},
};
