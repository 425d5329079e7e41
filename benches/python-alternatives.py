"""eventseal against what a Python or Node.js user would write to seal the same fields, in one run.

    python3 benches/python-alternatives.py [--rounds 5] [--seconds 2] [--no-build] [--baseline-npm TGZ]

It builds the packages (scripts/package) and installs them as users do: the wheel into
a fresh venv (target/bench/venv, with pyca `cryptography` and jwcrypto for the
hand-written contenders), the npm tarball into a fresh folder (target/bench/node), and
runs itself again in that venv.

Every contender seals the 3 fields /data/f0../data/f2 of the same 1 KiB CloudEvents-style
event (the core bench's workload, benches/src/workloads.rs) as per-field JWE
compact envelopes (`dir`, A256GCM, `kid`, `ptr` and `ctx` in the protected header, as
docs/FORMAT.md says) and returns the event as JSON, single-threaded:

  jwcrypto             the JOSE library a Python user reaches for (`jwcrypto.jwe.JWE` per field)
  pyca-handwritten     the fastest hand-written Python: pyca `cryptography` AESGCM, the
                       compact envelope built by hand
  python-package       the installed `eventseal` package, `Sealer.seal` per event
  python-package-batch the same, `Sealer.seal_many` with 100 events per call
  node-crypto          the fastest hand-written Node.js: node:crypto AES-256-GCM, the
                       envelope built by hand (benches/node-contenders.mjs)
  node-package         the installed `@eventseal/component`, `seal` per event
  node-package-batch   the same, `sealMany` with 100 events per call
  eventseal-native     eventseal-core natively (`eventseal-bench native-seal`, one thread)

Before timing, the Python package opens what each contender sealed, so all of them make
envelopes eventseal accepts. The contenders run interleaved (A B C ..., A B C ..., ...)
and the table shows the median events/s and the ratio to the hand-written pyca version.
Below it: the npm package's calls into the host's `wasi:random` per event (each a
crossing from wasm into JavaScript), counted by node-contenders.mjs.

--baseline-npm TGZ installs another npm tarball (an earlier build, saved from dist/) into
target/bench/node-baseline and adds its two contenders to the same interleaved rounds
(`node-package@baseline`, `node-package-batch@baseline`): a change to the component,
measured before and after under the same conditions.
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")  # as cargo, run from ROOT, reads it
BENCH = TARGET / "release" / "eventseal-bench"
WORK = TARGET / "bench"
POINTERS = ["/data/f0", "/data/f1", "/data/f2"]
HEADERS = {"content-type": "application/json", "x-principal": "bench"}
BATCH = 100
# The table's Node.js contenders and their names in benches/node-contenders.mjs.
NODE = {"node-crypto": "node-crypto", "node-package": "package", "node-package-batch": "package-batch"}
# The hand-written contenders' libraries, at the versions tests/requirements.txt pins.
PYTHON_CONTENDERS = ["cryptography==50.0.2", "jwcrypto==1.6.1"]


def prepare(args):
    """Builds the packages and installs them fresh, then runs this script in the venv."""
    if not args.no_build:
        subprocess.run([str(ROOT / "scripts" / "package")], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "eventseal-benches", "--bin", "eventseal-bench"], cwd=ROOT, check=True)
    (wheel,) = (ROOT / "dist").glob("eventseal-*.whl")
    (tarball,) = (ROOT / "dist").glob("eventseal-component-*.tgz")
    shutil.rmtree(WORK, ignore_errors=True)
    venv, node = WORK / "venv", WORK / "node"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel), *PYTHON_CONTENDERS], check=True)
    node.mkdir(parents=True)
    subprocess.run(["npm", "init", "-y"], cwd=node, check=True, capture_output=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", str(tarball)], cwd=node, check=True)
    shutil.copyfile(ROOT / "benches" / "node-contenders.mjs", node / "node-contenders.mjs")
    if args.baseline_npm:
        baseline = WORK / "node-baseline"
        baseline.mkdir(parents=True)
        subprocess.run(["npm", "init", "-y"], cwd=baseline, check=True, capture_output=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", str(Path(args.baseline_npm).resolve())], cwd=baseline, check=True)
        shutil.copyfile(ROOT / "benches" / "node-contenders.mjs", baseline / "node-contenders.mjs")
    os.execv(venv / "bin" / "python", [str(venv / "bin" / "python"), __file__, "--inside", *sys.argv[1:]])


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def bench_tool(*args):
    return subprocess.run([str(BENCH), *map(str, args)], check=True, capture_output=True).stdout


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
    from jwcrypto import jwe, jwk

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
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


def package_sealer(sealer):
    def seal(body):
        return sealer.seal(body, route="/bench", headers=HEADERS).event

    return seal


def package_batch_sealer(sealer):
    def seal(body):
        return [o.event for o in sealer.seal_many([body] * BATCH, route="/bench", headers=HEADERS)]

    return seal


def node_contender(name, files, folder="node"):
    def run(seconds):
        command = ["node", "node-contenders.mjs", name, str(seconds), *map(str, files)]
        return subprocess.run(command, cwd=WORK / folder, check=True, capture_output=True, text=True).stdout.strip()

    return run


def rate(seal, body, seconds, per_call=1):
    """Events per second sealing `body` for about `seconds`."""
    events, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(16):
            seal(body)
        events += 16 * per_call
        now = time.perf_counter()
        if now >= deadline:
            return events / (now - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-build", action="store_true", help="use the packages in dist/ and the binaries in target/")
    parser.add_argument("--baseline-npm", metavar="TGZ", help="an earlier npm tarball, timed beside the one built now")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        prepare(args)

    from eventseal import Sealer  # the installed package, in the venv prepare() made

    body = bench_tool("event", 1024, 3)
    keyring_text = bench_tool("keyring").decode()
    seal_policy = bench_tool("policy", "seal", 3).decode()
    files = [WORK / "policy.json", WORK / "keyring.json", WORK / "event.json"]
    for path, content in zip(files, [seal_policy, keyring_text, body.decode()]):
        path.write_text(content)
    kid, key = seal_key(json.loads(keyring_text))
    package_seal = Sealer(seal_policy, keyring_text)
    package_open = Sealer(bench_tool("policy", "open", 3).decode(), keyring_text)
    python = {
        "jwcrypto": (jwcrypto_sealer(kid, key), 1),
        "pyca-handwritten": (pyca_sealer(kid, key), 1),
        "python-package": (package_sealer(package_seal), 1),
        "python-package-batch": (package_batch_sealer(package_seal), BATCH),
    }
    node = {name: node_contender(script_name, files) for name, script_name in NODE.items()}
    if args.baseline_npm:
        for name in ["node-package", "node-package-batch"]:
            node[f"{name}@baseline"] = node_contender(NODE[name], files, "node-baseline")
    # Every contender's envelopes open with eventseal, to the original event.
    original = json.loads(body)
    samples = {name: seal(body) for name, (seal, _) in python.items()}
    samples.update({name: run("sample").encode() for name, run in node.items()})
    for name, sealed in samples.items():
        sealed = sealed[0] if isinstance(sealed, list) else sealed
        if any(str(v).startswith("sensitive") for v in json.loads(sealed)["data"].values()):
            sys.exit(f"{name} left a field in plaintext")
        opened = package_open.open(sealed, route="/bench", headers=HEADERS, principal="bench").event
        if json.loads(opened) != original:
            sys.exit(f"eventseal did not open {name}'s envelopes to the original event")

    rates = {name: [] for name in [*python, *node, "eventseal-native"]}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
        for name, (seal, per_call) in python.items():
            rates[name].append(rate(seal, body, args.seconds, per_call))
        for name, run in node.items():
            rates[name].append(float(run(args.seconds)))
        rates["eventseal-native"].append(float(bench_tool("native-seal", args.seconds)))

    base = statistics.median(rates["pyca-handwritten"])
    print(f"sealing 3 fields of a 1 KiB event, one thread, events/s; median of {args.rounds} interleaved rounds of {args.seconds:g}s")
    print("| contender | events/s | per event | ÷ pyca hand-written |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {1e6 / median:.1f} µs | {median / base:.2f}× |")
    print("calls into the host's wasi:random/random per event, npm package:")
    for name, run in node.items():
        if name != "node-crypto":
            calls = json.loads(run("random"))
            print(f"  {name}: " + ", ".join(f"{function} {n:.3f}" for function, n in calls.items()))
    package_seal.close()
    package_open.close()


if __name__ == "__main__":
    main()
