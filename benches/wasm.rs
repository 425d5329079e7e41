//! The core bench's workloads through the shipped filter wasm in the harness (wasmtime),
//! against core natively on the same workload, interleaved in one run.
//!
//! `cargo bench -p eventseal-benches --bench wasm [-- <name filter>]`; environment:
//! `EVENTSEAL_BENCH_ROUNDS` (default 5) and `EVENTSEAL_BENCH_MS` (time per side per round,
//! default 200). Prints one table: median time per event on each side and the ratio.
//! `EVENTSEAL_BENCH_CLOCK=cpu` times both sides with the CPU time of the bench's thread
//! instead of the wall clock: on a machine shared with other work, the wall clock also
//! counts the time the thread waited for a core.
//! `EVENTSEAL_BENCH_FILTERS=before.wasm,after.wasm` runs these filter builds instead of the
//! one this bench built, each as a wasm side of its own, interleaved with the others in every
//! round of the same process, and adds their time ratios to the first: a before/after of the
//! filter that no change of the machine's load between two runs can tilt.
//! `EVENTSEAL_BENCH_EVENTS=n` runs n events per side and round instead of filling the time
//! budget: the same work in every run, for counting instructions (valgrind) or profiling.
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

/// Whether `EVENTSEAL_BENCH_CLOCK=cpu` asked for the thread's CPU time.
fn cpu_clock() -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CPU.get_or_init(|| std::env::var("EVENTSEAL_BENCH_CLOCK").is_ok_and(|v| v == "cpu"))
}

/// A started clock: the wall clock, or the CPU time of this thread (see [`cpu_clock`]).
enum Stopwatch {
    Wall(Instant),
    ThreadCpu(Duration),
}

impl Stopwatch {
    fn start() -> Self {
        if cpu_clock() {
            Self::ThreadCpu(thread_cpu_time())
        } else {
            Self::Wall(Instant::now())
        }
    }

    fn elapsed(&self) -> Duration {
        match self {
            Self::Wall(start) => start.elapsed(),
            Self::ThreadCpu(start) => thread_cpu_time().saturating_sub(*start),
        }
    }
}

fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(now.tv_sec).unwrap_or(0), u32::try_from(now.tv_nsec).unwrap_or(0))
}

struct Workload {
    name: String,
    native: Side,
    /// One side per filter build.
    wasm: Vec<Side>,
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
    let start = Stopwatch::start();
    for exchange in exchanges {
        let outcome = plugin.run_http(black_box(exchange)).expect("the filter does not trap");
        if let Some(reply) = outcome.local_reply() {
            panic!("the filter refused a workload event: {} {}", reply.status, reply.body_text());
        }
        black_box(outcome);
        // Envoy writes each audit line out and frees it. Left in the harness's log, the
        // lines pile up, and the reallocations of that growing table (with glibc's
        // consolidation of freed chunks they set off) are no cost of the filter's.
        drop(plugin.take_logs());
    }
    start.elapsed()
}

fn unix_now(plugin: &Plugin) -> i64 {
    i64::try_from(plugin.now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()).expect("in range")
}

fn body_workloads(modules: &[Module]) -> Vec<Workload> {
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
            all.push(Workload {
                name: format!("{action}/{label}"),
                native: Box::new(move |n| {
                    let start = Stopwatch::start();
                    for _ in 0..n {
                        black_box(decide(&native_engine, &native_headers, black_box(&native_input), 0));
                    }
                    start.elapsed()
                }),
                wasm: modules
                    .iter()
                    .map(|module| {
                        let (filter, input) = (plugin(module, &policy), input.clone());
                        Box::new(move |n: u64| run_wasm(&filter, (0..n).map(|_| exchange(PATH, METHOD, &[], &input)).collect())) as Side
                    })
                    .collect(),
            });
        }
    }
    all
}

fn verify_workload(modules: &[Module]) -> Workload {
    let policy = workloads::policy("verify", 3);
    let event = workloads::event(1024, 3);
    let native_engine = engine(&policy);
    let filters: Vec<Plugin> = modules.iter().map(|module| plugin(module, &policy)).collect();
    let now = unix_now(&filters[0]);
    let (native_event, mut native_next) = (event.clone(), 0u64);
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
            let start = Stopwatch::start();
            for h in &requests {
                black_box(decide(&native_engine, h, black_box(&native_event), now));
            }
            start.elapsed()
        }),
        wasm: filters
            .into_iter()
            .map(|filter| {
                let (event, mut wasm_next) = (event.clone(), 0u64);
                Box::new(move |n: u64| {
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
                }) as Side
            })
            .collect(),
    }
}

