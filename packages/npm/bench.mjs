// Events per second through the installed package: `sealMany` in batches of 100 against
// `seal` one event at a time, on 1 KiB events with 3 fields sealed (the workload of the
// issue's goals). Run it where @eventseal/component is installed:
//   packages/npm/test-installed.sh dist/eventseal-component-X.Y.Z.tgz bench
// Prints one JSON line per mode: the median of ROUNDS rounds, and every round.
// ROUNDS (default 7) and EVENTS per round (default 2000) may be set in the environment.

import { randomBytes } from 'node:crypto';
import { Sealer } from '@eventseal/component';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const EVENTS = Number(process.env.EVENTS ?? 2000); // per round
const BATCH = 100;
const FIELDS = ['/data/card/number', '/data/customer/email', '/data/customer/phone'];

const policy = {
  rules: [{ name: 'publish', match: { path: '/events/orders' }, context: { type: { body: '/type' } }, seal: { fields: FIELDS } }],
};
const keyring = { keys: [{ kty: 'oct', kid: 'bench', alg: 'A256GCM', k: randomBytes(32).toString('base64url'), status: 'primary' }] };

function event(n) {
  const base = {
    specversion: '1.0',
    id: `evt-${n}`,
    type: 'com.example.order.created',
    source: '/shop',
    data: {
      order_id: `o-${n}`,
      amount: 129.5,
      card: { number: '4111 1111 1111 1111', expiry: '12/29' },
      customer: { email: 'ada@example.org', phone: '+41 79 555 01 01', name: 'Ada Lovelace' },
      note: '',
    },
  };
  base.data.note = 'x'.repeat(1024 - JSON.stringify(base).length); // exactly 1 KiB of JSON
  return JSON.stringify(base);
}

const events = Array.from({ length: EVENTS }, (_, n) => event(n));
const sealer = new Sealer(policy, keyring);
const options = { route: '/events/orders' };

const modes = {
  'seal (one event per call)': () => {
    for (const e of events) sealer.seal(e, options);
  },
  [`sealMany (batches of ${BATCH})`]: () => {
    for (let i = 0; i < events.length; i += BATCH) sealer.sealMany(events.slice(i, i + BATCH), options);
  },
};

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const run of Object.values(modes)) run(); // warm up: V8 tiers the wasm up
// Rounds alternate between the modes, so both see the same machine (load varies).
const rates = Object.fromEntries(Object.keys(modes).map((mode) => [mode, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [mode, run] of Object.entries(modes)) {
    const start = process.hrtime.bigint();
    run();
    rates[mode].push(Math.round(EVENTS / (Number(process.hrtime.bigint() - start) / 1e9)));
  }
}
sealer.close();
for (const [mode, rounds] of Object.entries(rates)) {
  console.log(JSON.stringify({ mode, event_bytes: events[0].length, fields: FIELDS.length, events_per_s: median(rounds), rounds }));
}
// The ratio of each round's pair, then their median: robust to load that changes between rounds.
const [single, batched] = Object.values(rates);
const ratio = median(single.map((rate, round) => batched[round] / rate));
console.log(JSON.stringify({ batch_over_single: Number(ratio.toFixed(2)), node: process.version }));
