"""Runs the Python and Node.js examples against the installed packages (the wheel in a
fresh venv, the npm tarball in a fresh folder; tests/conftest.py) and checks what they
print: sealed fields are JWE compact envelopes that an independent JOSE library opens
with the keyring, the signature is a valid Standard Webhooks signature, the opened event
equals the original, a replay and a tampered event are refused with the filter's problem
kinds, and each language opens what the other sealed.

Needs: the Rust toolchain with the wasm32-wasip2 target, the venv from
tests/requirements.txt, Node.js 20+ and the packages' build tools (scripts/setup). A
missing piece fails with the command that installs it.
"""

import base64
import copy
import hashlib
import hmac
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SEALED_POINTERS = ["/data/card/number", "/data/customer/email"]


def pointer_get(doc, pointer):
    for token in pointer.split("/")[1:]:
        doc = doc[token.replace("~1", "/").replace("~0", "~")]
    return doc


def pointer_set(doc, pointer, value):
    tokens = pointer.split("/")[1:]
    for token in tokens[:-1]:
        doc = doc[token]
    doc[tokens[-1]] = value


def b64decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.fixture(scope="session")
def node_example(installed_node):
    """The Node example beside the installed package, as a user's service would sit."""
    for name in ("service.mjs", "policy.json"):
        shutil.copyfile(EXAMPLES / "node" / name, installed_node / name)
    return installed_node


@pytest.fixture(scope="session")
def keyring():
    """A fresh keyring, as a service would load it from its secret store."""

    def key():
        return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()

    return {
        "keys": [
            {"kty": "oct", "kid": "orders-test", "alg": "A256GCM", "k": key(), "status": "primary"},
            {"kty": "oct", "kid": "hooks-test", "alg": "HS256", "k": key(), "status": "primary"},
        ]
    }


@pytest.fixture(scope="session")
def examples(installed_python, node_example, keyring):
    """Runs an example: examples(language, mode, stdin=None) -> (exit code, parsed stdout)."""

    def run(language, mode, stdin=None):
        command = {
            "python": [str(installed_python), str(EXAMPLES / "python" / "service.py"), mode],
            "node": ["node", str(node_example / "service.mjs"), mode],
        }[language]
        env = {**os.environ, "EVENTSEAL_KEYRING": json.dumps(keyring)}
        done = subprocess.run(command, input=stdin, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode in (0, 1), f"{language} {mode} crashed:\n{done.stdout}\n{done.stderr}"
        return done.returncode, json.loads(done.stdout)

    return run


LANGUAGES = ["python", "node"]


@pytest.fixture(scope="session")
def demo(examples):
    """Each example's `demo` output, run once per language."""
    runs = {}

    def get(language):
        if language not in runs:
            code, out = examples(language, "demo")
            assert code == 0, out
            runs[language] = out
        return runs[language]

    return get


def test_both_examples_ship_the_same_policy():
    """Cross-language opening needs one policy, as the gateway and every service must share it."""
    assert json.loads((EXAMPLES / "python" / "policy.json").read_text()) == json.loads((EXAMPLES / "node" / "policy.json").read_text())


@pytest.mark.parametrize("language", LANGUAGES)
def test_demo_seals_fields_as_jwe_that_any_jose_library_opens(language, demo, keyring):
    from jwcrypto import jwe, jwk

    out = demo(language)
    original, sealed = out["original"], out["sealed"]
    assert json.loads(sealed["body"]) == sealed["event"], "body is the exact text of the sealed event"
    seal_key = jwk.JWK(**{m: keyring["keys"][0][m] for m in ("kty", "k")})
    unsealed = copy.deepcopy(sealed["event"])
    for pointer in SEALED_POINTERS:
        envelope = pointer_get(sealed["event"], pointer)
        assert isinstance(envelope, str) and envelope.count(".") == 4, f"{pointer} is a JWE compact string"
        header = json.loads(b64decode(envelope.split(".")[0]))
        assert (header["alg"], header["enc"], header["kid"]) == ("dir", "A256GCM", "orders-test")
        assert envelope.split(".")[1] == "", "dir: no encrypted key"
        token = jwe.JWE()
        token.deserialize(envelope, key=seal_key)
        plaintext = json.loads(token.payload)
        assert plaintext == pointer_get(original, pointer), "the plaintext is the JSON of the original value"
        pointer_set(unsealed, pointer, plaintext)
        assert sealed["fields"][pointer] == {"kid": "orders-test", "result": "sealed"}
    assert unsealed == original, "every other member is unchanged"


@pytest.mark.parametrize("language", LANGUAGES)
def test_demo_signs_the_sealed_body_with_standard_webhooks(language, demo, keyring):
    out = demo(language)
    headers, body = out["sealed"]["headers"], out["sealed"]["body"]
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    secret = b64decode(keyring["keys"][1]["k"])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body}".encode()
    expected = "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    assert expected in headers["webhook-signature"].split(" ")


@pytest.mark.parametrize("language", LANGUAGES)
def test_demo_opens_back_to_the_original_and_refuses_the_replay(language, demo):
    out = demo(language)
    assert out["opened"]["event"] == out["original"]
    assert out["opened"]["verified"] == "hooks-test"
    assert out["opened"]["fields"] == {p: {"kid": "orders-test", "result": "opened"} for p in SEALED_POINTERS}
    assert out["replayed"] == {"kind": "signature-replayed", "status": 401}


