import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { openStore, storeFile } from '../../src/store/index.ts';
import { loadHostConfig, durationMs } from '../../src/config/index.ts';
import { runCli, tempDir } from '../helpers.ts';

describe('plinth dlq', () => {
  it('on a data dir without a store: nothing listed, and no store is created', async () => {
    const root = await tempDir();
    const r = await runCli(['dlq', 'ls', '--data-dir', 'data', '--json'], { cwd: root });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { ok: true, command: 'dlq ls', data: { deadLetters: [] }, error: null });
    assert.equal(existsSync(storeFile(path.join(root, 'data'))), false);
  });

  it('filters, shows, purges; unknown ids and missing selections are clear errors', async () => {
    const root = await tempDir();
    const store = openStore(path.join(root, 'data'));
    const now = new Date();
    const attempt = { attempt: 1, startedAt: now.toISOString(), failedAt: now.toISOString(), error: { message: 'handler failed' } };
    for (const [topic, sub] of [['orders.created', 'a'], ['orders.paid', 'b'], ['users.joined', 'a']] as const) {
      store.deadLetter(sub, undefined, { id: `${topic}-1`, topic, time: now.toISOString(), payload: { topic } }, [attempt], now, durationMs('24h'));
    }
    store.close();
    const ls = async (...args: string[]) => (JSON.parse((await runCli(['dlq', 'ls', '--data-dir', 'data', '--json', ...args], { cwd: root })).stdout) as { data: { deadLetters: Array<{ id: number; event: { topic: string } }> } }).data.deadLetters.map((d) => d.event.topic);
    assert.deepEqual(await ls('--topic', 'orders.*'), ['orders.created', 'orders.paid']);
    assert.deepEqual(await ls('--subscriber', 'a'), ['orders.created', 'users.joined']);
    assert.deepEqual(await ls('--since', '1h'), ['orders.created', 'orders.paid', 'users.joined']);
    assert.deepEqual(await ls('--until', '1h'), []);
    const text = await runCli(['dlq', 'ls', '--data-dir', 'data'], { cwd: root });
    assert.match(text.stdout, /SUBSCRIBER[\s\S]*orders\.paid[\s\S]*handler failed/);
    const missing = await runCli(['dlq', 'show', '999', '--data-dir', 'data'], { cwd: root });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /PLINTH_ERR_DEAD_LETTER_NOT_FOUND/);
    const bare = await runCli(['dlq', 'purge', '--data-dir', 'data'], { cwd: root });
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /PLINTH_ERR_USAGE/);
    const purge = await runCli(['dlq', 'purge', '--topic', 'orders.#', '--data-dir', 'data', '--json'], { cwd: root });
    assert.deepEqual(JSON.parse(purge.stdout), { ok: true, command: 'dlq purge', data: { purged: 2 }, error: null });
    assert.deepEqual(await ls(), ['users.joined']);
  });
});

describe('events config', () => {
  it('has the issue\'s defaults: 1 MiB payloads, 24 h dead-letter TTL, exponential backoff with jitter', async () => {
    const cfg = await loadHostConfig({ cwd: await tempDir(), env: {}, noFile: true });
    assert.equal(cfg.events.maxPayloadBytes, 1024 * 1024);
    assert.equal(durationMs(cfg.events.deadLetterTtl), 24 * 3600 * 1000);
    assert.equal(cfg.events.retry.backoff, 'exponential');
    assert.equal(cfg.events.retry.jitter, true);
    assert.equal(durationMs(cfg.events.deliveryTimeout), 60_000, 'events.deliveryTimeout defaults to 60s');
    assert.equal(durationMs('30s'), 30_000);
    assert.equal(durationMs(1500), 1500);
  });
});
