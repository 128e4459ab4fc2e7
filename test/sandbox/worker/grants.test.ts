// Grants and denials through ctx in a worker: every op goes to the real ContextHandler (src/policy) on the host's
// main thread, and the extension sees the outcome as an Error with `.code`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { harness, opts, within, WORKER_FIXTURES, type Harness } from './harness.ts';
import { rejectsWith, tempDir } from '../../helpers.ts';

interface Outcome {
  ok: boolean;
  value?: unknown;
  isError?: boolean;
  code?: string | null;
  message?: string;
  stack?: string;
}

// Made at the top level: tempDir() removes its folder when the enclosing test (here: the file) ends.
const dataDir = await tempDir('plinth-worker-grants-');
const outside = await tempDir('plinth-worker-outside-');

describe('worker runtime: ctx grants', () => {
  let h: Harness;
  const attempt = async (op: string, ...args: unknown[]) => (await h.sandbox.call('attempt', { op, args } as never, opts())) as unknown as Outcome;
  const denied = (o: Outcome) => {
    assert.equal(o.ok, false, `expected a denial, got ${JSON.stringify(o)}`);
    assert.equal(o.isError, true);
    assert.equal(o.code, 'PLINTH_ERR_PERMISSION_DENIED');
  };

  before(async () => {
    h = await harness(path.join(WORKER_FIXTURES, 'grants'), { dataDir, env: { PLINTH_WORKER_TEST_GRANTED: 'granted-value', PLINTH_WORKER_TEST_SECRET: 'must-not-leak' } });
    await writeFile(path.join(outside, 'secret.txt'), 'top secret');
    await mkdir(path.join(h.dataDir, 'inbox'), { recursive: true });
    await writeFile(path.join(h.dataDir, 'inbox', 'in.txt'), 'hello from the inbox');
    await symlink(outside, path.join(h.dataDir, 'inbox', 'escape'));
    await symlink(path.join(outside, 'secret.txt'), path.join(h.dataDir, 'inbox', 'secret-link.txt'));
    await within(h.sandbox.start(), 10_000, 'start');
  });
  after(() => h.sandbox.stop(2_000));

  it('reads and writes inside its granted folders', async () => {
    assert.deepEqual(await attempt('readText', 'inbox/in.txt'), { ok: true, value: 'hello from the inbox' });
    assert.deepEqual(await attempt('writeText', 'out/report.txt', 'line 1\n'), { ok: true, value: null });
    assert.deepEqual(await attempt('appendText', 'out/report.txt', 'line 2\n'), { ok: true, value: null });
    assert.equal(await readFile(path.join(h.dataDir, 'out', 'report.txt'), 'utf8'), 'line 1\nline 2\n');
    // A write grant implies read.
    assert.deepEqual(await attempt('readText', 'out/report.txt'), { ok: true, value: 'line 1\nline 2\n' });
  });

  it('passes errno errors through as Error objects with .code (ENOENT)', async () => {
    const o = await attempt('readText', 'inbox/missing.txt');
    assert.equal(o.ok, false);
    assert.equal(o.isError, true);
    assert.equal(o.code, 'ENOENT');
  });

  it('denies fs outside the grant: ../, a path through ../ back out, an ungranted folder, a read-only folder', async () => {
    denied(await attempt('readText', '../secret.txt'));
    denied(await attempt('readText', 'inbox/../../secret.txt'));
    denied(await attempt('readText', path.join(outside, 'secret.txt')));
    denied(await attempt('readText', 'elsewhere/file.txt'));
    denied(await attempt('writeText', 'inbox/new.txt', 'nope'));
  });

  it('denies a symlink out of the granted folder (a linked folder and a linked file)', async () => {
    denied(await attempt('readText', 'inbox/escape/secret.txt'));
    denied(await attempt('readText', 'inbox/secret-link.txt'));
  });

  it('emits only on granted topics', async () => {
    assert.deepEqual(await attempt('emit', 'allowed.topic', { n: 1 }), { ok: true, value: null });
    denied(await attempt('emit', 'other.topic', { n: 2 }));
    assert.deepEqual(h.emitted, [{ topic: 'allowed.topic', payload: { n: 1 } }]);
  });

  it('reads granted environment variables only (ctx.env is synchronous)', async () => {
    assert.deepEqual(await attempt('env', 'PLINTH_WORKER_TEST_GRANTED'), { ok: true, value: 'granted-value' });
    const o = await attempt('env', 'PLINTH_WORKER_TEST_SECRET');
    denied(o);
    assert.doesNotMatch(JSON.stringify(o), /must-not-leak/);
  });

  it("does not hand the thread the host's process.env", async () => {
    // Set in the test process itself: a worker thread would inherit it by default.
    assert.ok(process.env.PATH);
    assert.deepEqual(await attempt('process.env', 'PATH'), { ok: true, value: null });
  });

  it('denies kv without its grant', async () => {
    denied(await attempt('kv.get', 'k'));
    denied(await attempt('kv.set', 'k', 1));
    assert.equal(h.kv.size, 0);
  });

  it('fetches from a granted host only', async () => {
    const server = createServer((req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`hello ${req.method}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const o = await attempt('fetch', `http://localhost:${port}/x`, { method: 'POST', body: 'b' });
      assert.equal(o.ok, true, JSON.stringify(o));
      const res = o.value as { status: number; text: string; headers: Record<string, string> };
      assert.equal(res.status, 200);
      assert.equal(res.text, 'hello POST');
      assert.equal(res.headers['content-type'], 'text/plain');
      // localhost resolves to loopback: reached through the address grant 127.0.0.1 beside the name grant.
      denied(await attempt('fetch', `http://not-granted.invalid:${port}/x`));
    } finally {
      server.close();
    }
  });

  it("gives a denial the extension's own stack, and an uncaught denial fails the call with PERMISSION_DENIED", async () => {
    const o = await attempt('readText', '../secret.txt');
    assert.match(o.stack ?? '', /sandbox-worker\/grants\/index\.js:\d+/);
    const err = await rejectsWith(h.sandbox.call('uncaught_denial', null, opts()), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.match(err.extensionStack ?? '', /sandbox-worker\/grants\/index\.js:\d+/);
    assert.match(err.hint ?? '', /permissions/);
  });
});

describe('worker runtime: kv with its grant', () => {
  it('sets, gets and deletes through the host store', async () => {
    const h = await harness(path.join(WORKER_FIXTURES, 'healthy'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const r = await h.sandbox.call('kv_roundtrip', { key: 'answer', value: { n: [42] } }, opts());
      assert.deepEqual(r, { got: { n: [42] }, deleted: true, after: 'undefined' });
      assert.deepEqual(h.ops, ['kv.set', 'kv.get', 'kv.delete', 'kv.get', 'emit']);
      assert.deepEqual(h.emitted, [{ topic: 'healthy.kv', payload: { key: 'answer' } }]);
    } finally {
      await h.sandbox.stop(2_000);
    }
  });
});
