"""The NATS example's clients (nats-py 2.16), run by run.sh once nats-server and Envoy are up.

Every client but the tap goes through the gateway (Envoy with the eventseal filter): TLS
first, with its workload's client certificate; the tap connects straight to nats-server
and sees what the gateway let through. Each section is printed, and each expectation is
checked: the script exits non-zero when one fails.

    python client.py GATEWAY_PORT NATS_SERVER_PORT PKI_DIR EVENT_FILE
"""

import asyncio
import json
import logging
import ssl
import sys
from pathlib import Path

import nats

SUBJECT = "orders.acme.created"
SEALED = ["/data/card/number", "/data/customer/email", "/data/items/0/price", "/data/items/1/price"]
WAIT = 10  # seconds a message may take


class ExpectationFailed(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise ExpectationFailed(what)


def section(title):
    print(f"\n==> {title}", flush=True)


def pointer(document, path):
    """The value at a JSON Pointer without escapes (enough for this example)."""
    for token in path.split("/")[1:]:
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def is_jwe(value):
    """A JWE Compact Serialization: five base64url segments, the header a JSON object."""
    return isinstance(value, str) and value.startswith("eyJ") and value.count(".") == 4


def expect_sealed(payload, original, who):
    event = json.loads(payload)
    for path in SEALED:
        expect(is_jwe(pointer(event, path)), f"{who}: {path} is not a JWE string")
    for path in ["/data/card/number", "/data/customer/email"]:
        expect(pointer(original, path).encode() not in payload, f"{who}: the plaintext of {path} is in the payload")
    # Everything else is unchanged, so routing and filtering on it still work.
    expect(event["id"] == original["id"] and event["data"]["order_id"] == original["data"]["order_id"], f"{who}: other fields changed")


def tls_context(pki, workload):
    """Trusts the demo CA only, and presents the workload's certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / f"{workload}.pem", pki / f"{workload}.key")
    return context


async def first_info(port, context=None):
    """The INFO a client gets first (through the gateway: right after the TLS handshake)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    line = await asyncio.wait_for(reader.readline(), WAIT)
    writer.close()
    expect(line.startswith(b"INFO "), f"the first line on port {port} is not INFO: {line[:40]!r}")
    return json.loads(line[5:])


async def refused_on_the_wire(port, context, payload):
    """Publishes `payload` on a raw TLS-first connection and returns the -ERR line the gateway
    sends back (clients such as nats-py lower-case it before their error callback), after
    checking that the connection still answers a PING."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    expect((await asyncio.wait_for(reader.readline(), WAIT)).startswith(b"INFO "), "no INFO on the raw connection")
    connect = {"verbose": False, "pedantic": False, "tls_required": True, "name": "raw", "lang": "python", "protocol": 1, "headers": True}
    writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
    writer.write(f"PUB {SUBJECT} {len(payload)}\r\n".encode() + payload + b"\r\nPING\r\n")
    await writer.drain()
    error = None
    while error is None:
        line = await asyncio.wait_for(reader.readline(), WAIT)
        expect(line, "the gateway closed the raw connection")
        if line.startswith(b"-ERR "):
            error = line.decode().rstrip("\r\n")
    writer.write(b"PING\r\n")
    await writer.drain()
    while (line := await asyncio.wait_for(reader.readline(), WAIT)) != b"PONG\r\n":
        expect(line, "the gateway closed the raw connection after the -ERR")
    writer.close()
    return error


async def main(gateway_port, server_port, pki, event_file):
    errors = {}

    async def connect(workload):
        async def on_error(error):
            errors.setdefault(workload, []).append(str(error))

        return await nats.connect(
            servers=[f"tls://127.0.0.1:{gateway_port}"],
            tls=tls_context(pki, workload),
            tls_handshake_first=True,
            name=workload,
            error_cb=on_error,
            allow_reconnect=False,
            connect_timeout=WAIT,
        )

    section(f"Connect: a tap straight to nats-server (127.0.0.1:{server_port}, plain), the rest through the gateway (tls://127.0.0.1:{gateway_port}, TLS first, client certificates)")
    tap = await nats.connect(servers=[f"nats://127.0.0.1:{server_port}"], allow_reconnect=False, connect_timeout=WAIT)
    checkout = await connect("checkout")
    invoicer = await connect("invoicer")
    reports = await connect("reports")
    server = await first_info(server_port)
    gateway = await first_info(gateway_port, tls_context(pki, "reports"))
    for where, info in (("nats-server's INFO, straight:", server), ("the INFO through the gateway:", gateway)):
        print(f"{where:32} max_payload {info['max_payload']}, tls_required {str(info.get('tls_required', False)).lower()}")
    expect(gateway.get("tls_required") is True, "the gateway's INFO does not say tls_required")
    expect(gateway["max_payload"] < server["max_payload"], "the gateway's INFO does not lower max_payload (room for the envelopes)")
    expect(checkout.max_payload == gateway["max_payload"], "nats-py did not take the gateway's max_payload")

    section(f"Subscribe to {SUBJECT}: the tap (orders.>), billing (invoicer) and analytics (reports) through the gateway")
    tapped = await tap.subscribe("orders.>")
    billing = await invoicer.subscribe(SUBJECT)
    analytics = await reports.subscribe(SUBJECT)
    # A flush returns after the server's PONG: the subscriptions are in place.
    for client in (tap, invoicer, reports):
        await client.flush(timeout=WAIT)
    print("subscribed")

    published = Path(event_file).read_bytes()
    original = json.loads(published)
    section(f"The producer (checkout, spiffe://example.org/ns/shop/sa/checkout) publishes {event_file} to {SUBJECT}")
    await checkout.publish(SUBJECT, published)
    await checkout.flush(timeout=WAIT)
    print(published.decode().rstrip("\n"))

    section("What the tap on nats-server got: card number, email and prices sealed (JWE compact strings)")
    message = await tapped.next_msg(timeout=WAIT)
    print(message.data.decode().rstrip("\n"))
    expect(message.subject == SUBJECT, f"the tap got {message.subject}")
    expect_sealed(message.data, original, "the tap")

    section("What billing (invoicer, spiffe://example.org/ns/billing/sa/invoicer) got through the gateway: opened, byte for byte what was published")
    message = await billing.next_msg(timeout=WAIT)
    print(message.data.decode().rstrip("\n"))
    expect(message.data == published, "billing did not get the published bytes")

    section("What analytics (reports, spiffe://example.org/ns/analytics/sa/reports) got through the gateway: still sealed, not a reader")
    message = await analytics.next_msg(timeout=WAIT)
    print(message.data.decode().rstrip("\n"))
    expect_sealed(message.data, original, "analytics")

    section(f"Analytics publishes to {SUBJECT} (it is not a producer): refused with -ERR, the connection stays open")
    await reports.publish(SUBJECT, published)
    # The gateway answers the refused publish itself; nats-py calls error_cb when the -ERR arrives.
    await reports.flush(timeout=WAIT)
    for _ in range(WAIT * 20):
        if errors.get("reports"):
            break
        await asyncio.sleep(0.05)
    received = errors.get("reports", [])
    print(f"analytics' error callback got: {received}")
    expect(
        any('permissions violation for publish to "orders.acme.created"' in e and "producer-forbidden" in e for e in received),
        "analytics' error callback got no permissions violation",
    )
    expect(reports.is_connected, "analytics' connection was closed")
    wire = await refused_on_the_wire(gateway_port, tls_context(pki, "reports"), published)
    print(f"the same refusal on the wire:  {wire}")
    expect(wire == "-ERR 'Permissions Violation for Publish to \"orders.acme.created\": eventseal producer-forbidden'", "not nats-server's wording")
    # The next publish on the same connection goes through (orders.acme.note matches no rule),
    # and it is the tap's next message: the refused one never reached nats-server.
    await reports.publish("orders.acme.note", b"still connected")
    await reports.flush(timeout=WAIT)
    message = await tapped.next_msg(timeout=WAIT)
    print(f"analytics' next publish, as the tap got it: {message.subject} {message.data.decode()!r}")
    expect(message.subject == "orders.acme.note", f"the tap got {message.subject} {message.data[:60]!r}: the refused publish reached nats-server")
    expect(not errors.get("checkout") and not errors.get("invoicer"), f"unexpected errors: {errors}")

    for client in (checkout, invoicer, reports, tap):
        await client.drain()
    section("Every expectation held")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    # asyncio warns about every TLS connection the server closes after a drain: noise here.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    try:
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]))
    except ExpectationFailed as failure:
        print(f"\nFAILED: {failure}", file=sys.stderr)
        sys.exit(1)
