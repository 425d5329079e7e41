//! Native cost of eventseal-core's decisions on the workloads in `src/workloads.rs`.
//!
//! `cargo bench -p eventseal-benches --bench core`.
// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventseal_benches::workloads::{self, decide, engine, headers};
use eventseal_core::{Engine, RequestHead, sign};
use std::hint::black_box;

fn seal_and_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    for (size, fields) in [(1024, 1), (1024, 3), (1024, 10), (64 * 1024, 3)] {
        let label = format!("{}KiB-{fields}f", size / 1024);
        let event = workloads::event(size, fields);
        group.throughput(Throughput::Elements(1));
        let sealer = engine(&workloads::policy("seal", fields));
        let headers = headers();
        group.bench_with_input(BenchmarkId::new("seal", &label), &event, |b, event| {
            b.iter(|| decide(&sealer, &headers, black_box(event), 0))
        });
        let sealed = decide(&sealer, &headers, &event, 0);
        let opener = engine(&workloads::policy("open", fields));
        group.bench_with_input(BenchmarkId::new("open", &label), &sealed, |b, sealed| {
            b.iter(|| decide(&opener, &headers, black_box(sealed), 0))
        });
    }
    group.finish();
}

fn verify_and_route(c: &mut Criterion) {
    let event = workloads::event(1024, 3);
    let verifier = engine(&workloads::policy("verify", 3));
    let now = 1_700_000_000;
    let mut group = c.benchmark_group("event");
    group.bench_function("verify/1KiB", |b| {
        let mut n = 0u64;
        b.iter(|| {
            // A fresh id per event: the replay cache must not refuse the repeats.
            n += 1;
            let headers = signed_headers(&verifier, &format!("msg_{n}"), now, &event);
            decide(&verifier, &headers, black_box(&event), now)
        })
    });
    // Verification alone: each event is signed in the untimed setup. (`verify/1KiB` above
    // signs inside the clock, as it always has, so its numbers compare across rounds.)
    group.bench_function("verify-only/1KiB", |b| {
        let mut n = 0u64;
        b.iter_batched(
            || {
                n += 1;
                signed_headers(&verifier, &format!("msg_{n}"), now, &event)
            },
            |headers| decide(&verifier, &headers, black_box(&event), now),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("no-matching-rule/1KiB", |b| {
        let headers = headers();
        b.iter(|| {
            let request = RequestHead {
                method: "GET",
                path: "/elsewhere",
                authority: "bench",
                headers: &headers,
                subject: None,
            };
            black_box(verifier.route(&request).is_none())
        })
    });
    group.finish();
}

/// The bench request's headers with a Standard Webhooks signature of `event` under `id`.
fn signed_headers(verifier: &Engine, id: &str, now: i64, event: &[u8]) -> Vec<(String, String)> {
    let signature = sign(verifier.keyring(), id, now, event).unwrap();
    let mut headers = headers();
    headers.extend([
        ("webhook-id".into(), id.to_owned()),
        ("webhook-timestamp".into(), now.to_string()),
        ("webhook-signature".into(), signature),
    ]);
    headers
}

criterion_group!(benches, seal_and_open, verify_and_route);
criterion_main!(benches);
