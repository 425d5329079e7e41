"""The sealer: the eventseal component (`eventseal.component.wasm`) in wasmtime, behind
an API that takes and returns Python values. No WIT record reaches the caller."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, ResourceAny

from ._problems import ConfigError, Refused, refusal

#: The WIT interface this package calls (`wit/eventseal.wit`): 0.1.2 has the batch operations.
INTERFACE = "eventseal:seal/sealing@0.1.2"

#: The most events one batch call takes (the component refuses larger batches whole).
MAX_BATCH = 1024

Event = Union[bytes, bytearray, memoryview, str, Mapping[str, Any], Sequence[Any]]
"""An event: its JSON bytes or text, or a value `json.dumps` turns into it."""

Route = Union[str, Tuple[str, str]]
"""Where the event travels: ``"/events/orders"`` (a POST), ``"PUT /events/orders"`` or
``("PUT", "/events/orders")``. Policy rules match on it as the filter matches requests."""


@dataclass(frozen=True)
class FieldOutcome:
    """What was done to one selected field; names the field, never its value."""

    #: The field's JSON Pointer (the selector itself when the field is absent).
    pointer: str
    #: The id of the key that sealed or opened it, if one did.
    kid: Optional[str]
    #: ``"sealed"``, ``"opened"``, ``"absent"``, ``"withheld"`` or ``"masked"``.
    result: str


@dataclass(frozen=True)
class Outcome:
    """An event that went through: what the gateway would forward."""

    #: The event to pass on, byte for byte (publish exactly these bytes with `headers`).
    event: bytes
    #: Headers to set on the event, for example the ``webhook-*`` signature headers.
    headers: Dict[str, str] = field(default_factory=dict)
    #: Per-field outcomes (empty for the batch operations).
    fields: Tuple[FieldOutcome, ...] = ()
    #: The id of the key whose signature verified, if the rule verifies.
    verified: Optional[str] = None
    #: Whether the event was signed (its signature is in `headers`).
    signed: bool = False
    #: A failure the rule's ``on_error: forward_unchanged`` let through (the event is the original).
    tolerated: Optional[str] = None

    @property
    def text(self) -> str:
        """The event as text (events are UTF-8 JSON)."""
        return self.event.decode()

    def json(self) -> Any:
        """The event parsed."""
        return json.loads(self.event)


_compiled: Optional[Tuple[Engine, Component]] = None
_compile_lock = threading.Lock()


def _component() -> Tuple[Engine, Component]:
    """The component, compiled once per process (compiling takes about a second)."""
    global _compiled
    with _compile_lock:
        if _compiled is None:
            engine = Engine()
            wasm = resources.files(__package__).joinpath("eventseal.component.wasm").read_bytes()
            _compiled = (engine, Component(engine, wasm))
        return _compiled


def _record(**fields: Any) -> Record:
    # wasmtime matches `option<record>` arguments by class, so records are `Record`s.
    value = Record()
    value.__dict__.update(fields)
    return value


def _json_text(value: Any) -> str:
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return value if isinstance(value, str) else bytes(value).decode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _route(route: Route) -> Tuple[str, str]:
    if isinstance(route, tuple):
        return route
    # The request line's order: the method, one space, the path (which may hold spaces).
    method, space, path = route.partition(" ")
    return (method, path) if space else ("POST", route)


def _headers(headers: Optional[Mapping[str, str]], default_json: bool) -> List[Tuple[str, str]]:
    pairs = [(str(k), str(v)) for k, v in (headers or {}).items()]
    # Events are JSON: a caller that names no content type means JSON, as the filter needs.
    if default_json and not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.append(("content-type", "application/json"))
    return pairs


class Sealer:
    """One policy with its keyring, in one instance of the component.

    The policy is the JSON document the gateway filter takes (docs/CONFIG.md); the
    keyring a JWK Set, from your secret store. Both may be given as text or as parsed
    values. A sealer remembers the ids of the signed messages it accepted, to refuse
    replays.

    Threads: every call holds the sealer's lock, so one sealer may be shared between
    threads, which then take turns. For calls in parallel, give each thread its own
    sealer (each has its own replay memory). The component is compiled once per process.
    """

    def __init__(self, policy: Union[str, Mapping[str, Any]], keyring: Union[str, Mapping[str, Any]] = "") -> None:
        engine, component = _component()
        self._lock = threading.Lock()
        self._store = Store(engine)
        # The component imports only WASI: the wall clock (signature times), random
        # (nonces), and the standard library's environment and stdio, all empty here.
        self._store.set_wasi(WasiConfig())
        linker = Linker(engine)
        linker.add_wasip2()
        instance = linker.instantiate(self._store, component)
        interface = instance.get_export_index(self._store, INTERFACE)
        if interface is None:
            raise RuntimeError(f"the bundled component does not export {INTERFACE}: reinstall eventseal")

        def export(name: str) -> Any:
            return instance.get_func(self._store, instance.get_export_index(self._store, name, interface))

        self._text = {op: export(f"[method]sealer.{op}-text") for op in ("seal", "open", "sign", "verify")}
        self._bytes = {op: export(f"[method]sealer.{op}") for op in ("seal", "open", "sign", "verify")}
        self._many = {op: export(f"[method]sealer.{op}-many") for op in ("seal", "open", "sign")}
        # result<sealer, config-error> comes back untagged: a ResourceAny or a Record.
        created = export("[static]sealer.create")(self._store, _json_text(policy), _json_text(keyring))
        if not isinstance(created, ResourceAny):
            raise ConfigError(created.document, created.at, created.message)
        self._sealer: Optional[ResourceAny] = created

    @classmethod
    def from_files(
        cls, policy: Union[str, "os.PathLike[str]"], keyring: Union[str, "os.PathLike[str]", None] = None
    ) -> "Sealer":
        """A sealer from a policy file and a keyring file (JWK Set)."""
        with open(policy, encoding="utf-8") as p:
            policy_text = p.read()
        keyring_text = ""
        if keyring is not None:
            with open(keyring, encoding="utf-8") as k:
                keyring_text = k.read()
        return cls(policy_text, keyring_text)

    def seal(self, event: Event, *, route: Route, **exchange: Any) -> Outcome:
        """Seals an event before publishing it (and signs it, if the rule says so).

        Keyword arguments, here and in every operation: `route`; `headers` (the request
        headers; ``content-type: application/json`` is added when absent); `principal`
        (the caller's authenticated identity) and `claims` (its JWT claims, a dict);
        `authority` (the host); `response_headers` (set when the event is a response
        body: the headers travelling with it). Raises a `Refused` subclass."""
        return self._call("seal", event, route, **exchange)

    def open(self, event: Event, *, route: Route, **exchange: Any) -> Outcome:
        """Opens an event after consuming it (verifying it first, if the rule says so)."""
        return self._call("open", event, route, **exchange)

    def sign(self, event: Event, *, route: Route, **exchange: Any) -> Outcome:
        """Signs an event; the signature headers are in `Outcome.headers`."""
        return self._call("sign", event, route, **exchange)

    def verify(self, event: Event, *, route: Route, **exchange: Any) -> Outcome:
        """Verifies an event's Standard Webhooks signature (in `headers`)."""
        return self._call("verify", event, route, **exchange)

    def seal_many(self, events: Sequence[Event], *, route: Route, **exchange: Any) -> List[Union[Outcome, Refused]]:
        """Seals a batch of events sharing one route and principal, in one call into the
        component. Returns one entry per event, in order: its `Outcome` (without field
        outcomes) or its `Refused` (returned, not raised). At most `MAX_BATCH` events."""
        return self._call_many("seal", events, route, **exchange)

    def open_many(self, events: Sequence[Event], *, route: Route, **exchange: Any) -> List[Union[Outcome, Refused]]:
        """Opens a batch, as `seal_many`. The events share `headers`, so a rule that also
        verifies signatures needs `open`, one event at a time."""
        return self._call_many("open", events, route, **exchange)

    def sign_many(self, events: Sequence[Event], *, route: Route, **exchange: Any) -> List[Union[Outcome, Refused]]:
        """Signs a batch, as `seal_many`; each event gets a fresh ``webhook-id``."""
        return self._call_many("sign", events, route, **exchange)

    def close(self) -> None:
        """Drops the sealer inside the component (its keys are zeroized there)."""
        with self._lock:
            if self._sealer is not None:
                self._sealer.drop(self._store)
                self._sealer = None

    def __enter__(self) -> "Sealer":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _exchange(
        self,
        route: Route,
        headers: Optional[Mapping[str, str]] = None,
        principal: Optional[str] = None,
        claims: Optional[Mapping[str, Any]] = None,
        authority: str = "localhost",
        response_headers: Optional[Mapping[str, str]] = None,
    ) -> Tuple[Record, Optional[Record]]:
        method, path = _route(route)
        response = None if response_headers is None else _headers(response_headers, True)
        exchange = _record(
            method=method, path=path, authority=authority, headers=_headers(headers, response is None), response=response
        )
        if principal is None and claims is not None:
            raise TypeError("claims belong to a principal: pass principal too")
        who = None if principal is None else _record(id=principal, claims=json.dumps(claims) if claims else "")
        return exchange, who

    def _invoke(self, func: Any, *args: Any) -> Any:
        with self._lock:
            if self._sealer is None:
                raise ValueError("the sealer is closed")
            return func(self._store, self._sealer, *args)

    def _call(self, op: str, event: Event, route: Route, **exchange: Any) -> Outcome:
        call, argument = self._text[op], event
        if isinstance(event, (bytes, bytearray, memoryview)):
            try:
                argument = bytes(event).decode()
            except UnicodeDecodeError:
                # Not UTF-8, so not JSON: the byte form refuses it as the gateway does.
                call, argument = self._bytes[op], bytes(event)
        elif not isinstance(event, str):
            argument = _json_text(event)
        result = self._invoke(call, argument, *self._exchange(route, **exchange))
        if result.tag == "err":
            raise _refused(result.payload)
        out = result.payload
        return Outcome(
            event=out.event.encode() if isinstance(out.event, str) else out.event,
            headers=dict(out.headers),
            fields=tuple(FieldOutcome(f.pointer, f.kid, f.result) for f in out.fields),
            verified=out.verified,
            signed=out.signed,
            tolerated=out.tolerated,
        )

    def _call_many(self, op: str, events: Sequence[Event], route: Route, **exchange: Any) -> List[Union[Outcome, Refused]]:
        texts, not_text = [], {}
        for i, event in enumerate(events):
            try:
                texts.append(_json_text(event))
            except UnicodeDecodeError:
                # Not UTF-8, so not JSON: its place in the batch gets what the byte form
                # answers for it alone (the component refuses it as the gateway does).
                texts.append("")
                not_text[i] = event
        result = self._invoke(self._many[op], texts, *self._exchange(route, **exchange))
        if result.tag == "err":
            raise _refused(result.payload)
        batch = result.payload
        names, values = getattr(batch, "header-names"), getattr(batch, "header-values")
        width = len(names)
        out: List[Union[Outcome, Refused]] = []
        for i, text in enumerate(batch.events):
            # Event i's headers are row i of the columns; an empty value is no header.
            headers = {n: v for n, v in zip(names, values[i * width : (i + 1) * width]) if v}
            out.append(Outcome(event=text.encode(), headers=headers, signed="webhook-signature" in headers))
        for refused in batch.refused:
            out[refused.index] = _refused(refused.problem)
        for i, event in not_text.items():
            try:
                out[i] = self._call(op, event, route, **exchange)
            except Refused as refused:
                out[i] = refused
        return out


def _refused(problem: Any) -> Refused:
    return refusal(problem.kind, problem.status, problem.title, problem.detail, problem.retry)
