"""eventseal for Python services: seal the sensitive fields of JSON events before
publishing them, open them after consuming them, sign and verify Standard Webhooks
signatures, with the same policy, keyring and decisions as the eventseal gateway.

    from eventseal import Sealer, SignatureReplayed

    sealer = Sealer.from_files("policy.json", "keyring.json")
    sealed = sealer.seal({"data": {"card": "4111 1111 1111 1111"}}, route="/events/orders")
    publish(sealed.event, headers=sealed.headers)

Everything runs in the eventseal WASI component (bundled), in wasmtime.
"""

from ._problems import (
    ConfigError,
    ContextMissing,
    EventsealError,
    FieldMissing,
    InvalidClaims,
    JsonTooDeep,
    KmsUnavailable,
    MalformedJson,
    NoRule,
    PayloadTooLarge,
    ProducerForbidden,
    ReaderForbidden,
    Refused,
    ReplayCacheFull,
    SealedFieldRejected,
    SealFailed,
    SignatureExpired,
    SignatureInvalid,
    SignatureMalformed,
    SignatureMissing,
    SignatureReplayed,
    SignFailed,
    UnsupportedMediaType,
)
from ._sealer import INTERFACE, MAX_BATCH, Event, FieldOutcome, Outcome, Route, Sealer
from ._version import __version__

__all__ = [
    "INTERFACE",
    "MAX_BATCH",
    "ConfigError",
    "ContextMissing",
    "Event",
    "EventsealError",
    "FieldMissing",
    "FieldOutcome",
    "InvalidClaims",
    "JsonTooDeep",
    "KmsUnavailable",
    "MalformedJson",
    "NoRule",
    "Outcome",
    "PayloadTooLarge",
    "ProducerForbidden",
    "ReaderForbidden",
    "Refused",
    "ReplayCacheFull",
    "Route",
    "SealFailed",
    "SealedFieldRejected",
    "Sealer",
    "SignFailed",
    "SignatureExpired",
    "SignatureInvalid",
    "SignatureMalformed",
    "SignatureMissing",
    "SignatureReplayed",
    "UnsupportedMediaType",
    "__version__",
]
