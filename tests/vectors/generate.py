#!/usr/bin/env python3
"""Writes the eventseal envelope test vectors (docs/FORMAT.md, "Test vectors").

This is an independent implementation of the envelope, written from the spec and
not from the Rust code: it uses only the Python standard library and pyca
`cryptography` (AESGCM, AES key wrap, Ed25519). Every envelope is assembled byte by byte.

Keys and IVs are FIXED (derived with SHA-256 from a label), so the output is
deterministic: running this script again must reproduce the committed files byte
for byte (tests/interop/test_jwcrypto.py checks it). Never reuse these keys.

    python3 tests/vectors/generate.py            # rewrite tests/vectors/*.json, kms/*.json, events/*.json, audit/*.json and webhooks/*.json
    python3 tests/vectors/generate.py --out DIR  # write them somewhere else
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import pathlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

TAG_LEN = 16


def b64(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive(label: str, length: int) -> bytes:
    """Fixed test material: the first `length` bytes of SHA-256(label)."""
    return hashlib.sha256(label.encode("utf-8")).digest()[:length]


def iv_for(name: str) -> bytes:
    """A distinct fixed 96-bit IV per vector, so no IV repeats under one key."""
    return derive("eventseal test vector iv " + name, 12)


PRIMARY = "k-2026-03"
ACTIVE = "k-2026-01"
RETIRED = "k-2025-11"
DISABLED = "k-2025-06"
KEYS = {kid: derive("eventseal test vector key " + kid, 32) for kid in (PRIMARY, ACTIVE, RETIRED, DISABLED)}
# Seals the unknown-kid vector; never appears in any keyring.
STRANGER = "k-other-service"
KEYS[STRANGER] = derive("eventseal test vector key " + STRANGER, 32)


def jwk(kid: str, status: str, key: bytes = b"") -> dict:
    return {"kty": "oct", "kid": kid, "alg": "A256GCM", "k": b64(key or KEYS[kid]), "status": status}


def keyring(*extra: dict) -> dict:
    """The usual keyring: one primary key, plus `extra` keys."""
    return {"keys": [jwk(PRIMARY, "primary"), *extra]}


def rotating_keyring() -> dict:
    return keyring(jwk(ACTIVE, "active"), jwk(RETIRED, "retired"), jwk(DISABLED, "disabled"))


def text(value: str) -> str:
    """A JSON string, escaped the way the sealer writes it (UTF-8, no \\u for non-ASCII)."""
    return json.dumps(value, ensure_ascii=False)


def header(kid: str, ptr: str, ctx: dict, alg: str = "dir", enc: str = "A256GCM") -> bytes:
    """The protected header exactly as a sealer writes it (FORMAT.md §3): fixed member
    order alg, enc, kid, ptr, ctx; ctx members sorted by name; no whitespace."""
    members = ",".join(f"{text(name)}:{text(ctx[name])}" for name in sorted(ctx))
    return (
        f'{{"alg":{text(alg)},"enc":{text(enc)},"kid":{text(kid)},"ptr":{text(ptr)},"ctx":{{{members}}}}}'
    ).encode("utf-8")


def plaintext_of(value) -> bytes:
    """The JSON serialization of the field value: compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def compact(
    key: bytes, iv: bytes, protected: bytes, plaintext: bytes, encrypted_key: bytes = b"", encoded_header: str = ""
) -> str:
    """JWE Compact Serialization (RFC 7516 §7.1). The AAD is the ASCII of the
    base64url-encoded protected header (RFC 7516 §5.1 step 14)."""
    h = encoded_header or b64(protected)
    sealed = AESGCM(key).encrypt(iv, plaintext, h.encode("ascii"))
    ciphertext, tag = sealed[:-TAG_LEN], sealed[-TAG_LEN:]
    return ".".join([h, b64(encrypted_key), b64(iv), b64(ciphertext), b64(tag)])


def segments(envelope: str) -> list:
    return envelope.split(".")


def replace_segment(envelope: str, index: int, segment: str) -> str:
    parts = segments(envelope)
    parts[index] = segment
    return ".".join(parts)


def flip_bit(envelope: str, index: int, byte: int, bit: int) -> str:
    """Flips one bit of the decoded bytes of segment `index` (canonical re-encoding)."""
    data = bytearray(unb64(segments(envelope)[index]))
    data[byte] ^= 1 << bit
    return replace_segment(envelope, index, b64(bytes(data)))


HEADER, ENCRYPTED_KEY, IV, CIPHERTEXT, TAG = range(5)

# The event these vectors pretend to come from.
POINTER = "/data/customer/email"
CONTEXT = {"type": "order.created", "tenant": "acme"}

VECTORS = []


def vector(name, description, envelope, expected, *, keys=None, pointer=POINTER, context=None, plaintext=None):
    record = {
        "description": description,
        "keys": keys or keyring(),
        "pointer": pointer,
        "context": dict(sorted((CONTEXT if context is None else context).items())),
        "envelope": envelope,
        "expected": expected,
    }
    if expected == "success":
        record["plaintext"] = plaintext
    VECTORS.append((name, record))


def sealed(name, value=None, *, kid=PRIMARY, ptr=POINTER, ctx=None, raw_plaintext=None, key=None):
    """An authentic dir envelope of `value` (or of `raw_plaintext` bytes)."""
    ctx = CONTEXT if ctx is None else ctx
    plaintext = plaintext_of(value) if raw_plaintext is None else raw_plaintext
    return compact(key or KEYS[kid], iv_for(name), header(kid, ptr, ctx), plaintext)


def success(name, description, value, *, kid=PRIMARY, keys=None, pointer=POINTER, context=None):
    envelope = sealed(name, value, kid=kid, ptr=pointer, ctx=context)
    vector(name, description, envelope, "success", keys=keys, pointer=pointer, context=context, plaintext=value)


# --- success: every JSON type round-trips with its type --------------------------------

