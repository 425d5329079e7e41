"""eventseal against what a Python user would write to seal the same fields, in one run.

    .venv/bin/python benches/python-alternatives.py [--rounds 5] [--seconds 2]

Every contender seals the 3 fields /data/f0../data/f2 of the same 1 KiB CloudEvents-style
event (the core bench's workload, benches/src/workloads.rs) as per-field JWE
compact envelopes (`dir`, A256GCM, `kid`, `ptr` and `ctx` in the protected header, as
docs/FORMAT.md says) and returns the event as JSON bytes, single-threaded:

  jwcrypto          the JOSE library a user reaches for (`jwcrypto.jwe.JWE` per field)
  pyca-handwritten  the fastest hand-written Python: pyca `cryptography` AESGCM, the
                    compact envelope built by hand
  component         eventseal.component.wasm called from Python through PyPI `wasmtime`
                    (examples/python/service.py's Sealer, which calls the text form,
                    `seal-text`)
  eventseal-native  eventseal-core natively (`eventseal-bench native-seal`, one thread)

Before timing, the component opens what each Python contender sealed, so all of them make
envelopes eventseal accepts. The contenders run interleaved (A B C D, A B C D, ...) and the
table shows the median events/s and the ratio to the hand-written pyca version.
"""

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwe, jwk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "python"))
from service import Sealer  # noqa: E402  (the example's wrapper around the component)

TARGET = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")  # as cargo, run from ROOT, reads it
BENCH = TARGET / "release" / "eventseal-bench"
COMPONENT = TARGET / "wasm32-wasip2" / "release" / "eventseal_component.wasm"
POINTERS = ["/data/f0", "/data/f1", "/data/f2"]
HEADERS = {"content-type": "application/json", "x-principal": "bench"}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def bench_tool(*args):
    return subprocess.run([str(BENCH), *map(str, args)], check=True, capture_output=True).stdout


def build():
    cargo = ["cargo", "build", "--quiet", "--release"]
    subprocess.run([*cargo, "-p", "eventseal-benches", "--bin", "eventseal-bench"], cwd=ROOT, check=True)
    subprocess.run([*cargo, "-p", "eventseal-component", "--target", "wasm32-wasip2"], cwd=ROOT, check=True)


def seal_key(keyring):
    key = next(k for k in keyring["keys"] if k["alg"] == "A256GCM" and k["status"] == "primary")
    return key["kid"], base64.urlsafe_b64decode(key["k"] + "=" * (-len(key["k"]) % 4))


def header(kid, pointer, event_type):
    return {"alg": "dir", "enc": "A256GCM", "kid": kid, "ptr": pointer, "ctx": {"type": event_type}}


def field(event, pointer):
    """The parent object and member name of a /data/fN pointer."""
    _, outer, name = pointer.split("/")
    return event[outer], name


def jwcrypto_sealer(kid, key):
    jwk_key = jwk.JWK(kty="oct", k=b64(key).decode())

    def seal(body):
        event = json.loads(body)
        for pointer in POINTERS:
            parent, name = field(event, pointer)
            token = jwe.JWE(json.dumps(parent[name]).encode(), protected=json.dumps(header(kid, pointer, event["type"])))
            token.add_recipient(jwk_key)
            parent[name] = token.serialize(compact=True)
        return json.dumps(event).encode()

    return seal


def pyca_sealer(kid, key):
    aead = AESGCM(key)

    def seal(body):
        event = json.loads(body)
        for pointer in POINTERS:
            parent, name = field(event, pointer)
            protected = b64(json.dumps(header(kid, pointer, event["type"]), separators=(",", ":")).encode())
            iv = os.urandom(12)
            sealed = aead.encrypt(iv, json.dumps(parent[name]).encode(), protected)
            parent[name] = b".".join([protected, b"", b64(iv), b64(sealed[:-16]), b64(sealed[-16:])]).decode()
        return json.dumps(event).encode()

    return seal


def component_sealer(sealer):
    def seal(body):
        return sealer.seal(body, "POST", "/bench", HEADERS).event

    return seal


def rate(seal, body, seconds):
    """Events per second sealing `body` for about `seconds`."""
    events, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(16):
            seal(body)
        events += 16
        now = time.perf_counter()
        if now >= deadline:
            return events / (now - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-build", action="store_true", help="use the binaries already in target/")
    args = parser.parse_args()
    if not args.no_build:
        build()

    body = bench_tool("event", 1024, 3)
    keyring_text = bench_tool("keyring").decode()
    kid, key = seal_key(json.loads(keyring_text))
    component_seal = Sealer(COMPONENT, bench_tool("policy", "seal", 3).decode(), keyring_text)
    component_open = Sealer(COMPONENT, bench_tool("policy", "open", 3).decode(), keyring_text)
    contenders = {
        "jwcrypto": jwcrypto_sealer(kid, key),
        "pyca-handwritten": pyca_sealer(kid, key),
        "component": component_sealer(component_seal),
    }
    # Every contender's envelopes open with eventseal, to the original event.
    original = json.loads(body)
    for name, seal in contenders.items():
        sealed = seal(body)
        if any(str(v).startswith("sensitive") for v in json.loads(sealed)["data"].values()):
            sys.exit(f"{name} left a field in plaintext")
        opened = component_open.open(sealed, "POST", "/bench", HEADERS, principal="bench").event
        if json.loads(opened) != original:
            sys.exit(f"eventseal did not open {name}'s envelopes to the original event")

    samples = {name: [] for name in [*contenders, "eventseal-native"]}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
        for name, seal in contenders.items():
            samples[name].append(rate(seal, body, args.seconds))
        samples["eventseal-native"].append(float(bench_tool("native-seal", args.seconds)))

    base = statistics.median(samples["pyca-handwritten"])
    print(f"sealing 3 fields of a 1 KiB event, one thread, events/s; median of {args.rounds} interleaved rounds of {args.seconds:g}s")
    print("| contender | events/s | per event | ÷ pyca hand-written |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {1e6 / median:.1f} µs | {median / base:.2f}× |")
    component_seal.close()
    component_open.close()


if __name__ == "__main__":
    main()
