//! Shared pieces of eventseal's benchmarks: the workloads (the same ones for the native
//! core bench, `--bench core`, and every comparison) and core's decision on one request
//! body, as the filter makes it.

#[allow(missing_docs)]
pub mod workloads;

pub use workloads::{AUTHORITY, METHOD, PATH, PRINCIPAL, decide, engine, headers};

use eventseal_core::Engine;

/// The `webhook-*` headers of a signed request.
///
/// # Panics
/// When the workloads' keyring has no signing key (a bug in the workloads).
pub fn signature_headers(engine: &Engine, id: &str, timestamp: i64, body: &[u8]) -> [(String, String); 3] {
    let signature = eventseal_core::sign(engine.keyring(), id, timestamp, body).expect("the workload keyring signs");
    [
        ("webhook-id".into(), id.to_owned()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        ("webhook-signature".into(), signature),
    ]
}