success(
    "000-format-example",
    "The worked example of docs/FORMAT.md: a string field bound to its pointer, event type and tenant.",
    "zoe@example.test",
)
success(
    "001-string-unicode",
    "A string with non-ASCII characters (2-, 3- and 4-byte UTF-8) and JSON escapes.",
    'Zoë Ångström <zoe@exämple.test> — 東京 🔐 "quoted" \\ tab\t',
)
success("002-number-integer", "An integer beyond 2^53: the plaintext keeps every digit.", 9007199254740993)
success("003-number-float", "A negative decimal number.", -273.15)
success("004-boolean", "The boolean true.", True)
success("005-null", "null is a value like any other and is sealed too.", None)
success("006-array", "An array of mixed values.", [1, "two", {"three": 3.5}, [None, False]])
success(
    "007-object",
    "A whole object sealed as one field.",
    {"number": "4111111111111111", "expiry": "12/29", "holder": {"name": "Zoë", "verified": True}},
    pointer="/data/card",
)
success("008-empty-string", "The empty string.", "")
success("009-empty-context", "No context is bound: ctx is the empty object.", "zoe@example.test", context={})
success(
    "010-several-context-members",
    "Four context members; the header lists them sorted by name.",
    "zoe@example.test",
    context={"type": "order.created", "tenant": "acme", "subject": "order/8812", "source": "/shop/eu-west"},
)
success(
    "011-unicode-context",
    "Context values are compared as exact strings, non-ASCII included.",
    "zoe@example.test",
    context={"tenant": "Bäckerei Müller", "type": "order.created"},
)
success(
    "012-escaped-pointer",
    "Member names with '/' and '~' (pointer /data/a~1b/m~0n, RFC 6901 escapes).",
    "secret",
    pointer="/data/a~1b/m~0n",
)
success("013-array-element-pointer", "A field inside an array element.", 129.99, pointer="/data/items/0/price")
success(
    "014-active-key-opens",
    "Sealed under a key that is now active (not primary): it still opens.",
    "zoe@example.test",
    kid=ACTIVE,
    keys=rotating_keyring(),
)
success(
    "015-retired-key-opens",
    "Sealed under a key that is now retired: it still opens (and is due for rewrap).",
    "zoe@example.test",
    kid=RETIRED,
    keys=rotating_keyring(),
)

# Another JOSE producer may order header members differently, add whitespace and add
# members eventseal does not use; the AAD is the header segment as sent, so it opens.
name = "016-foreign-header-layout"
foreign = (
    '{ "enc": "A256GCM", "ctx": { "type": "order.created", "tenant": "acme" },\n'
    f'  "typ": "JOSE", "ptr": "{POINTER}", "kid": "{PRIMARY}", "alg": "dir" }}'
).encode("utf-8")
vector(
    name,
    "Header members in another order, with whitespace and an unknown non-critical member (typ).",
    compact(KEYS[PRIMARY], iv_for(name), foreign, plaintext_of("zoe@example.test")),
    "success",
    plaintext="zoe@example.test",
)

# --- binding: authentic envelopes in the wrong place --------------------------------

name = "020-moved-field"
vector(
    name,
    "Sealed for /data/customer/phone, found at /data/customer/email.",
    sealed(name, "+44 20 7946 0000", ptr="/data/customer/phone"),
    "moved_field",
)
name = "021-moved-array-element"
vector(
    name,
    "Sealed for element 0 of an array, found in element 1.",
    sealed(name, 129.99, ptr="/data/items/0/price"),
    "moved_field",
    pointer="/data/items/1/price",
)
name = "022-moved-unescaped-pointer"
vector(
    name,
    "Sealed for /data/a~1b (member 'a/b'), found at /data/a/b: pointers compare as escaped text.",
    sealed(name, "secret", ptr="/data/a~1b"),
    "moved_field",
    pointer="/data/a/b",
)
name = "023-wrong-context-tenant"
vector(
    name,
    "Sealed for tenant acme, opened by tenant globex.",
    sealed(name, "zoe@example.test"),
    "wrong_context",
    context={"type": "order.created", "tenant": "globex"},
)
name = "024-wrong-context-type"
vector(
    name,
    "Sealed in an order.created event, copied into an order.refunded event.",
    sealed(name, "zoe@example.test"),
    "wrong_context",
    context={"type": "order.refunded", "tenant": "acme"},
)
name = "025-wrong-context-missing-member"
vector(
    name,
    "Sealed with an empty context, opened where a tenant is bound.",
    sealed(name, "zoe@example.test", ctx={}),
    "wrong_context",
    context={"tenant": "acme"},
)
name = "026-wrong-context-extra-member"
vector(
    name,
    "Sealed with type and tenant, opened where only type is bound.",
    sealed(name, "zoe@example.test"),
    "wrong_context",
    context={"type": "order.created"},
)

# --- keys ---------------------------------------------------------------------------

name = "030-disabled-key"
vector(
    name,
    "Sealed under a key that is now disabled: refused before any decryption.",
    sealed(name, "zoe@example.test", kid=DISABLED),
    "disabled_key",
    keys=rotating_keyring(),
)
name = "031-unknown-kid"
vector(
    name,
    "Sealed by another service's key; its kid is not in this keyring.",
    sealed(name, "zoe@example.test", kid=STRANGER),
    "unknown_key",
    keys=rotating_keyring(),
)
name = "032-wrong-key-bytes"
vector(
    name,
    "The keyring has the kid, but with other key bytes.",
    sealed(name, "zoe@example.test", key=KEYS[STRANGER]),
    "unauthenticated",
)

# --- tampering: the AEAD tag covers header, IV and ciphertext -----------------------

name = "040-flipped-ciphertext-bit"
vector(
    name,
    "Bit 0 of the first ciphertext byte flipped.",
    flip_bit(sealed(name, "zoe@example.test"), CIPHERTEXT, 0, 0),
    "unauthenticated",
)
name = "041-flipped-tag-bit"
vector(
    name,
    "Bit 7 of the last tag byte flipped.",
    flip_bit(sealed(name, "zoe@example.test"), TAG, TAG_LEN - 1, 7),
    "unauthenticated",
)
name = "042-flipped-iv-bit"
vector(
    name,
    "Bit 3 of the fifth IV byte flipped.",
    flip_bit(sealed(name, "zoe@example.test"), IV, 4, 3),
    "unauthenticated",
)
name = "043-flipped-header-bit"
original = sealed(name, "zoe@example.test")
tampered = header(PRIMARY, POINTER, CONTEXT).replace(b'"/data/customer/email"', b'"/data/customer/emaim"')
assert tampered != header(PRIMARY, POINTER, CONTEXT)
vector(
    name,
    "One bit of the ptr value in the header flipped (l -> m), header still valid JSON: "
    "the tag fails before the binding is looked at.",
    replace_segment(original, HEADER, b64(tampered)),
    "unauthenticated",
    pointer="/data/customer/emaim",
)
name = "044-rewritten-context"
original = sealed(name, "zoe@example.test")
vector(
    name,
    "The header's tenant rewritten from acme to globex to match the opener: the tag fails.",
    replace_segment(original, HEADER, b64(header(PRIMARY, POINTER, {"type": "order.created", "tenant": "globex"}))),
    "unauthenticated",
    context={"type": "order.created", "tenant": "globex"},
)
name = "045-swapped-ciphertext"
first = sealed(name + "/a", "zoe@example.test")
second = sealed(name + "/b", "eve@example.test")
vector(
    name,
    "Header, IV and tag of one envelope with the ciphertext of another under the same key.",
    replace_segment(first, CIPHERTEXT, segments(second)[CIPHERTEXT]),
    "unauthenticated",
)

# --- malformed: not an envelope this version accepts --------------------------------

