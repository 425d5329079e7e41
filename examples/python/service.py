"""An event service that seals events before publishing and opens them after consuming,
with the `eventseal` package (`pip install eventseal`, or the wheel scripts/package builds).

    python service.py keyring            print a fresh keyring (JWK Set) to store as a secret
    python service.py demo               seal, then open, an example order event
    python service.py seal < event.json  seal and sign an event: {"body", "event", "headers", "fields"}
    python service.py open < sealed.json verify and open what `seal` printed: {"event", "fields", ...}

The keyring comes from the service's secret store; here, the EVENTSEAL_KEYRING
environment variable. Every mode prints one JSON document.
"""

import base64
import json
import os
import secrets
import sys
from pathlib import Path

from eventseal import ConfigError, Refused, Sealer

POLICY = Path(__file__).resolve().parent / "policy.json"
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


def new_keyring():
    """A fresh JWK Set: one AES-256-GCM key for sealing, one HMAC key for signatures."""
    key = lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()  # noqa: E731
    return {
        "keys": [
            {"kty": "oct", "kid": "orders-1", "alg": "A256GCM", "k": key(), "status": "primary"},
            {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": key(), "status": "primary"},
        ]
    }


def report_fields(outcome):
    return {f.pointer: {"kid": f.kid, "result": f.result} for f in outcome.fields}


def seal_event(sealer, event):
    """Seals and signs an event (`orders-publish`). Publish `body` byte for byte with
    `headers` (the signature), or the signature will not verify."""
    out = sealer.seal(event, route="/events/orders")
    return {"body": out.text, "event": out.json(), "headers": out.headers, "fields": report_fields(out)}


def open_event(sealer, sealed):
    """Verifies and opens a delivery (`orders-consume`) as the billing consumer."""
    out = sealer.open(sealed["body"], route="/inbox/orders", headers=sealed["headers"], principal=CONSUMER)
    return {"event": out.json(), "fields": report_fields(out), "verified": out.verified}


def main(mode):
    if mode == "keyring":
        print(json.dumps(new_keyring()))
        return 0
    keyring = os.environ.get("EVENTSEAL_KEYRING")
    if not keyring:
        print("EVENTSEAL_KEYRING must hold the keyring (a JWK Set); `python service.py keyring` makes one", file=sys.stderr)
        return 2
    try:
        sealer = Sealer(POLICY.read_text(), keyring)
    except ConfigError as refused:
        print(f"configuration refused: {refused}", file=sys.stderr)
        return 2
    with sealer:
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
                    replayed = None
                except Refused as refused:
                    replayed = {"kind": refused.kind, "status": refused.status}
                report = {"original": ORDER, "sealed": sealed, "opened": opened, "replayed": replayed}
            else:
                print(__doc__, file=sys.stderr)
                return 2
        except Refused as refused:
            print(json.dumps({"refused": {"kind": refused.kind, "status": refused.status, "detail": refused.detail}}))
            return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo"))
