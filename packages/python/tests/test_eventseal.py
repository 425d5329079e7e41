"""Tests of the installed `eventseal` package (run with the interpreter it is installed
in: `python -m unittest discover -s tests`). Self-contained: a policy and a fresh keyring
are made here, nothing is read from the repository."""

import base64
import json
import os
import tempfile
import threading
import unittest
from pathlib import Path

import eventseal
from eventseal import ConfigError, MalformedJson, PayloadTooLarge, Refused, Sealer, SealedFieldRejected, SignatureReplayed

SEALED = ["/data/card/number", "/data/customer/email"]
BILLING = "spiffe://example.org/ns/billing/sa/consumer"
POLICY = {
    "rules": [
        {
            "name": "publish",
            "match": {"methods": ["POST"], "path": "/events/orders"},
            "context": {"type": {"body": "/type"}},
            "seal": {"fields": SEALED},
            "sign": True,
        },
        {
            "name": "deliver",
            "match": {"methods": ["POST"], "path": "/inbox/orders"},
            "context": {"type": {"body": "/type"}},
            "verify": True,
            "open": {"fields": SEALED, "readers": ["spiffe://example.org/ns/billing/*"], "denied": "refuse"},
        },
        {
            "name": "consume",
            "match": {"methods": ["POST"], "path": "/consume/orders"},
            "context": {"type": {"body": "/type"}},
            "open": {"fields": SEALED, "readers": ["spiffe://example.org/ns/billing/*"], "denied": "refuse"},
        },
    ]
}


def key():
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