name = "050-truncated-tag"
env = sealed(name, "zoe@example.test")
vector(
    name,
    "The tag cut to 15 bytes.",
    replace_segment(env, TAG, b64(unb64(segments(env)[TAG])[:-1])),
    "malformed",
)
name = "051-iv-16-bytes"
iv16 = derive("eventseal test vector iv " + name, 16)
vector(
    name,
    "A 128-bit IV (GCM allows it, this format does not); otherwise authentic.",
    compact(KEYS[PRIMARY], iv16, header(PRIMARY, POINTER, CONTEXT), plaintext_of("zoe@example.test")),
    "malformed",
)
name = "052-enc-a128gcm"
vector(
    name,
    'enc "A128GCM" with a 128-bit key; authentic under that key.',
    compact(KEYS[PRIMARY][:16], iv_for(name), header(PRIMARY, POINTER, CONTEXT, enc="A128GCM"), plaintext_of("x")),
    "malformed",
)
name = "053-alg-a256kw"
cek = derive("eventseal test vector cek " + name, 32)
vector(
    name,
    'alg "A256KW": a content key wrapped (RFC 3394) with the keyring key, in the encrypted-key '
    "segment. A valid JWE, but this version accepts only dir.",
    compact(cek, iv_for(name), header(PRIMARY, POINTER, CONTEXT, alg="A256KW"), plaintext_of("x"), aes_key_wrap(KEYS[PRIMARY], cek)),
    "malformed",
)
name = "054-dir-with-encrypted-key"
vector(
    name,
    "alg dir but the encrypted-key segment is not empty.",
    compact(KEYS[PRIMARY], iv_for(name), header(PRIMARY, POINTER, CONTEXT), plaintext_of("x"), derive(name, 40)),
    "malformed",
)
name = "055-crit-present"
crit = header(PRIMARY, POINTER, CONTEXT)[:-1] + b',"crit":["exp"],"exp":1767225600}'
vector(
    name,
    "A crit member (naming a private parameter exp); authentic.",
    compact(KEYS[PRIMARY], iv_for(name), crit, plaintext_of("x")),
    "malformed",
)
name = "056-padded-segment"
env = sealed(name, "zoe@example.eu")
padding = "=" * (-len(segments(env)[CIPHERTEXT]) % 4)
assert padding, "pick a plaintext whose length is not a multiple of 3"
vector(
    name,
    "The ciphertext segment carries base64 '=' padding.",
    replace_segment(env, CIPHERTEXT, segments(env)[CIPHERTEXT] + padding),
    "malformed",
)
name = "057-non-canonical-base64"
env = sealed(name, "zoe@example.test")
tag_text = segments(env)[TAG]
# 16 bytes are 22 characters whose last one carries 4 unused bits; set the lowest.
alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
last = alphabet[alphabet.index(tag_text[-1]) | 1]
assert unb64(tag_text[:-1] + last) == unb64(tag_text)
vector(
    name,
    "The tag's last character has a non-zero unused bit: decodes to the same bytes, but is not canonical.",
    replace_segment(env, TAG, tag_text[:-1] + last),
    "malformed",
)
name = "058-standard-base64-alphabet"
# An IV whose first byte 0xfb encodes as '-' in base64url and '+' in standard base64.
iv_dash = b"\xfb" + iv_for(name)[1:]
env = compact(KEYS[PRIMARY], iv_dash, header(PRIMARY, POINTER, CONTEXT), plaintext_of("zoe@example.test"))
standard = base64.b64encode(iv_dash).rstrip(b"=").decode("ascii")
assert segments(env)[IV].startswith("-") and standard.startswith("+")
vector(
    name,
    "The IV segment written in the standard base64 alphabet ('+' where base64url has '-').",
    replace_segment(env, IV, standard),
    "malformed",
)
name = "059-four-segments"
env = sealed(name, "zoe@example.test")
vector(name, "The encrypted-key segment removed: four segments.", ".".join(segments(env)[:1] + segments(env)[2:]), "malformed")
name = "060-six-segments"
env = sealed(name, "zoe@example.test")
vector(name, "An extra empty segment at the end: six segments.", env + ".", "malformed")
name = "061-header-not-json"
vector(
    name,
    "The header segment decodes to bytes that are not JSON; authentic.",
    compact(KEYS[PRIMARY], iv_for(name), b"kid=k-2026-03;ptr=/data/customer/email", plaintext_of("x")),
    "malformed",
)
name = "062-header-missing-kid"
no_kid = json.dumps({"alg": "dir", "enc": "A256GCM", "ptr": POINTER, "ctx": CONTEXT}, separators=(",", ":")).encode()
vector(
    name,
    "The header has no kid; authentic.",
    compact(KEYS[PRIMARY], iv_for(name), no_kid, plaintext_of("x")),
    "malformed",
)
name = "063-duplicate-header-member"
duplicate = header(PRIMARY, POINTER, CONTEXT).replace(b',"ctx"', b',"ptr":"/data/customer/phone","ctx"')
assert duplicate.count(b'"ptr"') == 2
vector(
    name,
    "ptr appears twice (email, then phone); parsers that keep the first or the last member "
    "would disagree, so it is refused. Authentic.",
    compact(KEYS[PRIMARY], iv_for(name), duplicate, plaintext_of("x")),
    "malformed",
)
name = "064-kid-not-a-string"
numeric = header(PRIMARY, POINTER, CONTEXT).replace(f'"kid":"{PRIMARY}"'.encode(), b'"kid":202603')
vector(
    name,
    "kid is a number; authentic.",
    compact(KEYS[PRIMARY], iv_for(name), numeric, plaintext_of("x")),
    "malformed",
)
name = "065-context-value-not-a-string"
numeric_ctx = b'{"alg":"dir","enc":"A256GCM","kid":"k-2026-03","ptr":"/data/customer/email","ctx":{"tenant":42}}'
vector(
    name,
    "A ctx member whose value is a number; authentic.",
    compact(KEYS[PRIMARY], iv_for(name), numeric_ctx, plaintext_of("x")),
    "malformed",
    context={"tenant": "42"},
)
name = "066-plaintext-not-json"
vector(
    name,
    "Authentic, correctly bound, but the plaintext is not a JSON text.",
    sealed(name, raw_plaintext=b"card=4111111111111111"),
    "malformed",
)
name = "067-plaintext-not-utf8"
vector(
    name,
    "Authentic, correctly bound, but the plaintext is a JSON string with an invalid UTF-8 byte.",
    sealed(name, raw_plaintext=b'"caf\xe9"'),
    "malformed",
)
name = "068-header-not-base64url"
env = sealed(name, "zoe@example.test")
vector(name, "The header segment's first character replaced by '*', which is outside base64url.", "*" + env[1:], "malformed")
name = "069-empty-string"
vector(name, "The empty string.", "", "malformed")

