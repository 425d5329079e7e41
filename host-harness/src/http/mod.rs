//! HTTP streams: Envoy's filter-chain rules for one proxy-wasm HTTP filter.
//!
//! The rules mirrored here (from Envoy's `source/extensions/common/wasm/context.cc` and
//! proxy-wasm-cpp-host's `context.cc`):
//!
//! * a headers callback that returns `Pause` stops *all* iteration (cpp-host turns
//!   `StopIteration` into `StopAllIterationAndWatermark`): body and trailers that arrive
//!   meanwhile are held by Envoy and handed to the filter after `proxy_continue_stream`;
//! * a body callback that returns `Pause` (`StopIterationAndBuffer`) makes Envoy buffer:
//!   the next body callback sees everything received so far, and `Continue` forwards it;
//! * a header map is readable and writable only while its callback runs or its stream is
//!   stopped at that filter; afterwards reading a value is `BadArgument` and listing pairs
//!   returns nothing. In `proxy_on_log` the final request and response headers are
//!   readable (missing keys are `NotFound`) but not writable;
//! * `proxy_send_local_response` takes effect after the callback returns; the callback's
//!   result is ignored, and a reply sent from the request path runs through the filter's
//!   own response callbacks, as Envoy's local replies do. From the response path it
//!   replaces the response if the response headers have not been forwarded yet, and resets
//!   the stream otherwise.
//!
//! [`message`] holds the public values, [`state`] the per-side state machine, [`driver`]
//! the steps that run the guest's callbacks, and [`stream`] the public [`HttpStream`].

pub(crate) mod driver;
pub(crate) mod message;
pub(crate) mod state;
pub(crate) mod stream;

pub use message::{HttpExchange, HttpOutcome, LocalReply, Message, StreamState};
pub use stream::HttpStream;