@pytest.mark.parametrize(("sealer", "opener"), [("python", "node"), ("node", "python")])
def test_each_language_opens_what_the_other_sealed(sealer, opener, examples):
    event = {"specversion": "1.0", "id": "x-1", "type": "com.example.order.created", "data": {"card": {"number": "5500 0000 0000 0004"}}}
    code, sealed = examples(sealer, "seal", json.dumps(event))
    assert code == 0 and pointer_get(sealed["event"], "/data/card/number").count(".") == 4
    assert sealed["fields"]["/data/customer/email"]["result"] == "absent"
    code, opened = examples(opener, "open", json.dumps(sealed))
    assert code == 0 and opened["event"] == event


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_tampered_event_is_refused_without_revealing_it(language, examples):
    event = {"type": "com.example.order.created", "data": {"card": {"number": "4000 0000 0000 0002"}}}
    _, sealed = examples(language, "seal", json.dumps(event))
    # Another event type: the signature no longer matches (and the context would not either).
    sealed["body"] = sealed["body"].replace("order.created", "order.updated")
    code, out = examples(language, "open", json.dumps(sealed))
    assert code == 1
    assert {k: out["refused"][k] for k in ("kind", "status")} == {"kind": "signature-invalid", "status": 401}
    assert "4000" not in json.dumps(out)


def test_the_python_package_takes_and_returns_bytes_and_refuses_non_utf8_as_the_gateway_does(eventseal, keyring):
    """The package sends events to the component as text; callers still see bytes, and
    bytes that are not UTF-8 (so not JSON) are refused by the component, not by Python."""
    policy = (EXAMPLES / "python" / "policy.json").read_text()
    with eventseal.Sealer(policy, keyring) as sealer:
        order = {"type": "com.example.order.created", "data": {"card": {"number": "4111 1111 1111 1111"}}}
        sealed = sealer.seal(json.dumps(order).encode(), route="/events/orders")
        assert isinstance(sealed.event, bytes) and pointer_get(json.loads(sealed.event), SEALED_POINTERS[0]).count(".") == 4
        with pytest.raises(eventseal.MalformedJson) as refused:
            sealer.seal(b'{"data": {"card": {"number": "\xff"}}}', route="/events/orders")
        assert (refused.value.kind, refused.value.status) == ("malformed-json", 400)


def read_keeping_every_member(text):
    """Python's json, as a consumer downstream reads an event: lenient (it accepts lone
    surrogates) and keeping every member of a repeated name, in order."""
    return json.loads(text, object_pairs_hook=lambda pairs: ("object", pairs))


def found(node, segments, prefix=""):
    """(concrete pointer, value) of every match of a selector in a `read_keeping_every_member` tree."""
    if not segments:
        return [(prefix, node)]
    first, rest = segments[0], segments[1:]
    if isinstance(node, tuple):
        children = [(name, value) for name, value in node[1]]
    elif isinstance(node, list):
        children = [(str(i), value) for i, value in enumerate(node)]
    else:
        return []
    escape = lambda name: name.replace("~", "~0").replace("/", "~1")  # noqa: E731
    return [m for name, value in children if first in ("*", name) for m in found(value, rest, f"{prefix}/{escape(name)}")]


EVENT_VECTORS = sorted((ROOT / "tests" / "vectors" / "events").glob("*.json"))


@pytest.mark.parametrize("path", EVENT_VECTORS, ids=[p.stem for p in EVENT_VECTORS])
def test_what_the_component_forwards_holds_every_selected_field_sealed_as_python_reads_it(path, eventseal, keyring):
    """The parser-differential oracle through the shipped component: an event vector is
    either refused as malformed-json, or every value its selectors reach in Python's own
    reading of the output (lone surrogates and repeated names included) is an envelope
    bound to that pointer that jwcrypto opens with the keyring."""
    from jwcrypto import jwe, jwk

    vector = json.loads(path.read_text(encoding="utf-8"))
    policy = {
        "rules": [{"name": "in", "match": {"path": "/in"}, "context": {"type": {"body": "/type"}}, "seal": {"fields": vector["fields"]}}]
    }
    with eventseal.Sealer(policy, keyring) as sealer:
        try:
            out = sealer.seal(vector["event"].encode(), route="/in")
        except eventseal.Refused as refused:
            assert vector["expected"] == "malformed", f"refused a valid event: {refused}"
            assert (refused.kind, refused.status) == ("malformed-json", 400)
            return
        assert vector["expected"] == "sealed", f"forwarded an event that must be refused: {out.event!r}"
        tree = read_keeping_every_member(out.event.decode("utf-8"))
        (key,) = [jwk.JWK(kty="oct", k=k["k"]) for k in keyring["keys"] if k["alg"] == "A256GCM"]
        pointers = []
        for selector in vector["fields"]:
            segments = [t.replace("~1", "/").replace("~0", "~") for t in selector[1:].split("/")]
            for pointer, value in found(tree, segments):
                assert isinstance(value, str) and value.count(".") == 4, f"{pointer} is not sealed: {value!r}"
                assert json.loads(b64decode(value.split(".")[0]))["ptr"] == pointer
                token = jwe.JWE()
                token.deserialize(value, key=key)
                pointers.append(pointer)
        assert sorted(pointers) == sorted(vector["sealed"])
