"""Seeds the fuzz corpora (fuzz/corpus/<target>/) from the project's own vectors and
cases, plus hand-written protocol samples. Run from anywhere: python3 fuzz/seed.py.
Entries are named by the SHA-1 of their content, as libFuzzer names what it finds, so
seeding again adds nothing twice."""

import glob
import hashlib
import json
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"


def add(target, data):
    data = data.encode() if isinstance(data, str) else data
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


vectors = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(ROOT / "tests/vectors/*.json")))]
cases = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(ROOT / "tests/cases/*.json")))]
events = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(ROOT / "tests/vectors/events/*.json")))]

for v in vectors:
    if isinstance(v.get("envelope"), str):
        add("envelope", v["envelope"])
    if "keys" in v:
        add("keyring", json.dumps(v["keys"]))
for c in cases:
    add("policy", json.dumps(c["config"]))
    if "keys" in c:
        add("keyring", json.dumps(c["keys"]))
for e in events:
    add("event", e["event"])
for body in [
    '{"type":"t","data":{"card":{"pan":"4111"},"email":"a@b","items":[{"price":1},{"price":2.5}]},"a":null}',
    '{"data":{"card":"x","email":"y"},"x":{"email":true}}',
    '{"data":[1,2,3]}',
    '{"a":"\\u00e9\\ud83d\\ude00","data":{"card":"\\"quoted\\""}}',
    "[]",
]:
    add("event", body)

# Standard Webhooks: id, timestamp, signature and body separated by 0xFF.
sep = b"\xff"
for id_, ts, sig, body in [
    (b"msg_1", b"1767225600", b"v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", b'{"a":1}'),
    (b"msg_2", b"1767225600", b"v1,abc v1a,def v2,xyz", b"{}"),
    (b"", b"x", b"", b""),
    (b"msg 3", b"-1", b"v1,", b"body"),
    (b"msg_4", b"99999999999999999999", b"v1,====", b"{}"),
]:
    add("webhook", sep.join([id_, ts, sig, body]))

# NATS client and server operations (the first byte picks where the stream is cut).
nats = [
    b'CONNECT {"verbose":false,"headers":true}\r\nPING\r\n',
    b"PUB orders.created 5\r\nhello\r\n",
    b"PUB orders.created reply.1 2\r\nhi\r\nPING\r\nPONG\r\n",
    b"HPUB orders.created 22 27\r\nNATS/1.0\r\nX-A: 1\r\n\r\nhello\r\n",
    b"SUB orders.* 1\r\nUNSUB 1 5\r\n",
    b"MSG orders.created 1 5\r\nhello\r\n",
    b"HMSG orders.created 1 reply 22 24\r\nNATS/1.0\r\nX-A: 1\r\n\r\nhi\r\n",
    b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n',
    b"+OK\r\n-ERR 'Unknown Protocol Operation'\r\n",
    b"PUB a 99999999999\r\n",
]
for i, sample in enumerate(nats):
    add("nats-frames", bytes([i * 7 % 256]) + sample)
add("nats-gateway", nats[1] + nats[2] + nats[3] + b"\xff" + nats[7] + b"PONG\r\n" + nats[5] + nats[6])
add("nats-gateway", nats[0] + nats[4] + b"\xff" + nats[7] + nats[8])
add("nats-gateway", b"PUB a 3\r\nabc\r\nPUB b 3\r\nxyz\r\n\xffPONG\r\nPONG\r\n")
add("nats-gateway", nats[3] * 3 + b"\xff")
add("nats-gateway", b"\xff" + nats[6] + nats[5])


def pairs(*items):
    """The proxy-wasm map encoding: count, (name length, value length)*, then NUL-ended bytes."""
    out = len(items).to_bytes(4, "little")
    for k, v in items:
        out += len(k).to_bytes(4, "little") + len(v).to_bytes(4, "little")
    for k, v in items:
        out += k + b"\0" + v + b"\0"
    return out


for sample in [
    pairs((b":method", b"POST"), (b":path", b"/events/orders"), (b"content-type", b"application/json")),
    pairs((b"x-client-id", b"shop-1")),
    pairs(),
    pairs((b"", b""), (b"a", b"\xff\x00b")),
    b"\x02\x00\x00\x00\xff\xff\xff\xff",
]:
    add("header-map", sample)
# JWT claims as Envoy serializes a Struct: a map, a list, strings, a double, a bool.
for sample in [
    pairs((b"sub", b"billing"), (b"roles", pairs((b"reader", b""), (b"admin", b"")))),
    pairs((b"tenant", b"acme"), (b"exp", struct.pack("<d", 1767225600.0))),
    b"plain string",
    b"\x01",
    struct.pack("<d", 3.5),
]:
    add("property", sample)
