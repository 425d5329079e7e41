// The package as npm installed it: ESM from plain Node, its types declared for every
// export, one Refused subclass per problem kind of the WIT contract, the component's
// version, and the jco bindings with their types.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as eventseal from '@eventseal/component';

const root = dirname(fileURLToPath(import.meta.resolve('@eventseal/component')));
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const declared = readFileSync(join(root, manifest.exports['.'].types), 'utf8');
const bindingsTypes = readFileSync(join(root, manifest.exports['./bindings'].types), 'utf8');
const sealingTypes = readFileSync(join(root, 'generated/interfaces/eventseal-seal-sealing.d.ts'), 'utf8');

const pascal = (kind) => kind.replace(/(^|-)([a-z])/g, (_, __, c) => c.toUpperCase());

test('it is an ES module for Node 20, installed under its name, with the one pinned dependency', () => {
  assert.equal(manifest.name, '@eventseal/component');
  assert.equal(manifest.type, 'module');
  assert.match(manifest.version, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
  assert.notEqual(manifest.version, '0.0.0-development', 'build.sh sets the component crate version');
  assert.deepEqual(Object.keys(manifest.dependencies), ['@bytecodealliance/preview2-shim']);
  assert.match(manifest.dependencies['@bytecodealliance/preview2-shim'], /^\d+\.\d+\.\d+$/, 'pinned');
});

test('index.d.ts declares every export of index.js', () => {
  for (const name of Object.keys(eventseal)) {
    assert.match(declared, new RegExp(`export declare (class|const) ${name}\\b`), `${name} is declared`);
  }
});

test('there is one exported Refused subclass per problem kind of the contract', () => {
  const kinds = [...sealingTypes.match(/export type ProblemKind = ([^;]+);/)[1].matchAll(/'([a-z-]+)'/g)].map((m) => m[1]);
  assert.ok(kinds.includes('signature-replayed') && kinds.length >= 19, `problem kinds: ${kinds}`);
  for (const kind of kinds) {
    const Kind = eventseal[pascal(kind)];
    assert.equal(typeof Kind, 'function', `${pascal(kind)} is exported`);
    const refused = new Kind({ kind, status: 400, title: 't', detail: 'd' });
    assert.ok(refused instanceof eventseal.Refused && refused instanceof eventseal.EventsealError && refused instanceof Error);
    assert.equal(refused.type, `urn:eventseal:problem:${kind}`);
    assert.equal(refused.name, pascal(kind));
  }
});

test('the jco bindings ship with their types and export the interface the wrapper calls', async () => {
  assert.match(sealingTypes, new RegExp(`@module Interface ${eventseal.INTERFACE.replace(/[.]/g, '\\.')}`));
  assert.match(bindingsTypes, /export \* as sealing from/);
  const { sealing } = await import('@eventseal/component/bindings');
  for (const method of ['sealText', 'openText', 'signText', 'verifyText', 'sealMany', 'openMany', 'signMany']) {
    assert.equal(typeof sealing.Sealer.prototype[method], 'function', method);
  }
  assert.ok(existsSync(join(root, 'generated', 'eventseal.core.wasm')));
});