KEYRING = {
    "keys": [
        {"kty": "oct", "kid": "orders-1", "alg": "A256GCM", "k": key(), "status": "primary"},
        {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": key(), "status": "primary"},
    ]
}


def order(i=0):
    return {
        "specversion": "1.0",
        "id": f"evt-{i}",
        "type": "com.example.order.created",
        "data": {
            "order_id": f"o-{i}",
            "card": {"number": f"4111-1111-1111-{i:04d}", "expiry": "12/29"},
            "customer": {"email": f"customer-{i:04d}@example.org", "name": "Ada"},
        },
    }


def pointer(doc, ptr):
    for token in ptr.split("/")[1:]:
        doc = doc[token]
    return doc


class SealerTest(unittest.TestCase):
    def setUp(self):
        self.sealer = Sealer(POLICY, KEYRING)

    def tearDown(self):
        self.sealer.close()

    def deliver(self, sealed, **who):
        return self.sealer.open(sealed.event, route="/inbox/orders", headers=sealed.headers, principal=BILLING, **who)

    def test_seal_replaces_each_selected_field_by_a_jwe_and_open_gives_back_the_original_bytes(self):
        original = json.dumps(order(1)).encode()
        sealed = self.sealer.seal(original, route="/events/orders")
        doc = sealed.json()
        for ptr in SEALED:
            self.assertEqual(len(pointer(doc, ptr).split(".")), 5, ptr)
            self.assertNotIn(pointer(order(1), ptr), sealed.text)
        self.assertEqual([(f.pointer, f.kid, f.result) for f in sealed.fields], [(p, "orders-1", "sealed") for p in SEALED])
        self.assertTrue(sealed.signed)
        self.assertEqual(sorted(sealed.headers), ["webhook-id", "webhook-signature", "webhook-timestamp"])
        opened = self.deliver(sealed)
        self.assertEqual(opened.event, original)
        self.assertEqual(opened.verified, "hooks-1")

    def test_events_may_be_bytes_text_or_values(self):
        value = order(2)
        for event in (value, json.dumps(value), json.dumps(value).encode()):
            sealed = self.sealer.seal(event, route=("POST", "/events/orders"))
            self.assertEqual(self.deliver(sealed).json(), value)

    def test_a_route_names_its_method_first(self):
        sealed = self.sealer.seal(order(6), route="POST /events/orders")
        self.assertEqual(self.deliver(sealed).json(), order(6))
        # The rules match POST only: another method routes to no rule.
        with self.assertRaises(eventseal.NoRule):
            self.sealer.seal(order(6), route="PUT /events/orders")

    def test_claims_without_a_principal_are_a_caller_error(self):
        with self.assertRaises(TypeError):
            self.sealer.open(order(7), route="/consume/orders", claims={"team": "billing"})

    def test_a_replay_is_refused_with_its_problem_type(self):
        sealed = self.sealer.seal(order(3), route="/events/orders")
        self.deliver(sealed)
        with self.assertRaises(SignatureReplayed) as refused:
            self.deliver(sealed)
        self.assertEqual(refused.exception.status, 401)
        self.assertEqual(refused.exception.type, "urn:eventseal:problem:signature-replayed")
        self.assertIsInstance(refused.exception, Refused)

    def test_a_tampered_envelope_is_refused_without_revealing_anything(self):
        sealed = self.sealer.seal(order(4), route="/events/orders").json()
        envelope = sealed["data"]["card"]["number"].split(".")
        envelope[3] = ("A" if envelope[3][0] != "A" else "B") + envelope[3][1:]
        sealed["data"]["card"]["number"] = ".".join(envelope)
        with self.assertRaises(SealedFieldRejected) as refused:
            self.sealer.open(sealed, route="/consume/orders", principal=BILLING)
        self.assertIn("/data/card/number", refused.exception.detail)
        self.assertNotIn("4111", str(refused.exception))

    def test_bytes_that_are_not_utf8_are_refused_as_malformed_json(self):
        with self.assertRaises(MalformedJson) as refused:
            self.sealer.seal(b'{"data": "\xff"}', route="/events/orders")
        self.assertEqual(refused.exception.status, 400)

    def test_a_batch_decides_each_event_as_the_single_operation_and_refuses_only_the_bad_one(self):
        events = [order(i) for i in range(5)]
        events.insert(2, '{"data":')
        batch = self.sealer.seal_many(events, route="/events/orders")
        self.assertEqual(len(batch), 6)
        self.assertIsInstance(batch[2], MalformedJson)
        sealed = [b for i, b in enumerate(batch) if i != 2]
        self.assertEqual(len({s.headers["webhook-id"] for s in sealed}), 5)
        for outcome, original in zip(sealed, [e for i, e in enumerate(events) if i != 2]):
            self.assertTrue(outcome.signed)
            self.assertEqual(self.deliver(outcome).json(), original)
        # open_many takes what was sealed one by one, in order.
        singles = [self.sealer.seal(order(i), route="/events/orders").event for i in range(3)]
        opened = self.sealer.open_many(singles, route="/consume/orders", principal=BILLING)
        self.assertEqual([o.json() for o in opened], [order(i) for i in range(3)])

    def test_bytes_that_are_not_utf8_in_a_batch_are_refused_in_their_place(self):
        batch = self.sealer.seal_many([order(1), b'{"data": "\xff"}', order(2)], route="/events/orders")
        self.assertIsInstance(batch[1], MalformedJson)
        self.assertEqual([self.deliver(batch[i]).json() for i in (0, 2)], [order(1), order(2)])

    def test_a_batch_over_the_bound_is_refused_whole(self):
        with self.assertRaises(PayloadTooLarge):
            self.sealer.seal_many([order(0)] * (eventseal.MAX_BATCH + 1), route="/events/orders")

    def test_one_sealer_serves_several_threads(self):
        results, errors = [], []

        def work(n):
            try:
                for i in range(20):
                    results.append(self.sealer.seal(order(n * 100 + i), route="/events/orders"))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 80)
        self.assertEqual(len({r.headers["webhook-id"] for r in results}), 80)
        for r in results[:10]:
            self.assertEqual(self.deliver(r).json()["type"], "com.example.order.created")

    def test_from_files_and_configuration_errors(self):
        with tempfile.TemporaryDirectory() as tmp:
            policy, keyring = Path(tmp, "policy.json"), Path(tmp, "keyring.json")
            policy.write_text(json.dumps(POLICY))
            keyring.write_text(json.dumps(KEYRING))
            with Sealer.from_files(policy, keyring) as sealer:
                self.assertTrue(sealer.seal(order(5), route="/events/orders").signed)
        bad = {"keys": [{"kty": "oct", "kid": "x", "alg": "A128GCM", "k": key(), "status": "primary"}]}
        with self.assertRaises(ConfigError) as refused:
            Sealer(POLICY, bad)
        self.assertEqual(refused.exception.document, "keyring")
        self.assertNotIn(bad["keys"][0]["k"], str(refused.exception))

    def test_a_closed_sealer_refuses_calls(self):
        self.sealer.close()
        with self.assertRaises(ValueError):
            self.sealer.seal(order(6), route="/events/orders")

    def test_the_version_is_the_bundled_components(self):
        self.assertRegex(eventseal.__version__, r"^\d+\.\d+\.\d+$")
        self.assertEqual(eventseal.INTERFACE, "eventseal:seal/sealing@0.1.2")


if __name__ == "__main__":
    unittest.main()
