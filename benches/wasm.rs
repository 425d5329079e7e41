//! The core bench's workloads through the shipped filter wasm in the harness (wasmtime),
//! against core natively on the same workload, interleaved in one run.
//!
//! `cargo bench -p eventseal-benches --bench wasm [-- <name filter>]`; environment:
//! `EVENTSEAL_BENCH_ROUNDS` (default 5) and `EVENTSEAL_BENCH_MS` (time per side per round,
//! default 200). Prints one table: median time per event on each side and the ratio.
//!
//! One "event" natively is `Engine::route` + `Engine::decide` on the body; through the
//! filter it is a whole HTTP exchange as Envoy drives it (stream created, request headers,
//! body, response headers, `on_done`/`on_log`/`on_delete`), so the ratio is the cost of
//! running core as the filter in a wasm VM, host calls and audit record included.
// The bench is a binary of its own, not a library.
#![allow(missing_docs)]

use eventseal_benches::{AUTHORITY, METHOD, PATH, decide, engine, headers, signature_headers, workloads};
use eventseal_harness::{HttpExchange, Module, Plugin, PluginConfig};
use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Runs `n` events and returns how long they took (inputs are made before the clock starts).
type Side = Box<dyn FnMut(u64) -> Duration>;

struct Workload {
    name: String,
    native: Side,
    wasm: Side,
}

fn exchange(path: &str, method: &str, extra: &[(String, String)], body: &[u8]) -> HttpExchange {
    let mut request: Vec<(String, String)> = vec![
        (":method".into(), method.into()),
        (":path".into(), path.into()),
        (":authority".into(), AUTHORITY.into()),
    ];
    request.extend(headers());
    request.extend(extra.iter().cloned());
    let exchange = HttpExchange::new(request);
    if body.is_empty() {
        exchange
    } else {
        exchange.request_body(body.to_vec())
    }
}

fn plugin(module: &Module, policy: &str) -> Plugin {
    module
        .plugin(PluginConfig::new().configuration(policy).env("EVENTSEAL_KEYS", workloads::KEYRING))
        .unwrap_or_else(|e| panic!("the filter refused the workload policy: {e}"))
}

/// Runs prepared exchanges through the filter; every one must reach the upstream.
fn run_wasm(plugin: &Plugin, exchanges: Vec<HttpExchange>) -> Duration {
    let start = Instant::now();
    for exchange in exchanges {
        let outcome = plugin.run_http(black_box(exchange)).expect("the filter does not trap");
        if let Some(reply) = outcome.local_reply() {
            panic!("the filter refused a workload event: {} {}", reply.status, reply.body_text());
        }
        black_box(outcome);
    }
    let elapsed = start.elapsed();
    // The audit records pile up in the harness's log: drop them outside the clock.
    drop(plugin.take_logs());
    elapsed
}

fn unix_now(plugin: &Plugin) -> i64 {
    i64::try_from(plugin.now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()).expect("in range")
}

fn body_workloads(module: &Module) -> Vec<Workload> {
    let mut all = Vec::new();
    for (size, fields) in [(1024, 1), (1024, 3), (1024, 10), (64 * 1024, 3)] {
        let label = format!("{}KiB-{fields}f", size / 1024);
        let event = workloads::event(size, fields);
        let sealed = decide(&engine(&workloads::policy("seal", fields)), &headers(), &event, 0);
        for (action, input) in [("seal", event), ("open", sealed)] {
            let policy = workloads::policy(action, fields);
            let native_engine = engine(&policy);
            let native_headers = headers();
            let native_input = input.clone();
            let filter = plugin(module, &policy);
            all.push(Workload {
                name: format!("{action}/{label}"),
                native: Box::new(move |n| {
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(decide(&native_engine, &native_headers, black_box(&native_input), 0));
                    }
                    start.elapsed()
                }),
                wasm: Box::new(move |n| run_wasm(&filter, (0..n).map(|_| exchange(PATH, METHOD, &[], &input)).collect())),
            });
        }
    }
    all
}

