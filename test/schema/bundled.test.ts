import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { validators, toProblems } from '../../src/schema/index.ts';
import { ROOT } from '../helpers.ts';

describe('schemas', () => {
  it('every bundled plugin package.json satisfies the extension schema', async () => {
    const dirs = await readdir(path.join(ROOT, 'plugins'));
    assert.ok(dirs.length >= 3);
    for (const d of dirs) {
      const pkg = JSON.parse(await readFile(path.join(ROOT, 'plugins', d, 'package.json'), 'utf8')) as unknown;
      assert.equal(validators.extensionPackage(pkg), true, `${d}: ${JSON.stringify(toProblems(validators.extensionPackage.errors))}`);
    }
  });

  it('the shipped development trust store satisfies its schema', async () => {
    const store = JSON.parse(await readFile(path.join(ROOT, 'keys', 'dev-trust.json'), 'utf8')) as unknown;
    assert.equal(validators.trustStore(store), true);
  });

  it('dependency ranges accept the npm forms the seed uses and refuse others', () => {
    const pkg = (range: unknown) => ({ name: 'x', version: '1.0.0', plinth: { runtime: 'isolate', dependencies: { dep: range } } });
    for (const ok of ['^2.1.0', '>=3.0.0 <4.0.0', '~2.5.0', '*', { version: '^1.0.0', optional: true }]) assert.equal(validators.extensionPackage(pkg(ok)), true, JSON.stringify(ok));
    for (const bad of ['^^2', 'latest', 3, { optional: true }]) assert.equal(validators.extensionPackage(pkg(bad)), false, JSON.stringify(bad));
  });

  it('topic patterns follow AMQP words: * one word, # zero or more', () => {
    const pkg = (topic: string) => ({ name: 'x', version: '1.0.0', plinth: { runtime: 'isolate', subscribes: [topic] } });
    for (const ok of ['orders', 'orders.*', 'security.#', '#', '*.created.#']) assert.equal(validators.extensionPackage(pkg(ok)), true, ok);
    for (const bad of ['', 'a..b', '.a', 'a.', 'a.b*', 'a b']) assert.equal(validators.extensionPackage(pkg(bad)), false, bad);
  });
});
