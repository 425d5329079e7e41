//! `eventseal-bench`: the inputs of `benches/envoy-load.sh` and `benches/python-alternatives.py`,
//! made by core itself, eventseal's native sealing rate for the Python comparison, and the
//! NATS load generator of `benches/nats-load.sh`.
//!
//! ```text
//! eventseal-bench keyring                     the workloads' keyring (JWK Set)
//! eventseal-bench event <bytes> <fields>      a workload event
//! eventseal-bench policy <action> <fields>    a workload policy (seal, open, verify)
//! eventseal-bench sealed <bytes> <fields>     the event with its fields sealed (for `open`)
//! eventseal-bench signed <count> <unix-time> <id-prefix>
//!                                             `id timestamp signature` lines for the 1 KiB event
//! eventseal-bench native-seal <seconds>       events/s sealing 3 fields of the 1 KiB event (one thread)
//! eventseal-bench filter-wasm                 the path of the filter wasm this crate built
//! eventseal-bench nats-policy <fields>        the NATS gateway policy (EVENTSEAL_KEYS keyring)
//! eventseal-bench nats-load <publish|delivery> --target URL --direct URL [options]
//!                                             messages/s, p50 and p99 ms, errors of one NATS run
//!                                             (src/nats_load.rs)
//! ```

mod nats_load;

use eventseal_benches::{decide, engine, headers, signature_headers, workloads};
use std::hint::black_box;
use std::io::Write as _;
use std::time::{Duration, Instant};

fn number(args: &[String], i: usize) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage())
}

fn usage() -> ! {
    eprintln!(
        "usage: eventseal-bench keyring | event <bytes> <fields> | policy <action> <fields> | sealed <bytes> <fields> | signed <count> <unix-time> <id-prefix> | native-seal <seconds> | filter-wasm | nats-policy <fields> | nats-load <publish|delivery> --target URL --direct URL [--messages N] [--window N] [--flush-every N] [--cert PEM --key PEM --ca PEM] [--expect plain|sealed] [--policy FILE]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let as_usize = |i| usize::try_from(number(&args, i)).unwrap_or_else(|_| usage());
    match args.get(1).map(String::as_str) {
        Some("keyring") => writeln!(out, "{}", workloads::KEYRING),
        Some("event") => out.write_all(&workloads::event(as_usize(2), as_usize(3))),
        Some("policy") => writeln!(out, "{}", workloads::policy(args.get(2).unwrap_or_else(|| usage()), as_usize(3))),
        Some("sealed") => {
            let fields = as_usize(3);
            let sealer = engine(&workloads::policy("seal", fields));
            out.write_all(&decide(&sealer, &headers(), &workloads::event(as_usize(2), fields), 0))
        }
        Some("signed") => {
            let (count, now) = (number(&args, 2), i64::try_from(number(&args, 3)).unwrap_or_else(|_| usage()));
            let prefix = args.get(4).unwrap_or_else(|| usage());
            let verifier = engine(&workloads::policy("verify", 3));
            let event = workloads::event(1024, 3);
            (0..count).try_for_each(|n| {
                let [(_, id), (_, timestamp), (_, signature)] = signature_headers(&verifier, &format!("{prefix}{n}"), now, &event);
                writeln!(out, "{id} {timestamp} {signature}")
            })
        }
        Some("native-seal") => {
            let seconds = Duration::from_secs_f64(args.get(2).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage()));
            let sealer = engine(&workloads::policy("seal", 3));
            let (headers, event) = (headers(), workloads::event(1024, 3));
            let start = Instant::now();
            let mut events = 0u64;
            while start.elapsed() < seconds {
                for _ in 0..64 {
                    black_box(decide(&sealer, &headers, black_box(&event), 0));
                }
                events += 64;
            }
            writeln!(out, "{:.0}", events as f64 / start.elapsed().as_secs_f64())
        }
        Some("filter-wasm") => writeln!(out, "{}", env!("EVENTSEAL_PROXY_WASM")),
        Some("nats-policy") => writeln!(out, "{}", workloads::nats_policy(as_usize(2))),
        Some("nats-load") => {
            let options = nats_load::Options::parse(&args[2..]).unwrap_or_else(|e| {
                eprintln!("nats-load: {e}");
                usage()
            });
            let outcome = nats_load::run(&options).unwrap_or_else(|e| {
                eprintln!("nats-load: {e}");
                std::process::exit(1)
            });
            writeln!(
                out,
                "{:.0} {:.3} {:.3} {}",
                outcome.rate, outcome.p50_ms, outcome.p99_ms, outcome.errors
            )
        }
        _ => usage(),
    }
    .and_then(|()| out.flush())
    .unwrap_or_else(|e| panic!("cannot write to stdout: {e}"));
}
