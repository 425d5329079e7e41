// @eventseal/component: the eventseal WASI component, transpiled by jco into generated/,
// behind an API that takes and returns JavaScript values. No WIT record reaches the
// caller, and every decision stays in the component: this file only converts values.

import { readFileSync } from 'node:fs';
import { sealing } from './generated/eventseal.js';

/** The WIT interface the bindings call (wit/eventseal.wit): 0.1.2 has the batch operations. */
export const INTERFACE = 'eventseal:seal/sealing@0.1.2';

/** The most events one batch call takes (the component refuses a larger batch whole). */
export const MAX_BATCH = 1024;

const encoder = new TextEncoder();
// fatal: the component returns only UTF-8, and batches are text; never a silent U+FFFD.
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Every error this package throws on purpose. */
export class EventsealError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The policy or the keyring was refused; nothing of either is loaded. */
export class ConfigError extends EventsealError {
  constructor({ document, at, message }) {
    super(message);
    this.document = document;
    this.at = at;
  }
}

/** The event was refused, exactly as the eventseal gateway filter would refuse it. */
export class Refused extends EventsealError {
  constructor({ kind, status, title, detail, retryAfter = null }) {
    super(`${kind} (${status}): ${detail}`);
    Object.assign(this, { kind, status, title, detail, retryAfter });
  }

  /** The problem+json `type`. */
  get type() {
    return `urn:eventseal:problem:${this.kind}`;
  }
}

// One class per problem kind of the WIT contract (`problem-kind`).
export class MalformedJson extends Refused {}
export class JsonTooDeep extends Refused {}
export class UnsupportedMediaType extends Refused {}
export class PayloadTooLarge extends Refused {}
export class FieldMissing extends Refused {}
export class ContextMissing extends Refused {}
export class SignatureMissing extends Refused {}
export class SignatureMalformed extends Refused {}
export class SignatureExpired extends Refused {}
export class SignatureInvalid extends Refused {}
export class SignatureReplayed extends Refused {}
export class ProducerForbidden extends Refused {}
export class ReaderForbidden extends Refused {}
export class SealedFieldRejected extends Refused {}
export class SealFailed extends Refused {}
export class SignFailed extends Refused {}
export class KmsUnavailable extends Refused {}
export class ReplayCacheFull extends Refused {}
export class NoRule extends Refused {}
export class InvalidClaims extends Refused {}

const REFUSALS = {
  'malformed-json': MalformedJson,
  'json-too-deep': JsonTooDeep,
  'unsupported-media-type': UnsupportedMediaType,
  'payload-too-large': PayloadTooLarge,
  'field-missing': FieldMissing,
  'context-missing': ContextMissing,
  'signature-missing': SignatureMissing,
  'signature-malformed': SignatureMalformed,
  'signature-expired': SignatureExpired,
  'signature-invalid': SignatureInvalid,
  'signature-replayed': SignatureReplayed,
  'producer-forbidden': ProducerForbidden,
  'reader-forbidden': ReaderForbidden,
  'sealed-field-rejected': SealedFieldRejected,
  'seal-failed': SealFailed,
  'sign-failed': SignFailed,
  'kms-unavailable': KmsUnavailable,
  'replay-cache-full': ReplayCacheFull,
  'no-rule': NoRule,
  'invalid-claims': InvalidClaims,
};

/** The exception for a WIT `problem` (a kind newer than this package: plain `Refused`). */
function refusal({ kind, status, title, detail, retry }) {
  const Kind = Object.hasOwn(REFUSALS, kind) ? REFUSALS[kind] : Refused;
  return new Kind({ kind, status, title, detail, retryAfter: retry ?? null });
}

/** An event that went through: what the gateway would forward. */
export class Outcome {
  #event;

  constructor(event, headers, fields, verified, signed, tolerated) {
    // The component answers in the form it was asked in; the bytes of a text answer
    // are made once, when first asked for (a caller that publishes text never needs them).
    this.#event = typeof event === 'string' ? undefined : event;
    this.text = typeof event === 'string' ? event : decoder.decode(event);
    this.headers = Object.fromEntries(headers);
    this.fields = fields.map(({ pointer, kid, result }) => ({ pointer, kid: kid ?? null, result }));
    this.verified = verified ?? null;
    this.signed = signed;
    this.tolerated = tolerated ?? null;
  }

