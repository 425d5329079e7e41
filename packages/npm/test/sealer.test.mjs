// What a service relies on, checked against the installed package: sealed fields are JWE
// compact envelopes that plain node:crypto opens with the keyring, opening gives back the
// original bytes, signatures are Standard Webhooks HMACs, replays and tampering are
// refused with the problem kinds of the gateway, batches decide each event as the single
// operations do, and bad configuration is reported without key material.
//
// Self-contained: the policy is test/policy.json and the keyring is made fresh here.

import assert from 'node:assert/strict';
import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';

import * as eventseal from '@eventseal/component';
import {
  ConfigError,
  MAX_BATCH,
  Outcome,
  Refused,
  Sealer,
  SealedFieldRejected,
  SignatureInvalid,
  SignatureReplayed,
} from '@eventseal/component';

import { POLICY, SEALED, order, pointerGet, pointerSet } from './orders.mjs';

const BILLING = 'spiffe://example.org/ns/billing/consumer';
const SHOP = 'spiffe://example.org/ns/shop/checkout';

const sealKey = randomBytes(32);
const hookKey = randomBytes(32);
const KEYRING = {
  keys: [
    { kty: 'oct', kid: 'orders-test', alg: 'A256GCM', k: sealKey.toString('base64url'), status: 'primary' },
    { kty: 'oct', kid: 'hooks-test', alg: 'HS256', k: hookKey.toString('base64url'), status: 'primary' },
  ],
};

/** Opens a `dir` A256GCM envelope with node:crypto alone (RFC 7516), as any JOSE library would. */
function openEnvelope(envelope) {
  const [header, encryptedKey, iv, ciphertext, tag] = envelope.split('.');
  assert.equal(encryptedKey, '', 'dir: no encrypted key');
  const decipher = createDecipheriv('aes-256-gcm', sealKey, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(header, 'ascii'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  const plaintext = Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]);
  return { header: JSON.parse(Buffer.from(header, 'base64url')), value: JSON.parse(plaintext.toString('utf8')) };
}

/** The event with each sealed field's envelope replaced by its protected header (random parts dropped). */
function withoutRandomParts(event) {
  const doc = structuredClone(event);
  for (const pointer of SEALED) pointerSet(doc, pointer, pointerGet(doc, pointer).split('.')[0]);
  return doc;
}

/** The event with one byte of a sealed field's ciphertext changed. */
function flipCiphertext(event, pointer) {
  const doc = structuredClone(event);
  const parts = pointerGet(doc, pointer).split('.');
  parts[3] = (parts[3][0] === 'A' ? 'B' : 'A') + parts[3].slice(1);
  pointerSet(doc, pointer, parts.join('.'));
  return doc;
}

/** A Standard Webhooks signature made here, with the keyring's HMAC key. */
function webhookHeaders(body, { id = `msg_${randomBytes(8).toString('hex')}`, timestamp = Math.floor(Date.now() / 1000) } = {}) {
  const mac = createHmac('sha256', hookKey).update(`${id}.${timestamp}.${body}`).digest('base64');
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': `v1,${mac}` };
}

/** The refusal `fn` throws (it must throw one). */
function refusalOf(fn) {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Refused, `expected a Refused, got ${e}`);
    return e;
  }
  assert.fail('expected a refusal, but the operation went through');
}

const sealer = Sealer.create(POLICY, KEYRING);
after(() => sealer.close());

