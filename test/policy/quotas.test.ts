// Quota plumbing on its own: defaults come from the host-config schema, the operator's per-extension value
// replaces the host's, a manifest only lowers; ctx.log's line bound and rate over an injected clock.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadHostConfig } from '../../src/config/index.ts';
import { createContextHandler, DEFAULT_QUOTAS, effectiveQuotas, boundLine, KvStore, type LogLevel } from '../../src/policy/index.ts';
import type { Json } from '../../src/sdk/index.ts';
import { rejectsWith, tempDir } from '../helpers.ts';

describe('quota values', () => {
  it('every quota has a default in the host config, and DEFAULT_QUOTAS are those defaults', async () => {
    const config = await loadHostConfig({ env: {}, noFile: true });
    assert.deepEqual(config.quotas, DEFAULT_QUOTAS);
    for (const [group, values] of Object.entries(DEFAULT_QUOTAS)) for (const [key, v] of Object.entries(values as Record<string, number>)) assert.ok(Number.isInteger(v) && v > 0, `quotas.${group}.${key}`);
    assert.deepEqual(config.policy.untrusted, { env: [], network: [], fs: true, kv: true, events: true }, 'untrusted: no env, no network by default');
  });

  it('the operator sets a value per extension; a manifest may only ask for less', () => {
    const q = effectiveQuotas(DEFAULT_QUOTAS, { kv: { maxKeys: 20 } }, { kv: { maxKeys: 50, maxBytes: 10 }, fetch: { maxConcurrent: 1 } });
    assert.equal(q.kv.maxKeys, 20, 'the manifest asked for more than the operator allows: the smaller applies');
    assert.equal(q.kv.maxBytes, 10);
    assert.equal(q.fetch.maxConcurrent, 1);
    assert.equal(q.fs.maxBytes, DEFAULT_QUOTAS.fs.maxBytes);
  });

  it('a bad quota or approval in the host config is a config error naming its path', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'plinth.config.yaml'), 'quotas: { kv: { maxKeys: 0 } }\nextensions:\n  x: { allow: { env: ["not a name"] } }\n');
    await rejectsWith(loadHostConfig({ cwd: dir, env: {} }), 'PLINTH_ERR_CONFIG_INVALID').then((err) => {
      const paths = err.problems.map((p) => p.path);
      assert.ok(paths.includes('/quotas/kv/maxKeys'), paths.join(', '));
      assert.ok(paths.some((p) => p.startsWith('/extensions/x/allow/env')), paths.join(', '));
    });
  });
});

describe('ctx.log bounds', () => {
  it('boundLine keeps small fields whole, drops big ones, and cuts a long message on a character boundary', () => {
    assert.deepEqual(boundLine('hi', { a: 1 }, 1024), { message: 'hi', fields: { a: 1 } });
    const big = boundLine('x', { blob: 'b'.repeat(600) }, 1024);
    assert.equal(big.fields, undefined);
    assert.equal(big.truncated?.fields, Buffer.byteLength(JSON.stringify({ blob: 'b'.repeat(600) })));
    const cut = boundLine('é'.repeat(1000), undefined, 1001);
    assert.equal(cut.message, 'é'.repeat(500), 'a two-byte character is never split');
    assert.equal(cut.truncated?.message, 2000);
  });

  it('the rate: a burst, then linesPerSecond; dropped lines are counted and reported on the next allowed line', async () => {
    let now = 0;
    const lines: Array<{ level: string; message: string; host?: Record<string, Json> }> = [];
    const dataDir = path.join(await tempDir(), 'data');
    await mkdir(dataDir);
    const ctx = createContextHandler({
      extension: 'chatty',
      dataDir,
      permissions: {},
      emit: () => Promise.resolve(),
      log: (level: LogLevel, message, line) => lines.push({ level, message, ...(line.host ? { host: line.host } : {}) }),
      kv: new KvStore(),
      env: {},
      quotas: { ...DEFAULT_QUOTAS, log: { maxLineBytes: 1024, linesPerSecond: 2, burst: 3 } },
      now: () => now,
    });
    for (let i = 0; i < 10; i++) await ctx({ op: 'log', level: 'info', message: `line ${i}` });
    assert.deepEqual(lines.map((l) => l.message.slice(0, 6)), ['line 0', 'line 1', 'line 2', 'extens']);
    assert.equal(lines[3]?.host?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    now += 1000; // two more tokens
    await ctx({ op: 'log', level: 'info', message: 'after a second' });
    assert.equal(lines[4]?.host?.dropped, 7, 'the 7 dropped lines are reported');
    assert.equal(lines[5]?.message, 'after a second');
  });
});

describe('kv store accounting', () => {
  it('counts keys and JSON bytes, including what a backing Map already held; values go in and out as copies', () => {
    const backing = new Map<string, Json>([['old', { a: 1 }]]);
    const kv = new KvStore(backing);
    assert.equal(kv.size, 1);
    assert.equal(kv.bytes, Buffer.byteLength('old') + Buffer.byteLength('{"a":1}'));
    kv.set('new', '"value"');
    assert.deepEqual(kv.sizeAfterSet('new', '"v"'), { keys: 2, bytes: kv.bytes - 4 }, 'replacing a value counts the difference');
    const got = kv.get('old') as { a: number };
    got.a = 2;
    assert.deepEqual(backing.get('old'), { a: 1 });
    assert.equal(kv.delete('new'), true);
    assert.equal(kv.bytes, Buffer.byteLength('old{"a":1}'));
  });
});