fn verify_workload(module: &Module) -> Workload {
    let policy = workloads::policy("verify", 3);
    let event = workloads::event(1024, 3);
    let native_engine = engine(&policy);
    let filter = plugin(module, &policy);
    let now = unix_now(&filter);
    let (native_event, mut native_next, mut wasm_next) = (event.clone(), 0u64, 0u64);
    Workload {
        name: "verify/1KiB".into(),
        native: Box::new(move |n| {
            // A fresh id per event, signed before the clock starts.
            let requests: Vec<Vec<(String, String)>> = (0..n)
                .map(|_| {
                    native_next += 1;
                    let mut h = headers();
                    h.extend(signature_headers(
                        &native_engine,
                        &format!("native-{native_next}"),
                        now,
                        &native_event,
                    ));
                    h
                })
                .collect();
            let start = Instant::now();
            for h in &requests {
                black_box(decide(&native_engine, h, black_box(&native_event), now));
            }
            start.elapsed()
        }),
        wasm: Box::new(move |n| {
            let signer = engine(&workloads::policy("verify", 3));
            let exchanges = (0..n)
                .map(|_| {
                    wasm_next += 1;
                    exchange(
                        PATH,
                        METHOD,
                        &signature_headers(&signer, &format!("wasm-{wasm_next}"), now, &event),
                        &event,
                    )
                })
                .collect();
            run_wasm(&filter, exchanges)
        }),
    }
}

fn no_match_workload(module: &Module) -> Workload {
    let policy = workloads::policy("verify", 3);
    let native_engine = engine(&policy);
    let native_headers = headers();
    let filter = plugin(module, &policy);
    Workload {
        name: "no-matching-rule".into(),
        native: Box::new(move |n| {
            let start = Instant::now();
            for _ in 0..n {
                let request = eventseal_core::RequestHead {
                    method: "GET",
                    path: "/elsewhere",
                    authority: AUTHORITY,
                    headers: &native_headers,
                    subject: None,
                };
                black_box(native_engine.route(black_box(&request)).is_none());
            }
            start.elapsed()
        }),
        wasm: Box::new(move |n| run_wasm(&filter, (0..n).map(|_| exchange("/elsewhere", "GET", &[], b"")).collect())),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How many events fill `budget` on this side (at least one).
fn calibrate(side: &mut Side, budget: Duration) -> u64 {
    let mut n = 1u64;
    loop {
        let took = side(n);
        if took >= budget / 10 || n >= 1 << 24 {
            let per_event = took.as_secs_f64() / n as f64;
            return ((budget.as_secs_f64() / per_event) as u64).max(1);
        }
        n *= 4;
    }
}

fn format_time(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let filter_arg = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let rounds = env_number("EVENTSEAL_BENCH_ROUNDS", 5).max(1);
    let budget = Duration::from_millis(env_number("EVENTSEAL_BENCH_MS", 200));
    let wasm_path = env!("EVENTSEAL_PROXY_WASM");
    let compile = Instant::now();
    let module = Module::from_file(wasm_path).unwrap_or_else(|e| panic!("cannot load {wasm_path}: {e}"));
    eprintln!("compiled {wasm_path} in {:.2?}", compile.elapsed());

    let mut all = body_workloads(&module);
    all.push(verify_workload(&module));
    all.push(no_match_workload(&module));
    all.retain(|w| filter_arg.as_deref().is_none_or(|f| w.name.contains(f)));
    // `EVENTSEAL_BENCH_SIDE=wasm` (or `native`) runs one side only, e.g. under a profiler.
    let side = std::env::var("EVENTSEAL_BENCH_SIDE").ok();
    let (run_native, run_wasm) = (side.as_deref() != Some("wasm"), side.as_deref() != Some("native"));
    let sizes: Vec<(u64, u64)> = all
        .iter_mut()
        .map(|w| {
            let native = if run_native { calibrate(&mut w.native, budget) } else { 0 };
            (native, if run_wasm { calibrate(&mut w.wasm, budget) } else { 0 })
        })
        .collect();
    let mut samples = vec![(Vec::new(), Vec::new()); all.len()];
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for ((w, &(n_native, n_wasm)), (native, wasm)) in all.iter_mut().zip(&sizes).zip(&mut samples) {
            // Alternate which side goes first, so neither always runs on a warmer cache.
            let one = |side: &mut Side, n: u64, into: &mut Vec<f64>| {
                if n > 0 {
                    into.push(side(n).as_secs_f64() * 1e9 / n as f64);
                }
            };
            if round % 2 == 0 {
                one(&mut w.native, n_native, native);
                one(&mut w.wasm, n_wasm, wasm);
            } else {
                one(&mut w.wasm, n_wasm, wasm);
                one(&mut w.native, n_native, native);
            }
        }
    }
    println!("filter wasm in wasmtime (eventseal-harness) vs eventseal-core native; median of {rounds} interleaved rounds");
    println!("| workload | native per event | wasm per event | native events/s | wasm events/s | wasm ÷ native (throughput) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (w, (native, wasm)) in all.iter().zip(samples) {
        let (native, wasm) = (median(native), median(wasm));
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.2}× |",
            w.name,
            format_time(native),
            format_time(wasm),
            1e9 / native,
            1e9 / wasm,
            native / wasm
        );
    }
}
