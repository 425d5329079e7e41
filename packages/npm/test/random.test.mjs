// Where the installed package's nonces come from: the host's wasi:random get-random-bytes
// (Node's CSPRNG, through the preview2 shim), drawn in pooled refills rather than one host
// call per field, never from get-random-u64; and no two sealed fields share an IV.
//
// A file of its own: node --test runs each file in its own process, so the counting
// wrappers set up here before the package is loaded touch no other test.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { random } from '@bytecodealliance/preview2-shim/random';

import { POLICY, SEALED, order, pointerGet } from './orders.mjs';

const calls = { 'get-random-u64': 0, 'get-random-bytes': 0 };
const { getRandomU64, getRandomBytes } = random;
random.getRandomU64 = () => (calls['get-random-u64']++, getRandomU64());
random.getRandomBytes = (length) => (calls['get-random-bytes']++, getRandomBytes(length));

const { Sealer } = await import('@eventseal/component');

const KEYRING = {
  keys: [
    { kty: 'oct', kid: 'orders-random', alg: 'A256GCM', k: randomBytes(32).toString('base64url'), status: 'primary' },
    { kty: 'oct', kid: 'hooks-random', alg: 'HS256', k: randomBytes(32).toString('base64url'), status: 'primary' },
  ],
};
const EVENTS = 200;

test('nonces come from wasi:random get-random-bytes in pooled refills, and every IV is distinct', () => {
  const sealer = Sealer.create(POLICY, KEYRING);
  try {
    for (const name in calls) calls[name] = 0;
    const ivs = new Set();
    for (let n = 0; n < EVENTS; n++) {
      const event = sealer.seal(order(n), { route: '/archive/orders' }).json();
      for (const pointer of SEALED) ivs.add(pointerGet(event, pointer).split('.')[2]);
    }
    const fields = EVENTS * SEALED.length;
    assert.equal(ivs.size, fields, 'no two sealed fields share an IV');
    assert.equal(calls['get-random-u64'], 0, 'no nonce material from get-random-u64');
    assert.ok(calls['get-random-bytes'] > 0, 'the nonces come from get-random-bytes');
    assert.ok(
      calls['get-random-bytes'] < fields / 4,
      `pooled: ${calls['get-random-bytes']} get-random-bytes calls for ${fields} nonces`,
    );
  } finally {
    sealer.close();
  }
});
