//! TCP (network filter) streams: the wasm filter in front of tcp_proxy, as Envoy's
//! `Context::onData` / `onWrite` and its network filter manager drive it.
//!
//! Data a callback does not let through (`StopIteration`) stays in Envoy's buffer, and the
//! next data callback sees it together with the new bytes. `proxy_continue_stream(Downstream)`
//! passes held client bytes on without calling the filter again; `Upstream` cannot be
//! continued. Either `proxy_close_stream` type closes the client's connection before the
//! closing callback's data goes anywhere, and ends the context. Upstream data with end of
//! stream also reports the upstream connection closed (`proxy_on_upstream_connection_close`
//! with `Unknown`), as Envoy's `onWrite` does.
//!
//! [`state`] holds the per-side state, [`driver`] the steps that run the guest's callbacks,
//! and [`stream`] the public [`TcpStream`].

pub(crate) mod driver;
pub(crate) mod state;
pub(crate) mod stream;

pub use state::{PeerType, TcpSide};
pub use stream::TcpStream;
