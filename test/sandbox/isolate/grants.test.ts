// Permissions end to end: the extension's ctx calls travel isolate → sandbox process → host, where the real
// createContextHandler (src/policy) decides. Denials reach the guest as errors with code PERMISSION_DENIED.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { call, fixture, shutdownAfterAll, started } from './helpers.ts';
import { ROOT } from '../../helpers.ts';
import type { Json } from '../../../src/sdk/index.ts';

shutdownAfterAll();

interface Outcome {
  ok: boolean;
  value?: Json;
  code?: string | null;
  message?: string;
  stack?: string;
}

type Step = { call: string; args?: Json[] };

async function ops(sandbox: Awaited<ReturnType<typeof started>>['sandbox'], steps: Step[]): Promise<Outcome[]> {
  return (await call(sandbox, 'op', { steps })) as unknown as Outcome[];
}

describe('ctx permissions through the isolate', () => {
  let server: Server;
  let port = 0;
  const hits: string[] = [];
  before(async () => {
    server = createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      res.setHeader('x-test', 'yes');
      res.end(`hello ${req.method}`);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('fs: granted paths read and write; outside the grant or the data dir is denied', async () => {
    const { sandbox, host } = await started(await fixture('probe'));
    await mkdir(path.join(host.dataDir, 'in'), { recursive: true });
    await writeFile(path.join(host.dataDir, 'in', 'a.txt'), 'from the host');
    await writeFile(path.join(host.dataDir, 'secret.txt'), 'not granted');
    const [read, write, append, outside, escape, absolute, missing] = await ops(sandbox, [
      { call: 'fs.readText', args: ['in/a.txt'] },
      { call: 'fs.writeText', args: ['out/b.txt', 'one'] },
      { call: 'fs.appendText', args: ['out/b.txt', '+two'] },
      { call: 'fs.readText', args: ['secret.txt'] },
      { call: 'fs.readText', args: ['../../etc/passwd'] },
      { call: 'fs.writeText', args: ['/tmp/plinth-should-not-exist', 'x'] },
      { call: 'fs.readText', args: ['in/missing.txt'] },
    ]);
    assert.deepEqual(read, { ok: true, value: 'from the host' });
    assert.equal(write?.ok, true);
    assert.equal(append?.ok, true);
    assert.equal(await readFile(path.join(host.dataDir, 'out', 'b.txt'), 'utf8'), 'one+two');
    for (const denied of [outside, escape, absolute]) assert.equal(denied?.code, 'PLINTH_ERR_PERMISSION_DENIED', JSON.stringify(denied));
    assert.equal(missing?.code, 'ENOENT');
    // What the guest learns of a denial carries no host path nor host stack.
    for (const o of [outside, escape, absolute, missing]) {
      assert.ok(!o?.message?.includes(host.dataDir) && !o?.message?.includes(ROOT), o?.message);
      assert.ok(!/grants\.ts|node:internal|src\/sandbox/.test(o?.stack ?? ''), o?.stack);
    }
  });

  it('emit: granted topic patterns publish, others are denied', async () => {
    const { sandbox, host } = await started(await fixture('probe'));
    const [ok, deep, denied, invalid] = await ops(sandbox, [
      { call: 'emit', args: ['probe.done', { n: 1 }] },
      { call: 'emit', args: ['probe.a.b.c', null] },
      { call: 'emit', args: ['security.alert', { n: 2 }] },
      { call: 'emit', args: ['bad..topic', 1] },
    ]);
    assert.equal(ok?.ok, true);
    assert.equal(deep?.ok, true);
    assert.equal(denied?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(invalid?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.deepEqual(host.emitted, [
      { topic: 'probe.done', payload: { n: 1 } },
      { topic: 'probe.a.b.c', payload: null },
    ]);
  });

  it('env: a granted name reads its value, any other is denied', async () => {
    const { sandbox } = await started(await fixture('probe'), { env: { PLINTH_TEST_GRANTED: 'granted-value', HOME: '/root', PATH: '/bin' } });
    const [granted, home, path_] = await ops(sandbox, [{ call: 'env', args: ['PLINTH_TEST_GRANTED'] }, { call: 'env', args: ['HOME'] }, { call: 'env', args: ['PATH'] }]);
    assert.deepEqual(granted, { ok: true, value: 'granted-value' });
    assert.equal(home?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(path_?.code, 'PLINTH_ERR_PERMISSION_DENIED');
  });

  it('kv: works with "kv": true, denied without it', async () => {
    const granted = await started(await fixture('probe'));
    const [set, get, del, gone] = await ops(granted.sandbox, [
      { call: 'kv.set', args: ['k', { deep: [1, 2] }] },
      { call: 'kv.get', args: ['k'] },
      { call: 'kv.delete', args: ['k'] },
      { call: 'kv.get', args: ['k'] },
    ]);
    assert.equal(set?.ok, true);
    assert.deepEqual(get, { ok: true, value: { deep: [1, 2] } });
    assert.deepEqual(del, { ok: true, value: true });
    assert.deepEqual(gone, { ok: true, value: '<undefined>' });

    const spec = await fixture('probe');
    const { sandbox } = await started({ ...spec, permissions: { ...spec.permissions, kv: false } }, {});
    const [denied] = await ops(sandbox, [{ call: 'kv.get', args: ['k'] }]);
    assert.equal(denied?.code, 'PLINTH_ERR_PERMISSION_DENIED');
  });

  it('fetch: a granted host is fetched, an ungranted one is denied before any request', async () => {
    const { sandbox } = await started(await fixture('probe'));
    hits.length = 0;
    const [ok, other, scheme] = await ops(sandbox, [
      { call: 'fetch', args: [`http://127.0.0.1:${port}/granted`, { method: 'POST', body: 'x' }] },
      { call: 'fetch', args: [`http://localhost:${port}/not-granted`] },
      { call: 'fetch', args: ['file:///etc/passwd'] },
    ]);
    assert.equal(ok?.ok, true);
    const res = ok?.value as { status: number; headers: Record<string, string>; text: string };
    assert.equal(res.status, 200);
    assert.equal(res.text, 'hello POST');
    assert.equal(res.headers['x-test'], 'yes');
    assert.equal(other?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(scheme?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.deepEqual(hits, ['POST /granted'], 'the denied fetch never reached the server');
  });
});