name = "070-crit-null"
crit_null = header(PRIMARY, POINTER, CONTEXT)[:-1] + b',"crit":null}'
vector(
    name,
    "A crit member whose value is null: any crit member is refused, whatever its value. Authentic.",
    compact(KEYS[PRIMARY], iv_for(name), crit_null, plaintext_of("x")),
    "malformed",
)
name = "071-duplicate-context-member"
dup_ctx = b'{"alg":"dir","enc":"A256GCM","kid":"k-2026-03","ptr":"/data/customer/email","ctx":{"tenant":"evil","tenant":"acme","type":"order.created"}}'
vector(
    name,
    "tenant appears twice inside ctx (evil, then acme); a parser keeping the last would open it "
    "for acme, one keeping the first would not, so it is refused. Authentic.",
    compact(KEYS[PRIMARY], iv_for(name), dup_ctx, plaintext_of("x")),
    "malformed",
)
name = "072-duplicate-unknown-member"
dup_unknown = header(PRIMARY, POINTER, CONTEXT)[:-1] + b',"typ":"a","typ":"b"}'
vector(
    name,
    "An unknown member (typ) repeated: repeated names are refused at every depth. Authentic.",
    compact(KEYS[PRIMARY], iv_for(name), dup_unknown, plaintext_of("x")),
    "malformed",
)
name = "073-kid-names-a-signing-key"
signing_jwk = {"kty": "oct", "kid": "hooks-1", "alg": "HS256", "k": b64(derive("eventseal test vector hmac hooks-1", 32)), "status": "disabled"}
vector(
    name,
    "The kid names an HS256 (signing) key of the keyring, here disabled: only A256GCM keys open "
    "envelopes, so the kid is unknown. Sealed with some other key.",
    compact(derive("eventseal test vector key hooks-1 stranger", 32), iv_for(name), header("hooks-1", POINTER, CONTEXT), plaintext_of("x")),
    "unknown_key",
    keys=keyring(signing_jwk),
)

# --- lone surrogates (FORMAT.md §2.1): never valid Unicode, refused wherever they appear ---

name = "074-plaintext-lone-surrogate"
vector(
    name,
    "Authentic, correctly bound, but the plaintext is a JSON string whose only character is the "
    "escape of a lone UTF-16 surrogate: not valid Unicode, so not a JSON text this format accepts.",
    sealed(name, raw_plaintext=b'"\\ud800"'),
    "malformed",
)
name = "075-header-ptr-lone-surrogate"
lone_ptr = header(PRIMARY, POINTER, CONTEXT).replace(b'"ptr":"/data/customer/email"', b'"ptr":"/data/customer/email\\ud800"')
vector(
    name,
    "ptr ends with the escape of a lone surrogate; a lenient parser would read it as some other "
    "pointer. Authentic.",
    compact(KEYS[PRIMARY], iv_for(name), lone_ptr, plaintext_of("x")),
    "malformed",
)
name = "076-unknown-header-member-lone-surrogate"
lone_unknown = header(PRIMARY, POINTER, CONTEXT)[:-1] + b',"typ":"\\udc00"}'
vector(
    name,
    "An unknown member (typ) whose value is a lone surrogate escape: refused though the member "
    "itself is ignored. Authentic.",
    compact(KEYS[PRIMARY], iv_for(name), lone_unknown, plaintext_of("x")),
    "malformed",
)


# --- KMS-wrapped data keys (FORMAT.md §10), in tests/vectors/kms/ -------------------------
#
# The data key and the Vault Transit ciphertext that "wraps" it are both fixed: the blob is
# well formed (vault:v<N>: + base64 of 60 bytes, as Transit writes a 32-byte key) but was
# never issued by any KMS. A runner plays the KMS from the vector's "kms" member: it
# unwraps exactly the listed blobs of the listed sources and refuses every other blob.

TRANSIT_ALG = "eventseal.vault-transit"
SOURCE = "transit:transit/orders"


def wrapped_blob(label: str, version: int = 1) -> str:
    # 60 bytes, as Transit writes a 32-byte key: 12-byte nonce, ciphertext, 16-byte tag.
    fake = hashlib.sha512(("eventseal test vector wrapped " + label).encode("utf-8")).digest()[:60]
    return f"vault:v{version}:" + base64.b64encode(fake).decode("ascii")


def data_key(label: str) -> bytes:
    return derive("eventseal test vector data key " + label, 32)


DATA_KEY = data_key("orders-1")
WRAPPED = wrapped_blob("orders-1")
DATA_KEY_V3 = data_key("orders-3")
WRAPPED_V3 = wrapped_blob("orders-3", 3)
# The same data key as DATA_KEY, rewrapped (transit/rewrap) under key version 2.
REWRAPPED_V2 = wrapped_blob("orders-1 rewrapped", 2)


def kms(*entries) -> dict:
    """The KMS a runner plays: the configured sources and the blobs it unwraps."""
    return {
        "sources": [SOURCE],
        "data_keys": [{"source": SOURCE, "wrapped": blob, "k": b64(key)} for blob, key in entries],
    }


KMS_VECTORS = []


def kms_vector(name, description, envelope, expected, *, unwraps=None, pointer=POINTER, context=None, plaintext=None):
    record = {
        "description": description,
        "kms": kms(*(unwraps if unwraps is not None else [(WRAPPED, DATA_KEY)])),
        "pointer": pointer,
        "context": dict(sorted((CONTEXT if context is None else context).items())),
        "envelope": envelope,
        "expected": expected,
    }
    if expected == "success":
        record["plaintext"] = plaintext
    KMS_VECTORS.append((name, record))


def wrapped_envelope(name, value, *, key=DATA_KEY, blob=WRAPPED, kid=SOURCE, ptr=POINTER, ctx=None, alg=TRANSIT_ALG):
    """An authentic envelope whose encrypted key is the ASCII of the Transit ciphertext."""
    ctx = CONTEXT if ctx is None else ctx
    return compact(key, iv_for(name), header(kid, ptr, ctx, alg=alg), plaintext_of(value), blob.encode("ascii"))


