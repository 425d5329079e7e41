"""Interoperability of the eventseal envelope with jwcrypto, an independent JOSE library,
and reproducibility of the test vectors (docs/FORMAT.md, "Interoperability").

    .venv/bin/python -m pytest tests/interop

- every dir success vector opens with jwcrypto and gives the same plaintext;
- jwcrypto refuses every vector whose failure is cryptographic (unauthenticated);
- jwcrypto opens the authentic vectors that eventseal refuses for their binding:
  the binding is what eventseal adds on top of JOSE;
- tests/vectors/generate.py reproduces the committed vectors byte for byte;
- jwcrypto opens what the Rust code seals (the seal_sample example, fresh random IVs).
"""

import base64
import json
import os
import pathlib
import subprocess
import sys

import pytest
from jwcrypto import jwe, jwk

ROOT = pathlib.Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def load_vectors():
    return [(path.name, json.loads(path.read_text(encoding="utf-8"))) for path in sorted(VECTORS.glob("*.json"))]


ALL = load_vectors()


def select(*expected):
    return [pytest.param(vector, id=name) for name, vector in ALL if vector["expected"] in expected]


def protected_header(envelope: str) -> dict:
    segment = envelope.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def key_for(vector: dict) -> jwk.JWK:
    """The vector's keyring key named by the envelope's kid, as a jwcrypto JWK."""
    kid = protected_header(vector["envelope"])["kid"]
    (entry,) = [k for k in vector["keys"]["keys"] if k["kid"] == kid]
    return jwk.JWK(kty="oct", k=entry["k"])


def jwcrypto_open(envelope: str, key: jwk.JWK) -> bytes:
    token = jwe.JWE()
    token.deserialize(envelope, key=key)
    return token.payload


def test_every_outcome_used_here_has_vectors():
    # Guards the parametrized tests below against running on nothing.
    for outcome in ("success", "unauthenticated", "moved_field", "wrong_context", "disabled_key"):
        assert select(outcome), f"no vector expects {outcome}"


@pytest.mark.parametrize("vector", select("success"))
def test_jwcrypto_opens_success_vectors(vector):
    assert protected_header(vector["envelope"])["alg"] == "dir"
    plaintext = jwcrypto_open(vector["envelope"], key_for(vector))
    assert json.loads(plaintext.decode("utf-8")) == vector["plaintext"]


@pytest.mark.parametrize("vector", select("unauthenticated"))
def test_jwcrypto_refuses_unauthenticated_vectors(vector):
    with pytest.raises(jwe.InvalidJWEData):
        jwcrypto_open(vector["envelope"], key_for(vector))


@pytest.mark.parametrize("vector", select("moved_field", "wrong_context", "disabled_key"))
def test_binding_and_key_status_are_enforced_by_eventseal_not_jose(vector):
    # Authentic JWEs: a plain JOSE library opens them. eventseal refuses them for where
    # they are found (ptr, ctx) or for the key's status, which JOSE knows nothing about.
    plaintext = jwcrypto_open(vector["envelope"], key_for(vector))
    json.loads(plaintext.decode("utf-8"))


def test_generate_reproduces_the_committed_vectors(tmp_path):
    subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--out", str(tmp_path)], check=True)
    # The dir vectors, the KMS vectors of FORMAT.md §10 in kms/, the event vectors of §2.1 in
    # events/, the audit chains in audit/, the Standard Webhooks signatures (v1, v1a) in webhooks/.
    sets = ["*.json", "kms/*.json", "events/*.json", "audit/*.json", "webhooks/*.json"]
    fresh = {str(path.relative_to(tmp_path)): path.read_bytes() for pattern in sets for path in tmp_path.glob(pattern)}
    committed = {str(path.relative_to(VECTORS)): path.read_bytes() for pattern in sets for path in VECTORS.glob(pattern)}
    for subset in ("kms/", "events/", "audit/", "webhooks/"):
        assert any(name.startswith(subset) for name in committed), subset
    assert sorted(fresh) == sorted(committed)
    changed = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert not changed, f"generate.py output differs from the committed files: {changed}"


def test_jwcrypto_opens_what_eventseal_seals():
    k = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")
    run = subprocess.run(
        ["cargo", "run", "-q", "-p", "eventseal-core", "--example", "seal_sample", "--", "k-interop", k],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) >= 10, run.stdout
    key = jwk.JWK(kty="oct", k=k)
    ivs = set()
    for line in lines:
        header = protected_header(line["envelope"])
        assert header == {
            "alg": "dir",
            "enc": "A256GCM",
            "kid": "k-interop",
            "ptr": line["pointer"],
            "ctx": line["context"],
        }, line
        plaintext = jwcrypto_open(line["envelope"], key)
        assert json.loads(plaintext.decode("utf-8")) == line["plaintext"], line["pointer"]
        ivs.add(line["envelope"].split(".")[2])
    assert len(ivs) == len(lines), "an IV repeated"
