// The bundled worker extensions (plugins/csv-ingest, plugins/audit-log) running in real piscina threads, with
// their ctx ops checked end to end by src/policy against their manifests.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { harness, opts, within, PLUGINS } from './harness.ts';
import { rejectsWith } from '../../helpers.ts';

describe('worker runtime: csv-ingest', () => {
  it('parses text, and reads a file from its granted inbox (publishing csv.parsed)', async () => {
    const h = await harness(path.join(PLUGINS, 'csv-ingest'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const parsed = await h.sandbox.call('parse', { text: 'name,qty\r\n"Doe, Jane",3\nBob,\n' }, opts());
      assert.deepEqual(parsed, { records: [{ name: 'Doe, Jane', qty: 3 }, { name: 'Bob', qty: null }], columns: ['name', 'qty'], rowCount: 2 });

      await mkdir(path.join(h.dataDir, 'inbox'), { recursive: true });
      await writeFile(path.join(h.dataDir, 'inbox', 'people.csv'), 'id;ok\n1;true\n2;false\n');
      const read = await h.sandbox.call('read_file', { path: 'inbox/people.csv' }, opts());
      // The default delimiter is ',', so the whole line is one column.
      assert.deepEqual(read, { records: [{ 'id;ok': '1;true' }, { 'id;ok': '2;false' }], columns: ['id;ok'], rowCount: 2 });
      assert.deepEqual(h.emitted, [{ topic: 'csv.parsed', payload: { path: 'inbox/people.csv', rowCount: 2 } }]);

      // Outside the inbox: the host refuses and the extension does not catch it.
      await writeFile(path.join(h.dataDir, 'secret.csv'), 'a\n1\n');
      const err = await rejectsWith(h.sandbox.call('read_file', { path: 'secret.csv' }, opts()), 'PLINTH_ERR_PERMISSION_DENIED');
      assert.match(err.extensionStack ?? '', /plugins\/csv-ingest\/index\.js:\d+/);
      assert.equal(h.emitted.length, 1);
    } finally {
      await within(h.sandbox.stop(2_000), 5_000, 'stop');
    }
  });

  it('applies its config in initialize() (delimiter)', async () => {
    const h = await harness(path.join(PLUGINS, 'csv-ingest'), { config: { delimiter: ';' } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      await mkdir(path.join(h.dataDir, 'inbox'));
      await writeFile(path.join(h.dataDir, 'inbox', 'people.csv'), 'id;ok\n1;true\n');
      assert.deepEqual(await h.sandbox.call('read_file', { path: 'inbox/people.csv' }, opts()), { records: [{ id: 1, ok: true }], columns: ['id', 'ok'], rowCount: 1 });
    } finally {
      await h.sandbox.stop(2_000);
    }
  });
});

describe('worker runtime: audit-log', () => {
  it('records entries and events through ctx.fs, reads HOSTNAME through ctx.env, and tails them', async () => {
    const h = await harness(path.join(PLUGINS, 'audit-log'), { env: { HOSTNAME: 'host-under-test', SECRET: 'x' } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const first = (await h.sandbox.call('record', { action: 'login', actor: 'ann' }, opts(5_000, { runId: 'run-1' }))) as { seq: number; at: string };
      assert.equal(first.seq, 1);
      assert.ok(!Number.isNaN(Date.parse(first.at)));
      await h.sandbox.deliver({ topic: 'security.alert', payload: { level: 'high' }, id: 'evt-1', time: new Date().toISOString() }, opts());
      const third = (await h.sandbox.call('record', { action: 'export', details: { rows: 3 } }, opts())) as { seq: number };
      assert.equal(third.seq, 3);

      const { entries } = (await h.sandbox.call('tail', { limit: 10 }, opts())) as { entries: Array<Record<string, unknown>> };
      assert.deepEqual(
        entries.map((e) => [e.seq, e.action, e.host, e.topic ?? null, e.runId ?? null]),
        [
          [1, 'login', 'host-under-test', null, 'run-1'],
          [2, 'event', 'host-under-test', 'security.alert', null],
          [3, 'export', 'host-under-test', null, null],
        ],
      );
      const onDisk = (await readFile(path.join(h.dataDir, 'audit', 'audit.jsonl'), 'utf8')).trim().split('\n');
      assert.equal(onDisk.length, 3);
      assert.ok(h.ops.includes('env') && h.ops.includes('fs.appendText') && h.ops.includes('fs.readText'));
      assert.deepEqual(await h.sandbox.health(1_000), true);
    } finally {
      await within(h.sandbox.stop(2_000), 5_000, 'stop');
    }

    // A new sandbox over the same data directory continues the sequence (initialize() reads the file).
    const again = await harness(path.join(PLUGINS, 'audit-log'), { env: { HOSTNAME: 'host-under-test' }, dataDir: h.dataDir });
    await within(again.sandbox.start(), 10_000, 'restart');
    try {
      assert.equal(((await again.sandbox.call('record', { action: 'logout' }, opts())) as { seq: number }).seq, 4);
    } finally {
      await again.sandbox.stop(2_000);
    }
  });
});