describe('seal and open', () => {
  test('sealed fields are JWE compact envelopes bound to their pointer, and the plaintext is gone', () => {
    const original = order(1);
    const sealed = sealer.seal(original, { route: '/events/orders' });
    assert.ok(sealed instanceof Outcome);
    const event = sealed.json();
    const unsealed = structuredClone(event);
    for (const pointer of SEALED) {
      const envelope = pointerGet(event, pointer);
      assert.equal(typeof envelope, 'string');
      assert.equal(envelope.split('.').length, 5, `${pointer} is a 5-segment JWE compact string`);
      const { header, value } = openEnvelope(envelope);
      assert.deepEqual([header.alg, header.enc, header.kid, header.ptr], ['dir', 'A256GCM', 'orders-test', pointer]);
      assert.deepEqual(value, pointerGet(original, pointer), 'the plaintext is the JSON of the original value');
      assert.ok(!sealed.text.includes(pointerGet(original, pointer)), `${pointer}'s plaintext is not in the event`);
      pointerSet(unsealed, pointer, value);
    }
    assert.deepEqual(unsealed, original, 'every other member is unchanged');
    assert.deepEqual(
      sealed.fields,
      SEALED.map((pointer) => ({ pointer, kid: 'orders-test', result: 'sealed' })),
    );
    assert.equal(new TextDecoder().decode(sealed.event), sealed.text, 'event and text are one event');
  });

  test('a selected field the event lacks is reported absent, with no key', () => {
    const event = order(6);
    delete event.data.customer.phone;
    const sealed = sealer.seal(event, { route: '/archive/orders' });
    const phone = sealed.fields.find((f) => f.pointer === '/data/customer/phone');
    assert.deepEqual(phone, { pointer: '/data/customer/phone', kid: null, result: 'absent' });
    assert.equal(sealed.json().data.customer.phone, undefined);
  });

  test('open gives back the original bytes, whichever form the event was given in', () => {
    // Pretty-printed, with escapes: everything outside the sealed values is kept byte for byte.
    const original = JSON.stringify(order(2), null, 2).replace('Ada', 'Ad\\u0061');
    for (const input of [original, new TextEncoder().encode(original)]) {
      const sealed = sealer.seal(input, { route: '/archive/orders' });
      const opened = sealer.open(sealed.event, { route: 'GET /archive/orders', principal: BILLING });
      assert.equal(opened.text, original);
      assert.deepEqual(opened.event, new TextEncoder().encode(original));
      assert.deepEqual(opened.fields.map((f) => f.result), ['opened', 'opened', 'opened']);
      assert.equal(opened.verified, null);
      assert.equal(opened.signed, false);
    }
  });

  test('a sealed and signed event verifies and opens once; the replay is refused as SignatureReplayed (401)', () => {
    const sealed = sealer.seal(order(3), { route: '/events/orders' });
    assert.equal(sealed.signed, true);
    const { 'webhook-id': id, 'webhook-timestamp': timestamp } = sealed.headers;
    assert.deepEqual(sealed.headers, webhookHeaders(sealed.text, { id, timestamp }), 'a Standard Webhooks v1 signature over the sealed text');

    const delivery = { route: '/inbox/orders', headers: sealed.headers, principal: BILLING };
    const opened = sealer.open(sealed.event, delivery);
    assert.deepEqual(opened.json(), order(3));
    assert.equal(opened.verified, 'hooks-test');

    const replay = refusalOf(() => sealer.open(sealed.event, delivery));
    assert.ok(replay instanceof SignatureReplayed);
    assert.equal(replay.name, 'SignatureReplayed');
    assert.deepEqual([replay.kind, replay.status, replay.type], ['signature-replayed', 401, 'urn:eventseal:problem:signature-replayed']);
  });

  test('a tampered event is refused without revealing its fields', () => {
    const sealed = sealer.seal(order(4), { route: '/events/orders' });
    const forged = sealed.text.replace('order.created', 'order.updated');
    const changed = refusalOf(() => sealer.open(forged, { route: '/inbox/orders', headers: sealed.headers, principal: BILLING }));
    assert.ok(changed instanceof SignatureInvalid);
    assert.equal(changed.status, 401);

    // Without a signature, the envelopes themselves refuse: a flipped ciphertext byte, a moved field.
    const archived = sealer.seal(order(4), { route: '/archive/orders' }).json();
    const flipped = flipCiphertext(archived, SEALED[0]);
    const moved = structuredClone(archived);
    pointerSet(moved, SEALED[1], pointerGet(archived, SEALED[0]));
    for (const event of [flipped, moved]) {
      const refused = refusalOf(() => sealer.open(event, { route: 'GET /archive/orders', principal: BILLING }));
      assert.ok(refused instanceof SealedFieldRejected);
      assert.equal(refused.status, 422);
      const shown = JSON.stringify({ message: refused.message, ...refused });
      for (const pointer of SEALED) assert.ok(!shown.includes(pointerGet(order(4), pointer)), 'no plaintext in the refusal');
    }
  });

  test('a signature made with the keyring elsewhere verifies; an old one is refused as expired', () => {
    const body = JSON.stringify({ hook: 'ping' });
    const fresh = sealer.verify(body, { route: '/hooks/in', headers: webhookHeaders(body) });
    assert.equal(fresh.verified, 'hooks-test');
    assert.equal(fresh.text, body);
    const old = webhookHeaders(body, { timestamp: Math.floor(Date.now() / 1000) - 3600 });
    const expired = refusalOf(() => sealer.verify(body, { route: '/hooks/in', headers: old }));
    assert.deepEqual([expired.constructor, expired.status], [eventseal.SignatureExpired, 401]);
  });

  test('each refusal is thrown as the subclass named after its problem kind, with the gateway status', () => {
    const cases = [
      ['MalformedJson', 400, () => sealer.seal('{"type": ', { route: '/archive/orders' })],
      ['MalformedJson', 400, () => sealer.seal(Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d), { route: '/archive/orders' })],
      ['UnsupportedMediaType', 415, () => sealer.seal(order(5), { route: '/archive/orders', headers: { 'Content-Type': 'text/plain' } })],
      ['ContextMissing', 400, () => sealer.seal({ data: { card: { number: '4111' } } }, { route: '/archive/orders' })],
      ['FieldMissing', 400, () => sealer.seal({ type: 'payment', data: {} }, { route: '/events/payments', principal: SHOP })],
      ['ProducerForbidden', 403, () => sealer.seal(order(5), { route: '/events/payments', principal: BILLING })],
      ['ReaderForbidden', 403, () => sealer.open(sealer.seal(order(5), { route: '/archive/orders' }).event, { route: 'GET /archive/orders', principal: SHOP })],
      ['InvalidClaims', 500, () => sealer.seal(order(5), { route: '/archive/orders', principal: SHOP, claims: '[1]' })],
      ['NoRule', 500, () => sealer.seal(order(5), { route: '/nowhere' })],
      ['NoRule', 500, () => sealer.seal(order(5), { route: 'GET /archive/orders' })],
      ['SignatureMissing', 401, () => sealer.verify('{}', { route: '/hooks/in' })],
      ['SignatureMalformed', 401, () => sealer.verify('{}', { route: '/hooks/in', headers: { ...webhookHeaders('{}'), 'webhook-timestamp': 'soon' } })],
      ['PayloadTooLarge', 413, () => sealer.sealMany(Array(MAX_BATCH + 1).fill(order(5)), { route: '/archive/orders' })],
    ];
    for (const [name, status, fn] of cases) {
      const refused = refusalOf(fn);
      assert.equal(refused.constructor, eventseal[name], `${name}: got ${refused.name} (${refused.message})`);
      assert.equal(refused.name, name);
      assert.equal(refused.status, status, name);
      assert.equal(refused.type, `urn:eventseal:problem:${refused.kind}`);
      assert.equal(typeof refused.title, 'string');
      assert.equal(refused.retryAfter, null);
    }
  });

  test('sign adds a Standard Webhooks signature and keeps the event', () => {
    const body = JSON.stringify({ hook: 'order.shipped', id: 7 });
    const signed = sealer.sign(body, { route: '/hooks/out' });
    assert.equal(signed.text, body);
    assert.equal(signed.signed, true);
    const { 'webhook-id': id, 'webhook-timestamp': timestamp } = signed.headers;
    assert.deepEqual(signed.headers, webhookHeaders(body, { id, timestamp }));
  });
});

