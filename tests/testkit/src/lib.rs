//! Test support for eventseal's integration tests, in one place that every test crate
//! depends on normally (no source file compiled into two crates):
//!
//! - [`case`]: the conformance case format of `tests/cases/` (`tests/cases/README.md`) and
//!   what a runner sends for a case;
//! - [`jose`]: the checks' own JWE (`dir`, `A256GCM`) and Standard Webhooks code, written
//!   from the specifications and independent of eventseal-core;
//! - [`check`]: judging what came out of any host against a case;
//! - [`harness`]: running a case through a filter module in the wasmtime harness, the way
//!   Envoy would drive it;
//! - [`webhooks`]: the Standard Webhooks vectors of `tests/vectors/webhooks/` as cases;
//! - [`openbao`]: a real OpenBao (Vault Transit) server for a test;
//! - [`nats`]: a real nats-server for a test, and a client of the NATS protocol's bytes
//!   (plain, or TLS first with a client certificate);
//! - [`gateway`]: the NATS gateway in the harness's TCP mode, on loopback sockets in front
//!   of a real nats-server, as Envoy's network filter chain would run it;
//! - [`http`]: the tests' HTTP/1.1 client (plain or mTLS), over `ureq`;
//! - [`generate`]: one test per case file, from a build script (std only: with
//!   `default-features = false` this is all there is).
#![forbid(unsafe_code)]

pub mod generate;

#[cfg(feature = "support")]
pub mod case;
#[cfg(feature = "support")]
pub mod check;
#[cfg(feature = "support")]
pub mod gateway;
#[cfg(feature = "support")]
pub mod harness;
#[cfg(feature = "support")]
pub mod http;
#[cfg(feature = "support")]
pub mod jose;
#[cfg(feature = "support")]
pub mod nats;
#[cfg(feature = "support")]
pub mod openbao;
#[cfg(feature = "support")]
pub mod webhooks;
