"""An event service that seals events before publishing and opens them after consuming,
with the eventseal component (`eventseal.component.wasm`) running in wasmtime.

    python service.py keyring            print a fresh keyring (JWK Set) to store as a secret
    python service.py demo               seal, then open, an example order event
    python service.py seal < event.json  seal and sign an event: {"body", "event", "headers", "fields"}
    python service.py open < sealed.json verify and open what `seal` printed: {"event", "fields", ...}

The keyring comes from the service's secret store; here, the EVENTSEAL_KEYRING
environment variable. The component comes from EVENTSEAL_COMPONENT (default:
target/eventseal.component.wasm in the repository). Every mode prints one JSON document.
"""

import base64
import json
import os
import secrets
import sys
from pathlib import Path

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, ResourceAny

HERE = Path(__file__).resolve().parent
DEFAULT_COMPONENT = HERE.parent.parent / "target" / "eventseal.component.wasm"
INTERFACE = "eventseal:seal/sealing@0.1.1"  # 0.1.1: the text form of the operations

# The two routes of the example policy (policy.json): publishers post here, and the
# service's consumer receives deliveries there.
PUBLISH = ("POST", "/events/orders")
CONSUME = ("POST", "/inbox/orders")
CONSUMER = "spiffe://example.org/ns/billing/sa/consumer"

ORDER = {
    "specversion": "1.0",
    "id": "evt-1001",
    "type": "com.example.order.created",
    "source": "/shop",
    "data": {
        "order_id": "o-77",
        "amount": 129.5,
        "card": {"number": "4111 1111 1111 1111", "expiry": "12/29"},
        "customer": {"email": "ada@example.org", "name": "Ada"},
    },
}


def record(**fields):
    """A WIT record value. wasmtime matches `option<record>` arguments by class, so
    records are built as `wasmtime.component.Record`, with the WIT field names."""
    value = Record()
    value.__dict__.update(fields)
    return value


class Refused(Exception):
    """The component refused the event, exactly as the gateway filter would.

    `kind` is the problem type slug (`urn:eventseal:problem:<kind>`), `status` the HTTP
    status the filter answers with; `detail` names a field or header, never a value."""

    def __init__(self, problem):
        super().__init__(f"{problem.kind} ({problem.status}): {problem.detail}")
        self.kind, self.status, self.detail = problem.kind, problem.status, problem.detail


class Sealer:
    """One policy with its keyring, in one component instance. Not thread-safe: give
    each thread its own, or guard it with a lock."""

    def __init__(self, component_path, policy, keyring):
        engine = Engine()
        self._store = Store(engine)
        # The component imports only WASI: the wall clock (signature times), random
        # (nonces), and the standard library's environment and stdio, all empty here.
        self._store.set_wasi(WasiConfig())
        linker = Linker(engine)
        linker.add_wasip2()
        instance = linker.instantiate(self._store, Component.from_file(engine, str(component_path)))
        interface = instance.get_export_index(self._store, INTERFACE)

        def export(name):
            index = instance.get_export_index(self._store, name, interface)
            if index is None:
                raise ValueError(f"{component_path} does not export {name} ({INTERFACE}): rebuild it")
            return instance.get_func(self._store, index)

        # Each operation in both forms: wasmtime copies a `list<u8>` one byte at a time but
        # a `string` at once, so events (JSON, hence UTF-8) go as text; see `_call`.
        self._calls = {
            op: (export(f"[method]sealer.{op}"), export(f"[method]sealer.{op}-text")) for op in ("seal", "open", "sign", "verify")
        }
        # result<sealer, config-error>: wasmtime returns the ok or the err value itself,
        # since a resource and a record can be told apart by their Python class.
        created = export("[static]sealer.create")(self._store, policy, keyring)
        if not isinstance(created, ResourceAny):
            raise ValueError(f"configuration refused: {created.message}")
        self._sealer = created

    def _call(self, op, event, method, path, headers, principal=None, claims=None):
        exchange = record(method=method, path=path, authority="events.example.org", headers=list(headers.items()), response=None)
        who = None if principal is None else record(id=principal, claims=json.dumps(claims) if claims else "")
        by_bytes, by_text = self._calls[op]
        try:
            call, event = by_text, event.decode()
        except UnicodeDecodeError:
            # Not UTF-8, so not JSON: the byte form lets the component refuse it as the gateway does.
            call = by_bytes
        # result<outcome, problem>: both are records, so wasmtime tags the value.
        result = call(self._store, self._sealer, event, exchange, who)
        if result.tag == "err":
            raise Refused(result.payload)
        outcome = result.payload
        if isinstance(outcome.event, str):
            outcome.event = outcome.event.encode()  # a text-outcome: the bytes the byte form returns
        return outcome

    def seal(self, event, method, path, headers, **who):
        """Seals (and, if the rule says so, signs) an event before publishing it."""
        return self._call("seal", event, method, path, headers, **who)

    def open(self, event, method, path, headers, **who):
        """Opens (after verifying, if the rule says so) an event after consuming it."""
        return self._call("open", event, method, path, headers, **who)

    def close(self):
        """Drops the sealer inside the component (its keys are zeroized there)."""
        self._sealer.drop(self._store)