describe('batches', () => {
  const route = '/archive/orders';
  const reader = { route: 'GET /archive/orders', principal: BILLING };

  test('sealMany decides each event as seal does, with each refusal in its place', () => {
    const bytes = new TextEncoder().encode(JSON.stringify(order(13)));
    const events = [order(10), '{"type": ', order(11), { data: {} }, JSON.stringify(order(12)), bytes];
    const batch = sealer.sealMany(events, { route });
    assert.equal(batch.length, events.length);
    events.forEach((event, i) => {
      let single;
      try {
        single = sealer.seal(event, { route });
      } catch (e) {
        single = e;
      }
      if (single instanceof Refused) {
        assert.ok(batch[i] instanceof Refused, `event ${i}: the batch refuses it too`);
        assert.deepEqual([batch[i].constructor, batch[i].status, batch[i].detail], [single.constructor, single.status, single.detail]);
        return;
      }
      assert.ok(batch[i] instanceof Outcome, `event ${i}: ${batch[i].message}`);
      // Nonces are random: the envelopes differ, their protected headers and everything else do not.
      assert.deepEqual(withoutRandomParts(batch[i].json()), withoutRandomParts(single.json()));
      assert.deepEqual(batch[i].headers, single.headers);
      assert.deepEqual(batch[i].fields, [], 'batches carry no per-field outcomes');
      const opened = sealer.open(batch[i].event, reader);
      assert.equal(opened.text, typeof event === 'string' ? event : event instanceof Uint8Array ? new TextDecoder().decode(event) : JSON.stringify(event));
    });
    assert.deepEqual(batch.map((r) => r.constructor.name), ['Outcome', 'MalformedJson', 'Outcome', 'ContextMissing', 'Outcome', 'Outcome']);
  });

  test('bytes that are not UTF-8 in a batch are refused in their place, as seal refuses them alone', () => {
    const notUtf8 = Uint8Array.of(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d);
    const batch = sealer.sealMany([order(14), notUtf8, order(15)], { route });
    const alone = refusalOf(() => sealer.seal(notUtf8, { route }));
    assert.ok(alone instanceof eventseal.MalformedJson);
    assert.deepEqual(batch.map((r) => r.constructor.name), ['Outcome', 'MalformedJson', 'Outcome']);
    assert.deepEqual([batch[1].kind, batch[1].status, batch[1].detail], [alone.kind, alone.status, alone.detail]);
  });

  test('openMany gives exactly what open gives, event by event', () => {
    const sealed = sealer.sealMany([order(20), order(21), order(22)], { route }).map((r) => r.text);
    const events = [sealed[0], flipCiphertext(JSON.parse(sealed[1]), SEALED[2]), sealed[2]];
    const batch = sealer.openMany(events, reader);
    events.forEach((event, i) => {
      let single;
      try {
        single = sealer.open(event, reader);
      } catch (e) {
        single = e;
      }
      if (single instanceof Refused) {
        assert.deepEqual([batch[i].constructor, batch[i].kind, batch[i].status, batch[i].detail], [single.constructor, single.kind, single.status, single.detail]);
      } else {
        assert.deepEqual([batch[i].text, batch[i].headers, batch[i].signed], [single.text, single.headers, single.signed]);
      }
    });
    assert.deepEqual(batch.map((r) => r.constructor.name), ['Outcome', 'SealedFieldRejected', 'Outcome']);
    assert.deepEqual(batch[2].json(), order(22));
  });

  test('signMany signs each event with its own id, and each signature verifies', () => {
    const bodies = [{ n: 1 }, { n: 2 }, { n: 3 }].map((b) => JSON.stringify(b));
    const batch = sealer.signMany(bodies, { route: '/hooks/out', headers: { 'webhook-id': 'msg_shared' } });
    const ids = new Set(batch.map((r) => r.headers['webhook-id']));
    assert.equal(ids.size, bodies.length, 'fresh, distinct ids');
    assert.ok(!ids.has('msg_shared'));
    batch.forEach((signed, i) => {
      assert.equal(signed.text, bodies[i]);
      assert.equal(signed.signed, true);
      const single = sealer.sign(bodies[i], { route: '/hooks/out' });
      assert.deepEqual(Object.keys(signed.headers).sort(), Object.keys(single.headers).sort());
      assert.equal(sealer.verify(signed.event, { route: '/hooks/in', headers: signed.headers }).verified, 'hooks-test');
    });
  });

  test(`a batch of ${MAX_BATCH} events goes through`, () => {
    const batch = sealer.sealMany(Array.from({ length: MAX_BATCH }, (_, n) => order(n)), { route });
    assert.equal(batch.length, MAX_BATCH);
    assert.ok(batch.every((r) => r instanceof Outcome));
  });
});

