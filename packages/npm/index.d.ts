// Types of @eventseal/component (index.js). The WIT names come from jco's bindings of
// wit/eventseal.wit, so they follow the contract.

import type { ConfigDocument, FieldResult, ProblemKind } from './generated/interfaces/eventseal-seal-sealing.js';

export type { ConfigDocument, FieldResult, ProblemKind };

/** The WIT interface the bindings call: `eventseal:seal/sealing@0.1.2`. */
export declare const INTERFACE: string;

/** The most events one batch call (`sealMany`, ...) takes: 1024. */
export declare const MAX_BATCH: number;

/**
 * An event: its JSON bytes (`Uint8Array`, `Buffer`, any `ArrayBufferView` or an
 * `ArrayBuffer`), its JSON text, or any other value, which `JSON.stringify` turns into
 * its text. Bytes go to the component's byte form, which refuses bytes that are not
 * UTF-8 as `MalformedJson`; text goes to the text form. Both decide alike.
 */
export type Event = Uint8Array | ArrayBufferView | ArrayBuffer | string | object | number | boolean | null;

/**
 * Where the event travels, as the filter sees the request: `'/events/orders'` (a POST),
 * `'PUT /events/orders'` or `{method, path}` (`method` defaults to `POST`). The path
 * may carry a query string. Policy rules match on it.
 */
export type Route = string | { method?: string; path: string };

/** HTTP headers: a plain object, or pairs (an array of `[name, value]`, a `Map`, a `Headers`). */
export type HeadersInit = Record<string, string> | Iterable<readonly [string, string]>;

/** What an operation needs to know about the exchange the event travels in. */
export interface Options {
  /** Where the event travels (required). */
  route: Route;
  /**
   * The request headers. `content-type: application/json` is added when none is given
   * (events are JSON, and rules that seal or open need it). A rule that verifies reads
   * the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers here.
   */
  headers?: HeadersInit;
  /** The caller's identity as the service authenticated it (a SPIFFE id, a JWT subject): producer and reader globs match it. */
  principal?: string;
  /** The principal's JWT claims (an object, or its JSON text), for claim grants. Needs `principal`. */
  claims?: Record<string, unknown> | string;
  /** The request's `:authority` (host and port). Default `localhost`. */
  authority?: string;
  /**
   * Set when the event is a response body: the response headers travelling with it
   * (`content-type: application/json` is then added to these when absent). `header`
   * context values still come from `headers`.
   */
  responseHeaders?: HeadersInit;
}

/** What was done to one selected field. Names the field, never its value. */
export interface FieldOutcome {
  /** The field's JSON Pointer (the selector itself when the field is absent). */
  readonly pointer: string;
  /** The id of the key that sealed or opened it, or `null`. */
  readonly kid: string | null;
  /** `sealed`, `opened`, `absent`, `withheld` or `masked`. */
  readonly result: FieldResult;
}

/** An event that went through: what the gateway would forward. */
export declare class Outcome {
  private constructor();
  /** The event to pass on, byte for byte: publish exactly these bytes (re-serializing breaks a signature). */
  readonly event: Uint8Array;
  /** The same event as text (events are UTF-8 JSON). */
  readonly text: string;
  /** The event parsed. */
  json(): unknown;
  /** Headers to set on the event, by lowercase name: a signature's `webhook-id`, `webhook-timestamp`, `webhook-signature`. */
  readonly headers: Record<string, string>;
  /** Per-field outcomes, in the order the rule's actions produced them. Empty in batch results. */
  readonly fields: readonly FieldOutcome[];
  /** The id of the key whose signature verified, if the rule verifies; else `null` (always in batch results). */
  readonly verified: string | null;
  /** Whether the event was signed (its signature is in `headers`). */
  readonly signed: boolean;
  /**
   * A failure the rule's `on_error: forward_unchanged` let through (the event is then
   * the original, untouched), else `null` (always in batch results). Never set for a rule that seals.
   */
  readonly tolerated: ProblemKind | null;
}

/** Every error this package throws on purpose. */
export declare class EventsealError extends Error {}

/** The policy or the keyring was refused; nothing of either is loaded. Never holds key material. */
export declare class ConfigError extends EventsealError {
  /** The document the problem is in: `policy` or `keyring`. */
  readonly document: ConfigDocument;
  /** The JSON Pointer of the offending member; empty for the document as a whole. */
  readonly at: string;
  /** The full message, for example `configuration /rules/0/seal/fields/1: expected a JSON Pointer (...)`. */
  readonly message: string;
}

/** The fields of a refusal, as the component reports it. */
export interface Problem {
  kind: ProblemKind;
  status: number;
  title: string;
  detail: string;
  retryAfter?: number | null;
}

/**
 * The event was refused, exactly as the eventseal gateway filter would refuse it. Each
 * problem kind has its own subclass (`SignatureReplayed`, `MalformedJson`, ...), so
 * `e instanceof SignatureReplayed` tests one kind and `e instanceof Refused` all of
 * them. Nothing in it is a field value or a secret.
 */
export declare class Refused extends EventsealError {
  constructor(problem: Problem);
  /** The problem type's slug, for example `signature-replayed`. */
  readonly kind: ProblemKind;
  /** The problem+json `type`: `urn:eventseal:problem:<kind>`. */
  readonly type: string;
  /** The HTTP status the filter answers with (400, 401, 403, 413, 415, 422, 500, 502, 503). */
  readonly status: number;
  /** A short human title for the kind. */
  readonly title: string;
  /** Which field, header or rule, and why. Never a value or a secret. */
  readonly detail: string;
  /** Seconds after which a retry may succeed (`Retry-After`), or `null`. */
  readonly retryAfter: number | null;
}

