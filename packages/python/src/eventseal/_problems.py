"""Refusals and configuration errors, as exceptions named after the problem types."""

from __future__ import annotations

from typing import Dict, Optional, Type


class EventsealError(Exception):
    """Every error this package raises on purpose."""


class ConfigError(EventsealError):
    """The policy or the keyring was refused; nothing of either is loaded.

    `document` is ``"policy"`` or ``"keyring"``, `at` the JSON Pointer of the offending
    member (empty for the document as a whole). The message never holds key material."""

    def __init__(self, document: str, at: str, message: str) -> None:
        super().__init__(message)
        self.document = document
        self.at = at
        self.message = message


class Refused(EventsealError):
    """The event was refused, exactly as the eventseal gateway filter would refuse it.

    Each problem type has its own subclass (``SignatureReplayed``, ``MalformedJson``,
    ...), so ``except eventseal.SignatureReplayed`` catches one kind and
    ``except eventseal.Refused`` all of them. The detail names a field, header or rule,
    never a value or a key."""

    #: The problem type's slug, for example ``"signature-replayed"``.
    kind: str = ""

    def __init__(self, kind: str, status: int, title: str, detail: str, retry_after: Optional[int] = None) -> None:
        super().__init__(f"{kind} ({status}): {detail}")
        self.kind = kind
        #: The HTTP status the filter answers with (for example 401, 403, 422).
        self.status = status
        self.title = title
        self.detail = detail
        #: Seconds after which a retry may succeed (``Retry-After``), if any.
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        """The problem+json ``type``: ``urn:eventseal:problem:<kind>``."""
        return f"urn:eventseal:problem:{self.kind}"


# One class per problem kind of the WIT contract (`problem-kind`).


class MalformedJson(Refused):
    """The event is not valid JSON (or not UTF-8). Type ``urn:eventseal:problem:malformed-json``."""

    kind = "malformed-json"


class JsonTooDeep(Refused):
    """The JSON nests deeper than the policy's ``limits.max_json_depth``. Type ``urn:eventseal:problem:json-too-deep``."""

    kind = "json-too-deep"


class UnsupportedMediaType(Refused):
    """The body's ``content-type`` is not JSON. Type ``urn:eventseal:problem:unsupported-media-type``."""

    kind = "unsupported-media-type"


class PayloadTooLarge(Refused):
    """The event (or the batch) is larger than the policy allows. Type ``urn:eventseal:problem:payload-too-large``."""

    kind = "payload-too-large"


class FieldMissing(Refused):
    """A field the rule marks ``required`` is not in the event. Type ``urn:eventseal:problem:field-missing``."""

    kind = "field-missing"


class ContextMissing(Refused):
    """A context value the rule binds is missing from the exchange or the event. Type ``urn:eventseal:problem:context-missing``."""

    kind = "context-missing"


class SignatureMissing(Refused):
    """A ``webhook-*`` signature header is missing. Type ``urn:eventseal:problem:signature-missing``."""

    kind = "signature-missing"


class SignatureMalformed(Refused):
    """A ``webhook-*`` signature header is malformed. Type ``urn:eventseal:problem:signature-malformed``."""

    kind = "signature-malformed"


class SignatureExpired(Refused):
    """The signature's timestamp is outside the tolerance. Type ``urn:eventseal:problem:signature-expired``."""

    kind = "signature-expired"


class SignatureInvalid(Refused):
    """No signature verifies (deliberately says nothing more). Type ``urn:eventseal:problem:signature-invalid``."""

    kind = "signature-invalid"


class SignatureReplayed(Refused):
    """The message id was already accepted by this sealer. Type ``urn:eventseal:problem:signature-replayed``."""

    kind = "signature-replayed"


class ProducerForbidden(Refused):
    """The principal may not publish on this rule's route. Type ``urn:eventseal:problem:producer-forbidden``."""

    kind = "producer-forbidden"


class ReaderForbidden(Refused):
    """The principal may not read a field and the rule says refuse. Type ``urn:eventseal:problem:reader-forbidden``."""

    kind = "reader-forbidden"


class SealedFieldRejected(Refused):
    """A sealed field failed to open (the detail names the pointer and the class). Type ``urn:eventseal:problem:sealed-field-rejected``."""

    kind = "sealed-field-rejected"


class SealFailed(Refused):
    """Sealing failed on eventseal's side (keys, randomness). Type ``urn:eventseal:problem:seal-failed``."""

    kind = "seal-failed"


class SignFailed(Refused):
    """Signing failed on eventseal's side. Type ``urn:eventseal:problem:sign-failed``."""

    kind = "sign-failed"


class KmsUnavailable(Refused):
    """The key management service could not be reached. Type ``urn:eventseal:problem:kms-unavailable``."""

    kind = "kms-unavailable"


class ReplayCacheFull(Refused):
    """The replay memory has no room for the message's id until older ids expire (retry after `retry_after`). Type ``urn:eventseal:problem:replay-cache-full``."""

    kind = "replay-cache-full"


class NoRule(Refused):
    """No policy rule routes the exchange, or the rule lacks the operation's action. Type ``urn:eventseal:problem:no-rule``."""

    kind = "no-rule"


class InvalidClaims(Refused):
    """The principal's claims are not a JSON object. Type ``urn:eventseal:problem:invalid-claims``."""

    kind = "invalid-claims"


REFUSALS: Dict[str, Type[Refused]] = {cls.kind: cls for cls in Refused.__subclasses__()}


def refusal(kind: str, status: int, title: str, detail: str, retry_after: Optional[int] = None) -> Refused:
    """The exception for a problem of the component (a kind newer than this package: `Refused`)."""
    return REFUSALS.get(kind, Refused)(kind, status, title, detail, retry_after)