def new_keyring():
    """A fresh JWK Set: one AES-256-GCM key for sealing, one HMAC key for signatures."""

    def b64(n):
        return base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()

    return {
        "keys": [
            {"kty": "oct", "kid": "orders-1", "alg": "A256GCM", "k": b64(32), "status": "primary"},
            {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": b64(32), "status": "primary"},
        ]
    }


def seal_event(sealer, event):
    """Seals and signs an event. `body` is the exact text that was signed: publish it
    byte for byte, with `headers` (the signature), or the signature will not verify."""
    out = sealer.seal(json.dumps(event).encode(), *PUBLISH, {"content-type": "application/json"})
    fields = {f.pointer: {"kid": f.kid, "result": f.result} for f in out.fields}
    return {"body": out.event.decode(), "event": json.loads(out.event), "headers": dict(out.headers), "fields": fields}


def open_event(sealer, sealed, principal=CONSUMER):
    """Verifies and opens a delivery: `sealed` holds the body as received and its headers."""
    headers = {"content-type": "application/json", **sealed["headers"]}
    out = sealer.open(sealed["body"].encode(), *CONSUME, headers, principal=principal)
    fields = {f.pointer: {"kid": f.kid, "result": f.result} for f in out.fields}
    return {"event": json.loads(out.event), "fields": fields, "verified": out.verified}


def main(argv):
    mode = argv[1] if len(argv) > 1 else "demo"
    if mode == "keyring":
        print(json.dumps(new_keyring()))
        return 0
    keyring = os.environ.get("EVENTSEAL_KEYRING")
    if not keyring:
        print("EVENTSEAL_KEYRING must hold the keyring (a JWK Set); `python service.py keyring` makes one", file=sys.stderr)
        return 2
    component = Path(os.environ.get("EVENTSEAL_COMPONENT", DEFAULT_COMPONENT))
    if not component.is_file():
        print(f"{component} is missing; build it as README.md says (cargo build -p eventseal-component ...)", file=sys.stderr)
        return 2
    try:
        sealer = Sealer(component, (HERE / "policy.json").read_text(), keyring)
    except ValueError as refused:
        print(refused, file=sys.stderr)
        return 2
    try:
        if mode == "seal":
            report = seal_event(sealer, json.load(sys.stdin))
        elif mode == "open":
            report = open_event(sealer, json.load(sys.stdin))
        elif mode == "demo":
            sealed = seal_event(sealer, ORDER)
            opened = open_event(sealer, sealed)
            try:
                open_event(sealer, sealed)
                replay = None
            except Refused as refused:
                replay = {"kind": refused.kind, "status": refused.status}
            report = {"original": ORDER, "sealed": sealed, "opened": opened, "replayed": replay}
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Refused as refused:
        print(json.dumps({"refused": {"kind": refused.kind, "status": refused.status, "detail": refused.detail}}))
        return 1
    finally:
        sealer.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