/** `malformed-json` (400): the event is not valid JSON (or not UTF-8). */
export declare class MalformedJson extends Refused {}
/** `json-too-deep` (400): the JSON nests deeper than the policy's `limits.max_json_depth`. */
export declare class JsonTooDeep extends Refused {}
/** `unsupported-media-type` (415): the body's `content-type` is not JSON. */
export declare class UnsupportedMediaType extends Refused {}
/** `payload-too-large` (413): the event is larger than the policy allows, or a batch has more than `MAX_BATCH` events. */
export declare class PayloadTooLarge extends Refused {}
/** `field-missing` (400): a field the rule marks `required` is not in the event. */
export declare class FieldMissing extends Refused {}
/** `context-missing` (400): a context value the rule binds is missing from the exchange or the event. */
export declare class ContextMissing extends Refused {}
/** `signature-missing` (401): a `webhook-*` signature header is missing. */
export declare class SignatureMissing extends Refused {}
/** `signature-malformed` (401): a `webhook-*` signature header is malformed. */
export declare class SignatureMalformed extends Refused {}
/** `signature-expired` (401): the signature's timestamp is outside the tolerance. */
export declare class SignatureExpired extends Refused {}
/** `signature-invalid` (401): no signature verifies (deliberately says nothing more). */
export declare class SignatureInvalid extends Refused {}
/** `signature-replayed` (401): this sealer already accepted the message id. */
export declare class SignatureReplayed extends Refused {}
/** `producer-forbidden` (403): the principal may not publish on this rule's route. */
export declare class ProducerForbidden extends Refused {}
/** `reader-forbidden` (403): the principal may not read a field and the rule says refuse. */
export declare class ReaderForbidden extends Refused {}
/** `sealed-field-rejected` (422 on requests, 502 on responses): a sealed field failed to open; the detail names the pointer and the class. */
export declare class SealedFieldRejected extends Refused {}
/** `seal-failed` (500): sealing failed on eventseal's side (keys, randomness). */
export declare class SealFailed extends Refused {}
/** `sign-failed` (500): signing failed on eventseal's side. */
export declare class SignFailed extends Refused {}
/** `kms-unavailable` (503): the key management service could not be reached. */
export declare class KmsUnavailable extends Refused {}
/** `replay-cache-full` (503, with `retryAfter`): the replay memory has no room for the message's id until older ids expire. */
export declare class ReplayCacheFull extends Refused {}
/** `no-rule` (500): no policy rule routes the exchange, or the rule lacks the operation's action. */
export declare class NoRule extends Refused {}
/** `invalid-claims` (500): the principal's claims are not a JSON object. */
export declare class InvalidClaims extends Refused {}

/**
 * One policy with its keyring, in the eventseal component. Build one per policy and
 * reuse it: it holds the expanded keys and remembers the signed message ids it accepted
 * (replays are refused), per sealer.
 *
 * Every operation is synchronous and decides as the gateway filter does: it throws a
 * `Refused` subclass where the filter would refuse. The batch operations return their
 * refusals in place instead, one per refused event.
 */
export declare class Sealer implements Disposable {
  /**
   * A sealer from a policy (the filter's JSON configuration, docs/CONFIG.md) and a
   * keyring (a JWK Set), each as JSON text, bytes or a parsed value. A policy with
   * inline keys takes an empty keyring.
   * @throws {ConfigError} naming the document and the JSON location.
   */
  constructor(policy: string | Uint8Array | object, keyring?: string | Uint8Array | object);
  /** As `new Sealer(policy, keyring)`. */
  static create(policy: string | Uint8Array | object, keyring?: string | Uint8Array | object): Sealer;
  /** A sealer from a policy file and a keyring file (omit it for inline keys). Reads both synchronously. */
  static fromFiles(policyPath: string | URL, keyringPath?: string | URL): Sealer;

  /** Seals an event before publishing it (and signs it, if the rule says so). @throws {Refused} */
  seal(event: Event, options: Options): Outcome;
  /** Opens an event after consuming it (verifying it first, if the rule says so). @throws {Refused} */
  open(event: Event, options: Options): Outcome;
  /** Signs an event; the signature headers are in `Outcome.headers`. @throws {Refused} */
  sign(event: Event, options: Options): Outcome;
  /** Verifies an event's Standard Webhooks signature (in `options.headers`). @throws {Refused} */
  verify(event: Event, options: Options): Outcome;

  /**
   * Seals a batch of events that share one route, headers and principal, in one call
   * into the component. Returns one entry per event, in order: its `Outcome` (with
   * empty `fields`) or its `Refused` (returned, not thrown), each as `seal` would have
   * decided it. At most `MAX_BATCH` events: a larger batch is refused whole
   * (`PayloadTooLarge`, thrown), as is a batch the policy refuses as a whole.
   */
  sealMany(events: Iterable<Event>, options: Options): Array<Outcome | Refused>;
  /**
   * Opens a batch, as `sealMany`. The events share `options.headers`, so for a rule that
   * also verifies signatures, open each event with `open`.
   */
  openMany(events: Iterable<Event>, options: Options): Array<Outcome | Refused>;
  /** Signs a batch, as `sealMany`: each event gets a fresh `webhook-id` and its own signature. */
  signMany(events: Iterable<Event>, options: Options): Array<Outcome | Refused>;

  /** Drops the sealer inside the component (its keys are zeroized there). Later calls throw. */
  close(): void;
  /** As `close()`, for `using sealer = ...`. */
  [Symbol.dispose](): void;
}
