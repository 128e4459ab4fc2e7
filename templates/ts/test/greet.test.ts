// Runs the extension in a real sandbox — the runtime package.json names — through Plinth's test harness, which
// checks inputs and outputs against the stage schemas as a host does. `npm test` runs every *.test.ts here.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadExtension, runStage, type LoadedExtension } from 'plinth/sdk/testing';
import type definition from '{{main}}';

type Greeter = typeof definition;
const dir = fileURLToPath(new URL('..', import.meta.url));

describe('{{name}}', () => {
  let ext: LoadedExtension<Greeter>;
  before(async () => {
    ext = await loadExtension<Greeter>(dir, { config: { greeting: 'Hi' } });
  });
  after(() => ext?.stop());

  it('greets with the configured greeting and counts in its kv store', async () => {
    assert.deepEqual(await ext.call('greet', { name: 'Ada' }), { message: 'Hi, Ada!', count: 1 });
    assert.deepEqual(await ext.call('greet', { name: 'Ada' }), { message: 'Hi, Ada!', count: 2 });
    assert.ok(ext.logs.some((line) => line.level === 'info' && line.message === 'greeted Ada'));
  });

  it('refuses an input that does not match the stage input schema', async () => {
    await assert.rejects(ext.call('greet', { name: '' }), { code: 'PLINTH_ERR_STAGE_INPUT_INVALID' });
  });

  it('runStage: one call with the default config', async () => {
    assert.deepEqual(await runStage<Greeter>(dir, 'greet', { name: 'Bob' }), { message: 'Hello, Bob!', count: 1 });
  });
});
