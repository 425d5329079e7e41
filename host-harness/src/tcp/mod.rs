//! TCP (network filter) streams.
//!
//! As in Envoy's network filter manager, data a callback does not let through
//! (`StopIteration`) stays buffered, and the next data callback sees it together with the
//! new bytes. Upstream data with end of stream also reports the upstream connection closed
//! (`proxy_on_upstream_connection_close` with `Unknown`), as Envoy's `onWrite` does.
//!
//! [`state`] holds the per-side state, [`driver`] the steps that run the guest's callbacks,
//! and [`stream`] the public [`TcpStream`].

pub(crate) mod driver;
pub(crate) mod state;
pub(crate) mod stream;

pub use state::{PeerType, TcpSide};
pub use stream::TcpStream;