  /** The event to pass on, byte for byte. */
  get event() {
    return (this.#event ??= encoder.encode(this.text));
  }

  /** The event parsed. */
  json() {
    return JSON.parse(this.text);
  }
}

/** A policy or keyring as the component takes it: JSON text. */
function documentText(document) {
  if (typeof document === 'string') return document;
  if (document instanceof Uint8Array) return decoder.decode(document);
  return JSON.stringify(document);
}

/** An event as the component takes it: a Uint8Array (the byte form) or JSON text (the text form). */
function eventInput(event) {
  if (typeof event === 'string' || event instanceof Uint8Array) return event;
  if (ArrayBuffer.isView(event)) return new Uint8Array(event.buffer, event.byteOffset, event.byteLength);
  if (event instanceof ArrayBuffer) return new Uint8Array(event);
  const text = JSON.stringify(event);
  if (text === undefined) throw new TypeError(`an event is JSON, and ${typeof event} has no JSON form`);
  return text;
}

/** `'/events/orders'` (a POST), `'PUT /events/orders'` or `{method, path}`. */
function routeOf(route) {
  if (typeof route === 'string') {
    const space = route.indexOf(' ');
    return space < 0 ? ['POST', route] : [route.slice(0, space), route.slice(space + 1)];
  }
  if (typeof route?.path === 'string') return [route.method ?? 'POST', route.path];
  throw new TypeError("route: '/events/orders' (a POST), 'PUT /events/orders' or {method, path}");
}

function headerPairs(headers, json) {
  const entries = headers == null ? [] : Symbol.iterator in headers ? headers : Object.entries(headers);
  const pairs = Array.from(entries, ([name, value]) => [String(name), String(value)]);
  // Events are JSON: a caller that names no content type means JSON, as the filter needs.
  if (json && !pairs.some(([name]) => name.toLowerCase() === 'content-type')) {
    pairs.push(['content-type', 'application/json']);
  }
  return pairs;
}

/** The WIT `exchange` and `option<principal>` of an operation's options. */
function exchangeOf({ route, headers, principal, claims, authority = 'localhost', responseHeaders } = {}) {
  const [method, path] = routeOf(route);
  const response = responseHeaders == null ? undefined : headerPairs(responseHeaders, true);
  const exchange = { method, path, authority, headers: headerPairs(headers, response === undefined), response };
  if (principal == null) {
    if (claims != null) throw new TypeError('claims belong to a principal: pass principal too');
    return [exchange, undefined];
  }
  const claimsText = claims == null ? '' : typeof claims === 'string' ? claims : JSON.stringify(claims);
  return [exchange, { id: String(principal), claims: claimsText }];
}

/** One policy with its keyring, in the component (see index.d.ts). */
export class Sealer {
  #sealer;

  constructor(policy, keyring = '') {
    try {
      this.#sealer = sealing.Sealer.create(documentText(policy), documentText(keyring));
    } catch (e) {
      // jco throws a result's `err` as a ComponentError with the WIT value as `payload`.
      throw e?.payload?.document ? new ConfigError(e.payload) : e;
    }
  }

  static create(policy, keyring = '') {
    return new Sealer(policy, keyring);
  }

  static fromFiles(policyPath, keyringPath) {
    const keyring = keyringPath == null ? '' : readFileSync(keyringPath, 'utf8');
    return new Sealer(readFileSync(policyPath, 'utf8'), keyring);
  }

  seal(event, options) {
    return this.#call('seal', event, options);
  }

  open(event, options) {
    return this.#call('open', event, options);
  }

  sign(event, options) {
    return this.#call('sign', event, options);
  }

  verify(event, options) {
    return this.#call('verify', event, options);
  }

  sealMany(events, options) {
    return this.#many('seal', events, options);
  }

  openMany(events, options) {
    return this.#many('open', events, options);
  }

  signMany(events, options) {
    return this.#many('sign', events, options);
  }

  /** Drops the sealer inside the component (its keys are zeroized there). */
  close() {
    this.#sealer?.[Symbol.dispose]();
    this.#sealer = null;
  }

  [Symbol.dispose]() {
    this.close();
  }

  #invoke(method, ...args) {
    if (!this.#sealer) throw new Error('the sealer is closed');
    try {
      return this.#sealer[method](...args);
    } catch (e) {
      throw e?.payload?.kind ? refusal(e.payload) : e;
    }
  }

  #call(op, event, options) {
    const input = eventInput(event);
    const method = typeof input === 'string' ? `${op}Text` : op;
    const out = this.#invoke(method, input, ...exchangeOf(options));
    return new Outcome(out.event, out.headers, out.fields, out.verified, out.signed, out.tolerated);
  }

  #many(op, events, options) {
    const notText = new Map();
    const texts = Array.from(events, (event, index) => {
      const input = eventInput(event);
      if (typeof input === 'string') return input;
      try {
        return decoder.decode(input);
      } catch {
        // Not UTF-8, so not JSON: its place in the batch gets what the byte form answers
        // for it alone (the component refuses it as the gateway does).
        notText.set(index, input);
        return '';
      }
    });
    const batch = this.#invoke(`${op}Many`, texts, ...exchangeOf(options));
    const { headerNames: names, headerValues: values } = batch;
    const results = batch.events.map((text, index) => {
      // Event i's headers are row i of the columns; an empty value is no header.
      const headers = names.map((name, j) => [name, values[index * names.length + j]]).filter(([, value]) => value);
      const signed = headers.some(([name]) => name === 'webhook-signature');
      return new Outcome(text, headers, [], null, signed, null);
    });
    for (const { index, problem } of batch.refused) results[index] = refusal(problem);
    for (const [index, bytes] of notText) {
      try {
        results[index] = this.#call(op, bytes, options);
      } catch (e) {
        if (!(e instanceof Refused)) throw e;
        results[index] = e;
      }
    }
    return results;
  }
}