name = "100-vault-transit-example"
kms_vector(
    name,
    "The worked example of docs/FORMAT.md §10: a data key wrapped by Transit key transit/orders, version 1.",
    wrapped_envelope(name, "zoe@example.test"),
    "success",
    plaintext="zoe@example.test",
)
name = "101-vault-transit-key-version-3"
kms_vector(
    name,
    "A data key issued after two rotations of the Transit key (vault:v3:); the KMS still unwraps v1 keys too.",
    wrapped_envelope(name, {"number": "4111111111111111"}, key=DATA_KEY_V3, blob=WRAPPED_V3, ptr="/data/card"),
    "success",
    unwraps=[(WRAPPED, DATA_KEY), (WRAPPED_V3, DATA_KEY_V3)],
    pointer="/data/card",
    plaintext={"number": "4111111111111111"},
)
name = "102-vault-transit-rewrapped"
kms_vector(
    name,
    "Sealed with a v1 data key, whose encrypted key was then replaced by its rewrap under v2 "
    "(transit/rewrap): the tag covers the header, not the encrypted key, so it still opens.",
    replace_segment(wrapped_envelope(name, "zoe@example.test"), ENCRYPTED_KEY, b64(REWRAPPED_V2.encode("ascii"))),
    "success",
    unwraps=[(REWRAPPED_V2, DATA_KEY)],
    plaintext="zoe@example.test",
)
name = "103-vault-transit-moved-field"
kms_vector(
    name,
    "Sealed for /data/customer/phone, found at /data/customer/email.",
    wrapped_envelope(name, "+44 20 7946 0000", ptr="/data/customer/phone"),
    "moved_field",
)
name = "104-vault-transit-wrong-context"
kms_vector(
    name,
    "Sealed for tenant acme, opened by tenant globex.",
    wrapped_envelope(name, "zoe@example.test"),
    "wrong_context",
    context={"type": "order.created", "tenant": "globex"},
)
name = "105-vault-transit-unknown-source"
kms_vector(
    name,
    "The kid names Transit key transit/payments, which is not a configured key source.",
    wrapped_envelope(name, "zoe@example.test", kid="transit:transit/payments"),
    "unknown_key",
)
name = "106-vault-transit-kms-refuses"
kms_vector(
    name,
    "A well-formed Transit ciphertext that the KMS never issued: it refuses to unwrap it.",
    wrapped_envelope(name, "zoe@example.test", key=data_key("forged"), blob=wrapped_blob("forged")),
    "unauthenticated",
)
name = "107-vault-transit-swapped-wrapped-key"
kms_vector(
    name,
    "The encrypted key replaced by another data key the KMS did issue: it unwraps, but the tag fails.",
    replace_segment(wrapped_envelope(name, "zoe@example.test"), ENCRYPTED_KEY, b64(WRAPPED_V3.encode("ascii"))),
    "unauthenticated",
    unwraps=[(WRAPPED, DATA_KEY), (WRAPPED_V3, DATA_KEY_V3)],
)
name = "108-vault-transit-flipped-ciphertext-bit"
kms_vector(
    name,
    "Bit 0 of the first ciphertext byte flipped.",
    flip_bit(wrapped_envelope(name, "zoe@example.test"), CIPHERTEXT, 0, 0),
    "unauthenticated",
)
name = "110-vault-transit-empty-encrypted-key"
kms_vector(
    name,
    "alg eventseal.vault-transit with an empty encrypted-key segment.",
    replace_segment(wrapped_envelope(name, "zoe@example.test"), ENCRYPTED_KEY, ""),
    "malformed",
)
name = "111-vault-transit-raw-key-bytes"
kms_vector(
    name,
    "The encrypted key holds 32 raw bytes, not the ASCII of a vault:v<N>: ciphertext.",
    replace_segment(wrapped_envelope(name, "zoe@example.test"), ENCRYPTED_KEY, b64(derive(name, 32))),
    "malformed",
)
name = "112-vault-transit-version-zero"
zero = "vault:v0:" + WRAPPED.split(":", 2)[2]
kms_vector(
    name,
    "The Transit ciphertext names key version 0; versions start at 1.",
    wrapped_envelope(name, "zoe@example.test", blob=zero),
    "malformed",
    unwraps=[(WRAPPED, DATA_KEY)],
)
name = "113-vault-transit-local-kid"
kms_vector(
    name,
    "alg eventseal.vault-transit with a kid that does not start with transit:.",
    wrapped_envelope(name, "zoe@example.test", kid=PRIMARY),
    "malformed",
)
name = "114-dir-with-vault-ciphertext"
kms_vector(
    name,
    "alg dir with a Transit ciphertext in the encrypted key: dir requires it empty.",
    wrapped_envelope(name, "zoe@example.test", key=DATA_KEY, alg="dir"),
    "malformed",
)


# --- events (FORMAT.md §2.1), in tests/vectors/events/ ------------------------------------
#
# Whole events and the selectors a sealing rule applies to them. The expected outcome comes
# from this file's own reading, not from eventseal: Python's json reads the event keeping
# every member (duplicates too) and accepting lone surrogates, so that this reading can tell
# which events hold one; an event with a lone surrogate anywhere is "malformed", any other
# lists the concrete pointers a sealer must replace by envelopes, in document order.

EVENT_FIELDS = ["/data/card", "/data/email", "/data/items/*/price"]
EVENT_VECTORS = []


def has_lone_surrogate(node) -> bool:
    def bad(text: str) -> bool:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False

    if isinstance(node, str):
        return bad(node)
    if isinstance(node, Members):
        return any(bad(name) or has_lone_surrogate(value) for name, value in node)
    if isinstance(node, list):
        return any(has_lone_surrogate(item) for item in node)
    return False


class Members(list):
    """An object's members in order, as (name, value) pairs."""


def selected(node, fields, path=()):
    """Concrete pointers of every value a selector matches, in document order, every member
    of a repeated name included; a value inside a selected one travels inside it."""
    selectors = [[t.replace("~1", "/").replace("~0", "~") for t in f[1:].split("/")] for f in fields]
    if path and any(len(s) == len(path) and all(t in ("*", p) for t, p in zip(s, path)) for s in selectors):
        return ["".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)]
    if isinstance(node, Members):
        children = node
    elif isinstance(node, list):
        children = [(str(i), v) for i, v in enumerate(node)]
    else:
        return []
    return [p for name, value in children for p in selected(value, fields, path + (name,))]


def event_vector(name, description, event: str, fields=None):
    fields = fields or EVENT_FIELDS
    tree = json.loads(event, object_pairs_hook=Members)
    record = {"description": description, "fields": fields, "event": event}
    if has_lone_surrogate(tree):
        record["expected"] = "malformed"
    else:
        record["expected"] = "sealed"
        record["sealed"] = selected(tree, fields)
    EVENT_VECTORS.append((name, record))