fn no_match_workload(modules: &[Module]) -> Workload {
    let policy = workloads::policy("verify", 3);
    let native_engine = engine(&policy);
    let native_headers = headers();
    Workload {
        name: "no-matching-rule".into(),
        native: Box::new(move |n| {
            let start = Stopwatch::start();
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
        wasm: modules
            .iter()
            .map(|module| {
                let filter = plugin(module, &policy);
                Box::new(move |n: u64| run_wasm(&filter, (0..n).map(|_| exchange("/elsewhere", "GET", &[], b"")).collect())) as Side
            })
            .collect(),
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
    let events = env_number("EVENTSEAL_BENCH_EVENTS", 0);
    let calibrate = |side: &mut Side| if events > 0 { events } else { calibrate(side, budget) };
    let wasm_paths: Vec<String> = match std::env::var("EVENTSEAL_BENCH_FILTERS") {
        Ok(list) => list.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        Err(_) => vec![env!("EVENTSEAL_PROXY_WASM").to_owned()],
    };
    assert!(!wasm_paths.is_empty(), "EVENTSEAL_BENCH_FILTERS names no filter");
    let modules: Vec<Module> = wasm_paths
        .iter()
        .map(|path| {
            let compile = Instant::now();
            let module = Module::from_file(path).unwrap_or_else(|e| panic!("cannot load {path}: {e}"));
            eprintln!("compiled {path} in {:.2?}", compile.elapsed());
            module
        })
        .collect();

    let mut all = body_workloads(&modules);
    all.push(verify_workload(&modules));
    all.push(no_match_workload(&modules));
    all.retain(|w| filter_arg.as_deref().is_none_or(|f| w.name.contains(f)));
    // `EVENTSEAL_BENCH_SIDE=wasm` (or `native`) runs one side only, e.g. under a profiler.
    let side = std::env::var("EVENTSEAL_BENCH_SIDE").ok();
    let (run_native, run_wasm) = (side.as_deref() != Some("wasm"), side.as_deref() != Some("native"));
    // Per workload, its sides: native first, then one per filter.
    let sizes: Vec<Vec<u64>> = all
        .iter_mut()
        .map(|w| {
            let native = if run_native { calibrate(&mut w.native) } else { 0 };
            let wasm = w.wasm.iter_mut().map(|side| if run_wasm { calibrate(side) } else { 0 });
            core::iter::once(native).chain(wasm).collect()
        })
        .collect();
    let mut samples: Vec<Vec<Vec<f64>>> = sizes.iter().map(|n| vec![Vec::new(); n.len()]).collect();
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for ((w, sizes), samples) in all.iter_mut().zip(&sizes).zip(&mut samples) {
            let mut sides: Vec<&mut Side> = core::iter::once(&mut w.native).chain(w.wasm.iter_mut()).collect();
            // Rotate which side goes first, so none always runs on a warmer cache.
            let count = sides.len();
            for k in 0..count {
                let i = (k + round as usize) % count;
                if sizes[i] > 0 {
                    samples[i].push(sides[i](sizes[i]).as_secs_f64() * 1e9 / sizes[i] as f64);
                }
            }
        }
    }
    let clock = if cpu_clock() { ", CPU time of the bench thread" } else { "" };
    println!("filter wasm in wasmtime (eventseal-harness) vs eventseal-core native; median of {rounds} interleaved rounds{clock}");
    if modules.len() == 1 {
        println!("| workload | native per event | wasm per event | native events/s | wasm events/s | wasm ÷ native (throughput) |");
        println!("|---|---:|---:|---:|---:|---:|");
        for (w, samples) in all.iter().zip(samples) {
            let (native, wasm) = (median(samples[0].clone()), median(samples[1].clone()));
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
        return;
    }
    let labels: Vec<String> = wasm_paths
        .iter()
        .map(|p| {
            std::path::Path::new(p)
                .file_stem()
                .map_or_else(|| p.clone(), |s| s.to_string_lossy().into_owned())
        })
        .collect();
    let mut head = String::from("| workload | native per event |");
    labels.iter().for_each(|l| head.push_str(&format!(" {l} per event |")));
    labels
        .iter()
        .for_each(|l| head.push_str(&format!(" {l} wasm ÷ native (throughput) |")));
    labels[1..]
        .iter()
        .for_each(|l| head.push_str(&format!(" {l} ÷ {} (time) |", labels[0])));
    println!("{head}");
    println!("|---|{}", "---:|".repeat(1 + 3 * labels.len() - 1));
    for (w, samples) in all.iter().zip(samples) {
        let medians: Vec<f64> = samples.into_iter().map(median).collect();
        let (native, wasm) = (medians[0], &medians[1..]);
        let mut row = format!("| {} | {} |", w.name, format_time(native));
        wasm.iter().for_each(|t| row.push_str(&format!(" {} |", format_time(*t))));
        wasm.iter().for_each(|t| row.push_str(&format!(" {:.2}× |", native / t)));
        wasm[1..].iter().for_each(|t| row.push_str(&format!(" {:.3}× |", t / wasm[0])));
        println!("{row}");
    }
}
