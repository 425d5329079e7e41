// An event service that seals events before publishing and opens them after consuming,
// with the eventseal component transpiled to JavaScript by jco (`npm run transpile`).
//
//   node service.mjs keyring            print a fresh keyring (JWK Set) to store as a secret
//   node service.mjs demo               seal, then open, an example order event
//   node service.mjs seal < event.json  seal and sign an event: {body, event, headers, fields}
//   node service.mjs open < sealed.json verify and open what `seal` printed: {event, fields, ...}
//
// The keyring comes from the service's secret store; here, the EVENTSEAL_KEYRING
// environment variable. Every mode prints one JSON document.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const HERE = new URL('.', import.meta.url);

// The two routes of the example policy (policy.json): publishers post here, and the
// service's consumer receives deliveries there.
const PUBLISH = { method: 'POST', path: '/events/orders' };
const CONSUME = { method: 'POST', path: '/inbox/orders' };
const CONSUMER = 'spiffe://example.org/ns/billing/sa/consumer';

const ORDER = {
  specversion: '1.0',
  id: 'evt-1001',
  type: 'com.example.order.created',
  source: '/shop',
  data: {
    order_id: 'o-77',
    amount: 129.5,
    card: { number: '4111 1111 1111 1111', expiry: '12/29' },
    customer: { email: 'ada@example.org', name: 'Ada' },
  },
};

/** The component refused the event, exactly as the gateway filter would. */
class Refused extends Error {
  constructor(problem) {
    super(`${problem.kind} (${problem.status}): ${problem.detail}`);
    // kind: the problem type slug (urn:eventseal:problem:<kind>); status: the filter's
    // HTTP status; detail names a field or header, never a value.
    Object.assign(this, { kind: problem.kind, status: problem.status, detail: problem.detail });
  }
}

/**
 * One policy with its keyring. jco turns result<T, E> into "returns T or throws a
 * ComponentError whose payload is E"; this class turns that into Refused.
 */
class EventSealer {
  constructor(sealing, policy, keyring) {
    try {
      this.sealer = sealing.Sealer.create(policy, keyring);
    } catch (e) {
      if (e.payload && e.payload.document) throw new Error(`configuration refused: ${e.payload.message}`);
      throw e;
    }
  }

  call(op, event, { method, path }, headers, principal, claims) {
    const exchange = {
      method,
      path,
      authority: 'events.example.org',
      headers: Object.entries(headers),
      response: undefined, // a request body
    };
    const who = principal === undefined ? undefined : { id: principal, claims: claims ? JSON.stringify(claims) : '' };
    try {
      return this.sealer[op](event, exchange, who);
    } catch (e) {
      if (e.payload && e.payload.kind) throw new Refused(e.payload);
      throw e;
    }
  }

  /** Drops the sealer inside the component (its keys are zeroized there). */
  close() {
    this.sealer[Symbol.dispose]();
  }
}

function newKeyring() {
  const b64 = (n) => randomBytes(n).toString('base64url');
  return {
    keys: [
      { kty: 'oct', kid: 'orders-1', alg: 'A256GCM', k: b64(32), status: 'primary' },
      { kty: 'oct', kid: 'hooks-1', alg: 'HS256', k: b64(32), status: 'primary' },
    ],
  };
}

const fieldsOf = (out) => Object.fromEntries(out.fields.map((f) => [f.pointer, { kid: f.kid ?? null, result: f.result }]));

/** Seals and signs an event; publish `body` byte for byte with `headers` (the signature). */
function sealEvent(sealer, event) {
  const out = sealer.call('seal', new TextEncoder().encode(JSON.stringify(event)), PUBLISH, {
    'content-type': 'application/json',
  });
  const body = new TextDecoder().decode(out.event);
  return { body, event: JSON.parse(body), headers: Object.fromEntries(out.headers), fields: fieldsOf(out) };
}

/** Verifies and opens a delivery: `sealed` holds the body as received and its headers. */
function openEvent(sealer, sealed, principal = CONSUMER) {
  const headers = { 'content-type': 'application/json', ...sealed.headers };
  const out = sealer.call('open', new TextEncoder().encode(sealed.body), CONSUME, headers, principal);
  return { event: JSON.parse(new TextDecoder().decode(out.event)), fields: fieldsOf(out), verified: out.verified ?? null };
}

/** All of standard input (readFileSync(0) fails with EAGAIN on a non-blocking pipe). */
async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(mode = 'demo') {
  if (mode === 'keyring') {
    console.log(JSON.stringify(newKeyring()));
    return 0;
  }
  const keyring = process.env.EVENTSEAL_KEYRING;
  if (!keyring) {
    console.error('EVENTSEAL_KEYRING must hold the keyring (a JWK Set); `node service.mjs keyring` makes one');
    return 2;
  }
  let sealing;
  try {
    ({ sealing } = await import('./generated/eventseal.js'));
  } catch (e) {
    console.error(`generated/eventseal.js is missing or broken (${e.code ?? e.message}); run \`npm run transpile\` (see README.md)`);
    return 2;
  }
  let sealer;
  try {
    sealer = new EventSealer(sealing, readFileSync(new URL('policy.json', HERE), 'utf8'), keyring);
  } catch (e) {
    console.error(e.message);
    return 2;
  }
  let report;
  try {
    if (mode === 'seal') {
      report = sealEvent(sealer, JSON.parse(await readStdin()));
    } else if (mode === 'open') {
      report = openEvent(sealer, JSON.parse(await readStdin()));
    } else if (mode === 'demo') {
      const sealed = sealEvent(sealer, ORDER);
      const opened = openEvent(sealer, sealed);
      let replayed = null;
      try {
        openEvent(sealer, sealed);
      } catch (e) {
        if (!(e instanceof Refused)) throw e;
        replayed = { kind: e.kind, status: e.status };
      }
      report = { original: ORDER, sealed, opened, replayed };
    } else {
      console.error('usage: node service.mjs [keyring|demo|seal|open]');
      return 2;
    }
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    console.log(JSON.stringify({ refused: { kind: e.kind, status: e.status, detail: e.detail } }));
    return 1;
  } finally {
    sealer.close();
  }
  console.log(JSON.stringify(report, null, 2));
  return 0;
}

process.exitCode = await main(process.argv[2]);