event_vector(
    "200-lone-surrogate-nested-name",
    "A lone surrogate in a member name one level down, beside selected fields (the reported "
    "fail-open: the object was read as empty and its fields forwarded in plaintext).",
    r'{"type":"t.created","data":{"car\ud800d":{"pan":"4000123412341234"},"email":"zed@example.test","items":[{"price":1}]}}',
)
event_vector(
    "201-lone-surrogate-array-element-name",
    "A lone surrogate in a member name of an array element whose sibling member is selected.",
    r'{"type":"t.created","data":{"items":[{"p\ud800":1,"price":5}],"card":"4000123412341234"}}',
)
event_vector(
    "202-lone-surrogate-context-value",
    "A lone trailing surrogate in the event type, which rules bind into the context.",
    r'{"type":"t.\udc00","data":{"card":"4000123412341234"}}',
)
event_vector(
    "203-lone-surrogate-unselected-value",
    "A lone surrogate in a string value no selector touches: refused all the same.",
    r'{"type":"t.created","note":"\ud800","data":{"card":"4000123412341234"}}',
)
event_vector(
    "204-lone-surrogate-selected-value",
    "A lone surrogate inside the value of a selected field.",
    r'{"type":"t.created","data":{"email":"zed\udbff@example.test"}}',
)
event_vector(
    "205-high-surrogate-then-high",
    "Two high surrogates in a row are no pair.",
    r'{"type":"t.created","data":{"x":{"\ud800\ud800":1},"card":"4"}}',
)
event_vector(
    "206-surrogate-pair",
    "A surrogate pair (U+1F600) in names and values is valid Unicode: the selected fields are sealed.",
    r'{"type":"t.created","data":{"\ud83d\ude00":"\ud83d\ude00","card":"4","items":[{"price":1},{"price":2}]}}',
)
event_vector(
    "207-escaped-backslash-before-u",
    "An escaped backslash followed by u and hex digits is text, not an escape: sealed.",
    r'{"type":"t.created","data":{"p\\ud800":1,"email":"a\\udc00"}}',
)
event_vector(
    "208-escaped-names-and-duplicates",
    "Selected names spelled with escapes, and repeated: every occurrence is sealed.",
    r'{"type":"t.created","data":{"c\u0061rd":"1","card":"2","items":[{"pr\u0069ce":3,"price":4}]}}',
)

# --- audit chains (docs/OPERATIONS.md, "Audit trail"), in tests/vectors/audit/ --------------
#
# A record is one JSON line, members in a fixed order; its `mac` is HMAC-SHA256 under the
# audit key of the exact bytes of the record without `mac` (or SHA-256 for an unkeyed chain),
# lowercase hex; `prev` names the previous record's mac, `seq` counts from 0 per instance.

AUDIT_KID = "audit-2026"
AUDIT_KEY = derive("eventseal test vector audit key", 32)
AUDIT_KEYRING = {"keys": [
    {"kty": "oct", "kid": AUDIT_KID, "alg": "HS256", "use": "audit", "k": b64(AUDIT_KEY), "status": "primary"},
    jwk(PRIMARY, "primary"),
]}
AUDIT_FACTS = [
    {"time_unix_nanos": 1795000000123456789, "request_id": "req-1", "principal": "spiffe://example.org/ns/shop/sa/checkout",
     "rule": "orders-seal", "direction": "request", "event_id": "evt-1", "event_type": "com.example.order.created",
     "operations": ["seal"], "fields": [{"pointer": "/data/card", "result": "sealed", "kid": PRIMARY},
                                        {"pointer": "/data/note", "result": "absent", "kid": None}],
     "other_kids": [], "outcome": "allowed", "reason": None},
    {"time_unix_nanos": 1795000001000000000, "request_id": None, "principal": "lecteur-é",
     "rule": "orders-open", "direction": "response", "event_id": None, "event_type": None,
     "operations": ["open"], "fields": [], "other_kids": [], "outcome": "refused", "reason": "reader-forbidden"},
    {"time_unix_nanos": 1795000002999000000, "request_id": "req-3", "principal": None,
     "rule": "orders-seal", "direction": None, "event_id": None, "event_type": None,
     "operations": ["admit"], "fields": [], "other_kids": [], "outcome": "refused", "reason": "producer-forbidden"},
]