describe('configuration and lifetime', () => {
  test('a bad keyring is a ConfigError naming the place, never the key', () => {
    const secret = randomBytes(16).toString('base64url'); // 128 bits: too short for A256GCM
    const keyring = { keys: [{ kty: 'oct', kid: 'short', alg: 'A256GCM', k: secret, status: 'primary' }] };
    assert.throws(
      () => Sealer.create(POLICY, keyring),
      (e) => {
        assert.ok(e instanceof ConfigError && !(e instanceof Refused));
        assert.equal(e.document, 'keyring');
        assert.match(e.at, /^\/keys\/0/);
        assert.ok(!e.message.includes(secret) && !JSON.stringify(e).includes(secret), 'no key material');
        return true;
      },
    );
  });

  test('a bad policy is a ConfigError at the JSON location', () => {
    const policy = { rules: [{ name: 'x', match: { path: '/x' }, seal: { fields: ['no-slash'] } }] };
    assert.throws(() => new Sealer(policy, KEYRING), (e) => e instanceof ConfigError && e.document === 'policy' && e.at.startsWith('/rules/0/seal/fields'));
  });

  test('fromFiles reads a policy and a keyring file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eventseal-test-'));
    try {
      writeFileSync(join(dir, 'policy.json'), JSON.stringify(POLICY));
      writeFileSync(join(dir, 'keyring.json'), JSON.stringify(KEYRING));
      const fromFiles = Sealer.fromFiles(join(dir, 'policy.json'), join(dir, 'keyring.json'));
      const sealed = fromFiles.seal(order(30), { route: '/archive/orders' });
      assert.deepEqual(sealer.open(sealed.text, { route: 'GET /archive/orders', principal: BILLING }).json(), order(30), 'same keyring, same keys');
      fromFiles.close();
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test('a closed sealer refuses every call, and closing twice is harmless', () => {
    const closing = new Sealer(POLICY, KEYRING);
    closing[Symbol.dispose]();
    closing.close();
    assert.throws(() => closing.seal(order(31), { route: '/archive/orders' }), /closed/);
    assert.throws(() => closing.sealMany([order(31)], { route: '/archive/orders' }), /closed/);
  });

  test('a worker thread has its own instance of the component: what it seals, the main thread opens', async () => {
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import('@eventseal/component').then(({ Sealer }) => {
         const sealer = new Sealer(workerData.policy, workerData.keyring);
         parentPort.postMessage(sealer.seal(workerData.event, { route: '/archive/orders' }).text);
       });`,
      { eval: true, workerData: { policy: POLICY, keyring: KEYRING, event: order(33) } },
    );
    try {
      const sealed = await new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject));
      assert.equal(JSON.parse(sealed).data.card.number.split('.').length, 5);
      assert.deepEqual(sealer.open(sealed, { route: 'GET /archive/orders', principal: BILLING }).json(), order(33));
    } finally {
      await worker.terminate();
    }
  });

  test('the replay memory is per sealer', () => {
    const other = new Sealer(POLICY, KEYRING);
    try {
      const sealed = sealer.seal(order(32), { route: '/events/orders' });
      const delivery = { route: '/inbox/orders', headers: sealed.headers, principal: BILLING };
      sealer.open(sealed.event, delivery);
      assert.deepEqual(other.open(sealed.event, delivery).json(), order(32));
    } finally {
      other.close();
    }
  });
});
