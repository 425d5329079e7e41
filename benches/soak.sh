#!/usr/bin/env bash
# The soak, for as long as you like: the shipped filter in real Envoy (--concurrency 2)
# under wrk's load of seal, open and tampered requests plus signed webhook deliveries
# (fresh ids, replays, tampered bodies), with OpenBao killed and restarted twice and the
# audit collector down for a while. The upstream checks every body it receives. It prints
# requests by status, leaks, half-sealed bodies, accepted replays, the audit chain's
# checks, recovery after each outage, and Envoy's RSS and the replay cache over time, and
# fails if any of them is wrong (tests/e2e/soak.rs says what each check is).
#
#   benches/soak.sh            # 600 s
#   benches/soak.sh 1800       # 30 minutes
#
# The report is also written to target/soak/report.md. The test suite runs the same test
# for 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
scripts/setup
mkdir -p target/soak
EVENTSEAL_SOAK_SECONDS="$seconds" EVENTSEAL_SOAK_REPORT="$PWD/target/soak/report.md" \
    cargo test --locked -p eventseal-e2e --test e2e -- soak --nocapture
echo "report: target/soak/report.md (commit $(git rev-parse --short HEAD))"