def rfc3339_millis(nanos: int) -> str:
    moment = datetime.datetime.fromtimestamp(nanos // 1_000_000_000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1_000_000 % 1000:03d}Z"


def audit_line(instance: str, seq: int, prev: str, facts: dict, keyed: bool) -> tuple:
    """One record as its line, and its mac."""
    kids = sorted({f["kid"] for f in facts["fields"] if f["kid"]} | set(facts["other_kids"]))
    fields = [{k: v for k, v in (("pointer", f["pointer"]), ("result", f["result"]), ("kid", f["kid"])) if v is not None}
              for f in facts["fields"]]
    record = {
        "audit": 1, "instance": instance, "seq": seq, "time": rfc3339_millis(facts["time_unix_nanos"]),
        "request_id": facts["request_id"], "principal": facts["principal"], "rule": facts["rule"],
        "direction": facts["direction"], "event_id": facts["event_id"], "event_type": facts["event_type"],
        "operations": facts["operations"], "fields": fields, "kids": kids,
    }
    # Only in a record that used a key being rotated out (FORMAT.md §5.1), sorted.
    if facts.get("stale_kids"):
        record["stale_kids"] = sorted(set(facts["stale_kids"]))
    record.update({"outcome": facts["outcome"], "reason": facts["reason"], "mac_kid": AUDIT_KID if keyed else None,
                   "prev": prev})
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    if keyed:
        mac = hmac.new(AUDIT_KEY, body.encode("utf-8"), hashlib.sha256).hexdigest()
    else:
        mac = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return body[:-1] + f',"mac":"{mac}"}}', mac


def audit_chain(instance: str, keyed: bool = True, facts_list=None) -> list:
    lines, prev = [], ""
    for seq, facts in enumerate(facts_list or AUDIT_FACTS):
        line, prev = audit_line(instance, seq, prev, facts, keyed)
        lines.append(line)
    return lines


def audit_vector(name, description, log, expected, *, keyring=None, require_keyed=False, facts=None):
    record = {"description": description, "keys": keyring or AUDIT_KEYRING, "require_keyed": require_keyed,
              "log": log, "expected": expected}
    if facts is not None:
        record["instance"], record["facts"] = facts
    return name, record


STALE_FACTS = [
    {"time_unix_nanos": 1795000003000000000, "request_id": "req-4", "principal": "spiffe://example.org/ns/billing/sa/invoicer",
     "rule": "orders-open", "direction": "request", "event_id": "evt-4", "event_type": "com.example.order.created",
     "operations": ["verify", "open"], "fields": [{"pointer": "/data/card", "result": "opened", "kid": RETIRED}],
     "other_kids": ["hooks-2025"], "stale_kids": [RETIRED, "hooks-2025"], "outcome": "allowed", "reason": None},
]
CHAIN = audit_chain("worker-0")
EDITED = CHAIN[1].replace('"reader-forbidden"', '"producer-forbidden"')
AUDIT_VECTORS = [
    audit_vector("300-keyed-chain", "Three records of one instance, keyed: the chain verifies, and a writer given "
                 "the same facts writes these lines byte for byte.", CHAIN, "valid", facts=("worker-0", AUDIT_FACTS)),
    audit_vector("301-proxy-log-around-records", "Records inside proxy log lines: other lines are skipped.",
                 [f"[2026-11-30 12:00:00.000][1][info][wasm] wasm log eventseal: {line}" for line in CHAIN]
                 + ["[2026-11-30 12:00:01.000][1][info][main] unrelated line"], "valid"),
    audit_vector("302-edited-record", "A refusal reason rewritten in the second record.",
                 [CHAIN[0], EDITED, CHAIN[2]], {"line": 2, "reason": "edited"}),
    audit_vector("303-deleted-record", "The second record deleted.", [CHAIN[0], CHAIN[2]],
                 {"line": 2, "reason": "sequence"}),
    audit_vector("304-swapped-records", "The second and third records swapped.", [CHAIN[0], CHAIN[2], CHAIN[1]],
                 {"line": 2, "reason": "sequence"}),
    audit_vector("305-unknown-audit-key", "A keyring without the audit key that keyed the chain.", CHAIN,
                 {"line": 1, "reason": "unknown_key"}, keyring={"keys": [jwk(PRIMARY, "primary")]}),
    audit_vector("306-unkeyed-chain", "A chain only hashed (no audit key): it verifies when unkeyed chains are allowed.",
                 audit_chain("worker-1", keyed=False), "valid"),
    audit_vector("308-stale-keys-marked", "A record of an event verified under a signing key other than the primary "
                 "and opened under a retired key: both kids are listed in stale_kids (other records leave it out).",
                 audit_chain("worker-2", facts_list=STALE_FACTS), "valid", facts=("worker-2", STALE_FACTS),
                 keyring={"keys": [*AUDIT_KEYRING["keys"], jwk(RETIRED, "retired")]}),
    audit_vector("307-unkeyed-chain-refused", "The same unkeyed chain where a keyed chain is required.",
                 audit_chain("worker-1", keyed=False), {"line": 1, "reason": "unkeyed"}, require_keyed=True),
]


# --- Standard Webhooks signatures (docs/FORMAT.md §12), in tests/vectors/webhooks/ -----------
#
# `v1`: HMAC-SHA256 (standard library); `v1a`: Ed25519 (pyca `cryptography`), each over
# `{id}.{timestamp}.{body}`, base64 (standard alphabet, padded), entries space-separated.
# Ed25519 is deterministic (RFC 8032), so a signer given the keyring must write the
# `webhook-signature` of a vector marked `"signs": true` byte for byte.

def ed_seed(kid: str) -> bytes:
    """The 32-byte Ed25519 private key (RFC 8032's seed) of a test kid."""
    return derive("eventseal test vector ed25519 key " + kid, 32)


def ed_key(kid: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(ed_seed(kid))


def ed_public(kid: str) -> bytes:
    return ed_key(kid).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


ED_PRIMARY = "hooks-ed-2026"
ED_OLD = "hooks-ed-2025"
ED_STRANGER = "hooks-ed-other"
HS_KID = "hooks-hs-2026"
HS_KEY = derive("eventseal test vector hmac key " + HS_KID, 32)
HOOK_ID = "msg_2Lh8rTz9Yq0vectors"
HOOK_NOW = 1795000000
HOOK_BODY = '{"type":"invoice.paid","id":"evt-9","data":{"invoice":"in_1","amount":4200}}'


def ed_jwk(kid: str, status: str, *, private: bool = False, form: str = "jwk") -> dict:
    """An Ed25519 JWK (RFC 8037); `form` "whpk"/"whsk" writes x/d in the Standard Webhooks forms."""
    key = {"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig"}
    if form == "whsk":
        # The 64-byte form: the private key (seed) followed by the public key.
        key["d"] = "whsk_" + base64.b64encode(ed_seed(kid) + ed_public(kid)).decode("ascii")
    else:
        key["x"] = ("whpk_" + base64.b64encode(ed_public(kid)).decode("ascii")) if form == "whpk" else b64(ed_public(kid))
        if private:
            key["d"] = b64(ed_seed(kid))
    key["status"] = status
    return key


def hs_jwk(status: str = "primary") -> dict:
    return {"kty": "oct", "kid": HS_KID, "alg": "HS256", "k": b64(HS_KEY), "status": status}


def signed_content(msg_id: str, timestamp: int, body: str) -> bytes:
    return f"{msg_id}.{timestamp}.".encode("ascii") + body.encode("utf-8")


def v1a(kid: str, msg_id: str = HOOK_ID, timestamp: int = HOOK_NOW, body: str = HOOK_BODY) -> str:
    return "v1a," + base64.b64encode(ed_key(kid).sign(signed_content(msg_id, timestamp, body))).decode("ascii")


def v1(msg_id: str = HOOK_ID, timestamp: int = HOOK_NOW, body: str = HOOK_BODY, key: bytes = HS_KEY) -> str:
    return "v1," + base64.b64encode(hmac.new(key, signed_content(msg_id, timestamp, body), hashlib.sha256).digest()).decode("ascii")


def flip_signature_bit(entry: str, byte: int, bit: int) -> str:
    version, encoded = entry.split(",", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[byte] ^= 1 << bit
    return version + "," + base64.b64encode(bytes(raw)).decode("ascii")


# The order of the Ed25519 group (RFC 8032 §5.1): S + L is the same scalar, not canonical.
ED_L = 2**252 + 27742317777372353535851937790883648493


def non_canonical_s(entry: str) -> str:
    version, encoded = entry.split(",", 1)
    raw = base64.b64decode(encoded)
    s = int.from_bytes(raw[32:], "little") + ED_L
    assert s < 2**256
    return version + "," + base64.b64encode(raw[:32] + s.to_bytes(32, "little")).decode("ascii")


def hook(name, description, keys, signature, expected, *, timestamp=HOOK_NOW, body=HOOK_BODY, signs=False):
    """`expected`: {"kid", "status"} of the key that verifies, or {"error": <class>}, or
    {"keyring_error": <JSON Pointer>} for a keyring that must be refused at load."""
    record = {"description": description, "keys": {"keys": keys},
              "headers": {"webhook-id": HOOK_ID, "webhook-timestamp": str(timestamp), "webhook-signature": signature},
              "body": body, "now": HOOK_NOW, "tolerance_seconds": 300, "expected": expected, "signs": signs}
    return name, record


def ok(kid, status="primary"):
    return {"kid": kid, "status": status}


SMALL_ORDER_POINT = b"\x01" + b"\x00" * 31  # the identity: a "public key" every signature would fit
WEBHOOK_VECTORS = [
    hook("400-v1a-private-key", "An Ed25519 primary key with its private half verifies its v1a signature, and a signer "
         "with this keyring writes exactly this header.", [ed_jwk(ED_PRIMARY, "primary", private=True)],
         v1a(ED_PRIMARY), ok(ED_PRIMARY), signs=True),
    hook("401-v1a-public-key-only", "A keyring holding only the public key verifies (a gateway that cannot forge).",
         [ed_jwk(ED_PRIMARY, "primary")], v1a(ED_PRIMARY), ok(ED_PRIMARY)),
    hook("402-v1a-whpk-public-key", "The public key in the Standard Webhooks form: x is whpk_ + base64.",
         [ed_jwk(ED_PRIMARY, "primary", form="whpk")], v1a(ED_PRIMARY), ok(ED_PRIMARY)),
    hook("403-v1a-whsk-private-key", "The private key in the Standard Webhooks form: d is whsk_ + base64 of the seed "
         "and the public key (64 bytes), with no x.", [ed_jwk(ED_PRIMARY, "primary", form="whsk")],
         v1a(ED_PRIMARY), ok(ED_PRIMARY), signs=True),
    hook("404-mixed-v1-and-v1a", "A header mixing v1 and v1a: a keyring of the HS256 key and the Ed25519 public key "
         "verifies it (by the primary, the HS256 key).", [hs_jwk("primary"), ed_jwk(ED_PRIMARY, "active")],
         v1() + " " + v1a(ED_PRIMARY), ok(HS_KID)),
    hook("405-mixed-v1a-valid-v1-unknown-key", "A v1 entry by a key the keyring lacks next to a valid v1a entry: any "
         "valid entry under a usable key passes.", [ed_jwk(ED_PRIMARY, "primary")],
         v1(key=derive("someone else's hmac key", 32)) + " " + v1a(ED_PRIMARY), ok(ED_PRIMARY)),
    hook("406-unknown-version-ignored", "Entries of unknown versions are ignored, even malformed-looking ones.",
         [ed_jwk(ED_PRIMARY, "primary")], "v2,bm90IGEgc2lnbmF0dXJl v1b,AAAA " + v1a(ED_PRIMARY), ok(ED_PRIMARY)),
    hook("407-v1a-non-primary-key", "A signature by the active (non-primary) key verifies; the key is reported.",
         [ed_jwk(ED_PRIMARY, "primary"), ed_jwk(ED_OLD, "active")], v1a(ED_OLD), ok(ED_OLD, "active")),
    hook("408-v1a-retired-key", "A signature by a retired key still verifies; the key is reported.",
         [ed_jwk(ED_PRIMARY, "primary"), ed_jwk(ED_OLD, "retired")], v1a(ED_OLD), ok(ED_OLD, "retired")),
    hook("409-v1a-primary-and-active-sign", "During a rotation the primary and the active key both sign, primary "
         "first.", [ed_jwk(ED_PRIMARY, "primary", private=True), ed_jwk(ED_OLD, "active", private=True)],
         v1a(ED_PRIMARY) + " " + v1a(ED_OLD), ok(ED_PRIMARY), signs=True),
    hook("410-v1a-modified-signature", "One bit of R changed: refused.", [ed_jwk(ED_PRIMARY, "primary")],
         flip_signature_bit(v1a(ED_PRIMARY), 5, 3), {"error": "not_authentic"}),
    hook("411-v1a-modified-signature-s", "One bit of S changed: refused.", [ed_jwk(ED_PRIMARY, "primary")],
         flip_signature_bit(v1a(ED_PRIMARY), 40, 0), {"error": "not_authentic"}),
    hook("412-v1a-modified-body", "The body changed after signing: refused.", [ed_jwk(ED_PRIMARY, "primary")],
         v1a(ED_PRIMARY), {"error": "not_authentic"}, body=HOOK_BODY.replace("4200", "4201")),
    hook("413-v1a-wrong-key", "Signed by a key the keyring does not hold: refused.", [ed_jwk(ED_PRIMARY, "primary")],
         v1a(ED_STRANGER), {"error": "not_authentic"}),
    hook("414-v1a-disabled-key", "Signed by a disabled key: refused.",
         [ed_jwk(ED_PRIMARY, "primary"), ed_jwk(ED_OLD, "disabled")], v1a(ED_OLD), {"error": "not_authentic"}),
    hook("415-v1a-non-canonical-s", "S replaced by S + L (the same scalar, not reduced): refused (RFC 8032 §5.1.7).",
         [ed_jwk(ED_PRIMARY, "primary")], non_canonical_s(v1a(ED_PRIMARY)), {"error": "not_authentic"}),
    hook("416-v1a-only-hmac-keyring", "Only v1a entries and only an HS256 key: nothing the keyring can check.",
         [hs_jwk("primary")], v1a(ED_PRIMARY), {"error": "no_checkable_signature"}),
    hook("417-v1-only-ed25519-keyring", "Only v1 entries and only an Ed25519 key: nothing the keyring can check.",
         [ed_jwk(ED_PRIMARY, "primary")], v1(), {"error": "no_checkable_signature"}),
    hook("418-v1a-wrong-length", "A v1a entry of 32 bytes: the header is malformed.", [ed_jwk(ED_PRIMARY, "primary")],
         "v1a," + base64.b64encode(bytes(32)).decode("ascii"), {"error": "malformed_header"}),
    hook("419-v1a-expired", "A valid signature 301 s older than now, with a tolerance of 300 s.",
         [ed_jwk(ED_PRIMARY, "primary")], v1a(ED_PRIMARY, timestamp=HOOK_NOW - 301), {"error": "timestamp_too_old"},
         timestamp=HOOK_NOW - 301),
    hook("420-keyring-x-not-public-key-of-d", "x is not the public key of d: the keyring is refused.",
         [{**ed_jwk(ED_PRIMARY, "primary", private=True), "x": b64(ed_public(ED_OLD))}], v1a(ED_PRIMARY),
         {"keyring_error": "/keys/0/x"}),
    hook("421-keyring-small-order-x", "x is a point of small order (the identity): the keyring is refused.",
         [{**ed_jwk(ED_PRIMARY, "primary"), "x": b64(SMALL_ORDER_POINT)}], v1a(ED_PRIMARY),
         {"keyring_error": "/keys/0/x"}),
    hook("422-keyring-wrong-curve", "crv X25519 is a key-agreement key, not a signing key: refused.",
         [{**ed_jwk(ED_PRIMARY, "primary"), "crv": "X25519"}], v1a(ED_PRIMARY), {"keyring_error": "/keys/0/crv"}),
]


def write(out: pathlib.Path, vectors) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = [name for name, _ in vectors]
    assert len(names) == len(set(names)), "vector names must be unique"
    for stale in out.glob("*.json"):
        if stale.stem not in names:
            stale.unlink()
    for name, record in vectors:
        text_out = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        (out / f"{name}.json").write_bytes(text_out.encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent)
    out = parser.parse_args().out
    write(out, VECTORS)
    write(out / "kms", KMS_VECTORS)
    write(out / "events", EVENT_VECTORS)
    write(out / "audit", AUDIT_VECTORS)
    write(out / "webhooks", WEBHOOK_VECTORS)


if __name__ == "__main__":
    main()
