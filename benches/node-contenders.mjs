// The Node.js contenders of benches/python-alternatives.py, one per call:
//
//   node node-contenders.mjs CONTENDER SECONDS POLICY KEYRING EVENT   -> events/s
//   node node-contenders.mjs CONTENDER sample POLICY KEYRING EVENT    -> one sealed event
//   node node-contenders.mjs CONTENDER random POLICY KEYRING EVENT    -> wasi:random calls per event
//
// `random` counts the component's calls into the host's `wasi:random/random` (each a
// crossing from wasm into JavaScript) over 3200 events after a warm-up, by wrapping the
// preview2-shim functions before the package is loaded (jco's glue looks them up once, as
// it loads).
// CONTENDER: node-crypto (the fastest hand-written Node: node:crypto AES-256-GCM, the
// compact envelope built by hand, as the pyca contender builds it), package (the installed
// @eventseal/component, `seal` per event) or package-batch (`sealMany`, 100 per call).
// It runs from a folder where the npm tarball is installed (the bench copies it there).
import { createCipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [contender, seconds, policyPath, keyringPath, eventPath] = process.argv.slice(2);
const policy = readFileSync(policyPath, 'utf8');
const keyring = readFileSync(keyringPath, 'utf8');
const body = readFileSync(eventPath, 'utf8');
const POINTERS = ['/data/f0', '/data/f1', '/data/f2'];
const HEADERS = { 'content-type': 'application/json', 'x-principal': 'bench' };
const BATCH = 100;

function nodeCrypto() {
  const jwk = JSON.parse(keyring).keys.find((k) => k.alg === 'A256GCM' && k.status === 'primary');
  const key = Buffer.from(jwk.k, 'base64url');
  return (text) => {
    const event = JSON.parse(text);
    for (const pointer of POINTERS) {
      const name = pointer.split('/')[2];
      const header = { alg: 'dir', enc: 'A256GCM', kid: jwk.kid, ptr: pointer, ctx: { type: event.type } };
      const protectedHeader = Buffer.from(JSON.stringify(header)).toString('base64url');
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(protectedHeader));
      const ciphertext = Buffer.concat([cipher.update(JSON.stringify(event.data[name])), cipher.final()]);
      event.data[name] = [protectedHeader, '', iv.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    }
    return JSON.stringify(event);
  };
}

// The shim's `wasi:random/random` functions, wrapped to count calls when asked to.
const randomCalls = { 'get-random-u64': 0, 'get-random-bytes': 0 };
if (seconds === 'random') {
  const { random } = await import('@bytecodealliance/preview2-shim/random');
  const { getRandomU64, getRandomBytes } = random;
  random.getRandomU64 = () => (randomCalls['get-random-u64']++, getRandomU64());
  random.getRandomBytes = (len) => (randomCalls['get-random-bytes']++, getRandomBytes(len));
}

async function contenders() {
  if (contender === 'node-crypto') return { seal: nodeCrypto(), perCall: 1 };
  const { Sealer } = await import('@eventseal/component');
  const sealer = Sealer.create(policy, keyring);
  const options = { route: '/bench', headers: HEADERS };
  if (contender === 'package') return { seal: (text) => sealer.seal(text, options).text, perCall: 1 };
  if (contender === 'package-batch') {
    const batch = Array(BATCH).fill(body);
    return { seal: () => sealer.sealMany(batch, options).map((o) => o.text), perCall: BATCH };
  }
  throw new Error(`unknown contender ${contender}`);
}

const { seal, perCall } = await contenders();
if (seconds === 'random') {
  if (contender === 'node-crypto') throw new Error('node-crypto makes no wasi:random calls');
  for (let i = 0; i < 64 / perCall; i++) seal(body);
  for (const name in randomCalls) randomCalls[name] = 0;
  const calls = Math.ceil(3200 / perCall);
  for (let i = 0; i < calls; i++) seal(body);
  const perEvent = Object.fromEntries(Object.entries(randomCalls).map(([name, n]) => [name, n / (calls * perCall)]));
  process.stdout.write(JSON.stringify(perEvent));
} else if (seconds === 'sample') {
  const sealed = seal(body);
  process.stdout.write(Array.isArray(sealed) ? sealed[0] : sealed);
} else {
  const deadline = performance.now() + Number(seconds) * 1000;
  const start = performance.now();
  let events = 0;
  for (;;) {
    for (let i = 0; i < 16; i++) seal(body);
    events += 16 * perCall;
    const now = performance.now();
    if (now >= deadline) {
      console.log(events / ((now - start) / 1000));
      break;
    }
  }
}
