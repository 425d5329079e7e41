// An event service that seals events before publishing and opens them after consuming,
// with the @eventseal/component package (`npm install @eventseal/component`, or the
// tarball scripts/package builds).
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
import { ConfigError, Refused, Sealer } from '@eventseal/component';

const POLICY = new URL('policy.json', import.meta.url);
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

/** A fresh JWK Set: one AES-256-GCM key for sealing, one HMAC key for signatures. */
function newKeyring() {
  const key = () => randomBytes(32).toString('base64url');
  return {
    keys: [
      { kty: 'oct', kid: 'orders-1', alg: 'A256GCM', k: key(), status: 'primary' },
      { kty: 'oct', kid: 'hooks-1', alg: 'HS256', k: key(), status: 'primary' },
    ],
  };
}

const reportFields = (out) => Object.fromEntries(out.fields.map((f) => [f.pointer, { kid: f.kid, result: f.result }]));

/** Seals and signs an event (`orders-publish`). Publish `body` byte for byte with `headers` (the signature). */
function sealEvent(sealer, event) {
  const out = sealer.seal(event, { route: '/events/orders' });
  return { body: out.text, event: out.json(), headers: out.headers, fields: reportFields(out) };
}

/** Verifies and opens a delivery (`orders-consume`) as the billing consumer. */
function openEvent(sealer, sealed) {
  const out = sealer.open(sealed.body, { route: '/inbox/orders', headers: sealed.headers, principal: CONSUMER });
  return { event: out.json(), fields: reportFields(out), verified: out.verified };
}

/** All of standard input (readFileSync(0) fails with EAGAIN on a non-blocking pipe). */
async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
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
  let sealer;
  try {
    sealer = new Sealer(readFileSync(POLICY, 'utf8'), keyring);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`configuration refused: ${e.message}`);
    return 2;
  }
  let report;
  try {
    if (mode === 'seal') {
      report = sealEvent(sealer, await readStdin());
    } else if (mode === 'open') {
      report = openEvent(sealer, await readStdin());
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
