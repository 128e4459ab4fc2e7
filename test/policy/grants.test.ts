// The host side of ctx (src/policy) on its own: real files in a temp data dir and real HTTP servers
// on 127.0.0.1, so every grant and every denial is checked where it is decided.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createContextHandler, DEFAULT_QUOTAS, KvStore } from '../../src/policy/index.ts';
import type { Permissions } from '../../src/manifest/index.ts';
import type { Json } from '../../src/sdk/index.ts';
import { rejectsWith, tempDir } from '../helpers.ts';

let server: Server;
let base: string;
const hits: string[] = [];

before(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const port = (server.address() as AddressInfo).port;
    if (req.url === '/to-other-host') res.writeHead(302, { location: `http://localhost:${port}/secret` }).end();
    else if (req.url === '/to-same-host') res.writeHead(301, { location: '/final' }).end();
    else if (req.url?.startsWith('/loop/')) res.writeHead(302, { location: `/loop/${Number(req.url.slice(6)) + 1}` }).end();
    else res.writeHead(200, { 'content-type': 'text/plain' }).end(`you asked for ${req.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function handler(permissions: Permissions) {
  const dataDir = path.join(await tempDir(), 'data');
  await mkdir(dataDir, { recursive: true });
  const emitted: Array<[string, Json]> = [];
  const kv = new KvStore();
  const ctx = createContextHandler({
    extension: 'ext',
    dataDir,
    permissions,
    emit: (topic, payload) => {
      emitted.push([topic, payload]);
      return Promise.resolve();
    },
    log: () => undefined,
    kv,
    env: { GRANTED: 'yes', SECRET: 'no' },
  });
  return { ctx, dataDir, emitted, kv };
}

describe('fs grants', () => {
  it('reads and writes under granted folders only; read-only folders refuse writes', async () => {
    const { ctx, dataDir } = await handler({ fs: { read: ['inbox'], write: ['out'] } });
    await mkdir(path.join(dataDir, 'inbox'), { recursive: true });
    await writeFile(path.join(dataDir, 'inbox', 'a.txt'), 'hello');
    assert.equal(await ctx({ op: 'fs.readText', path: 'inbox/a.txt' }), 'hello');
    await ctx({ op: 'fs.writeText', path: 'out/deep/b.txt', text: 'one' });
    await ctx({ op: 'fs.appendText', path: 'out/deep/b.txt', text: '+two' });
    assert.equal(await readFile(path.join(dataDir, 'out', 'deep', 'b.txt'), 'utf8'), 'one+two');
    assert.equal(await ctx({ op: 'fs.readText', path: 'out/deep/b.txt' }), 'one+two', 'a write grant lets it read back');
    for (const bad of ['inbox/../../escape.txt', '/etc/passwd', '../data/inbox/a.txt', 'other/x.txt', 'inboxx/a.txt']) {
      const err = await rejectsWith(ctx({ op: 'fs.readText', path: bad }), 'PLINTH_ERR_PERMISSION_DENIED');
      assert.match(err.hint ?? '', /permissions/);
    }
    await rejectsWith(ctx({ op: 'fs.writeText', path: 'inbox/a.txt', text: 'overwrite' }), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(await readFile(path.join(dataDir, 'inbox', 'a.txt'), 'utf8'), 'hello', 'the refused write changed nothing');
  });

  it('a link out of a granted folder is refused for reading and writing, whatever it points at', async () => {
    const { ctx, dataDir } = await handler({ fs: { read: ['inbox'], write: ['inbox'] } });
    const outside = path.join(path.dirname(dataDir), 'outside.txt');
    await writeFile(outside, 'secret');
    await mkdir(path.join(dataDir, 'inbox'), { recursive: true });
    await symlink(outside, path.join(dataDir, 'inbox', 'link.txt'));
    await symlink(path.dirname(dataDir), path.join(dataDir, 'inbox', 'up'));
    await rejectsWith(ctx({ op: 'fs.readText', path: 'inbox/link.txt' }), 'PLINTH_ERR_PERMISSION_DENIED');
    await rejectsWith(ctx({ op: 'fs.readText', path: 'inbox/up/outside.txt' }), 'PLINTH_ERR_PERMISSION_DENIED');
    await rejectsWith(ctx({ op: 'fs.writeText', path: 'inbox/link.txt', text: 'pwned' }), 'PLINTH_ERR_PERMISSION_DENIED');
    await rejectsWith(ctx({ op: 'fs.writeText', path: 'inbox/up/new.txt', text: 'pwned' }), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(await readFile(outside, 'utf8'), 'secret');
  });

  it('a missing file is ENOENT the extension can handle, not a denial', async () => {
    const { ctx } = await handler({ fs: { read: ['inbox'] } });
    await assert.rejects(ctx({ op: 'fs.readText', path: 'inbox/none.txt' }), (err: Error & { code?: string }) => err.code === 'ENOENT');
  });
});

describe('emit, kv, env grants', () => {
  it('emits only on topics the publish patterns match, and only valid topics', async () => {
    const { ctx, emitted } = await handler({ events: { publish: ['orders.*', 'audit.#'] } });
    await ctx({ op: 'emit', topic: 'orders.created', payload: { id: 1 } });
    await ctx({ op: 'emit', topic: 'audit.a.b.c', payload: null });
    for (const topic of ['orders.created.late', 'billing.paid', 'orders.*', 'a..b', '']) await rejectsWith(ctx({ op: 'emit', topic, payload: null }), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.deepEqual(emitted.map(([t]) => t), ['orders.created', 'audit.a.b.c']);
  });

  it('kv needs its grant, keeps copies, and caps value size', async () => {
    const denied = await handler({});
    await rejectsWith(denied.ctx({ op: 'kv.set', key: 'k', value: 1 }), 'PLINTH_ERR_PERMISSION_DENIED');
    const { ctx, kv } = await handler({ kv: true });
    const value = { nested: [1, 2] };
    await ctx({ op: 'kv.set', key: 'k', value });
    value.nested.push(3);
    assert.deepEqual(await ctx({ op: 'kv.get', key: 'k' }), { nested: [1, 2] }, 'the store holds a copy');
    await rejectsWith(ctx({ op: 'kv.set', key: 'big', value: 'x'.repeat(DEFAULT_QUOTAS.kv.maxValueBytes + 1) }), 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.equal(kv.has('big'), false);
    assert.equal(await ctx({ op: 'kv.delete', key: 'k' }), true);
  });

  it('env answers granted names only', async () => {
    const { ctx } = await handler({ env: ['GRANTED'] });
    assert.equal(await ctx({ op: 'env', name: 'GRANTED' }), 'yes');
    await rejectsWith(ctx({ op: 'env', name: 'SECRET' }), 'PLINTH_ERR_PERMISSION_DENIED');
  });
});

describe('fetch grants', () => {
  it('fetches from a granted host; other hosts and schemes are refused before any request', async () => {
    const { ctx } = await handler({ network: ['127.0.0.1'] });
    const res = (await ctx({ op: 'fetch', url: `${base}/hello` })) as { status: number; text: string };
    assert.deepEqual([res.status, res.text], [200, 'you asked for /hello']);
    const before = hits.length;
    await rejectsWith(ctx({ op: 'fetch', url: base.replace('127.0.0.1', 'localhost') + '/x' }), 'PLINTH_ERR_PERMISSION_DENIED');
    await rejectsWith(ctx({ op: 'fetch', url: 'file:///etc/passwd' }), 'PLINTH_ERR_PERMISSION_DENIED');
    await rejectsWith(ctx({ op: 'fetch', url: 'not a url' }), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(hits.length, before, 'no request was made for a refused fetch');
  });

  it('follows a redirect to the same granted host, and refuses one to another host without fetching it', async () => {
    const { ctx } = await handler({ network: ['127.0.0.1'] });
    const same = (await ctx({ op: 'fetch', url: `${base}/to-same-host` })) as { text: string };
    assert.equal(same.text, 'you asked for /final');
    const before = hits.length;
    const err = await rejectsWith(ctx({ op: 'fetch', url: `${base}/to-other-host` }), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.match(err.message, /localhost/);
    assert.deepEqual(hits.slice(before), ['/to-other-host'], 'the redirect target was never requested');
  });
});

describe('fetch redirect limit', () => {
  it('a redirect chain past quotas.fetch.maxRedirects is PLINTH_ERR_FETCH_REDIRECT_LIMIT naming the limit and key, and the next hop is never requested', async () => {
    const { ctx } = await handler({ network: ['127.0.0.1'] });
    const before = hits.length;
    const err = await rejectsWith(ctx({ op: 'fetch', url: `${base}/loop/0` }), 'PLINTH_ERR_FETCH_REDIRECT_LIMIT');
    assert.match(err.message, new RegExp(`quotas\\.fetch\\.maxRedirects = ${DEFAULT_QUOTAS.fetch.maxRedirects}`));
    assert.match(err.hint ?? '', /quotas\.fetch\.maxRedirects/);
    assert.equal(DEFAULT_QUOTAS.fetch.maxRedirects, 5, 'the default comes from the host-config schema');
    assert.deepEqual(hits.slice(before), ['/loop/0', '/loop/1', '/loop/2', '/loop/3', '/loop/4', '/loop/5'], 'the first request and five redirects, no more');
  });

  it('quotas.fetch.maxRedirects is the limit: 0 follows none', async () => {
    const dataDir = path.join(await tempDir(), 'data');
    await mkdir(dataDir, { recursive: true });
    const ctx = createContextHandler({
      extension: 'ext',
      dataDir,
      permissions: { network: ['127.0.0.1'] },
      emit: () => Promise.resolve(),
      log: () => undefined,
      kv: new KvStore(),
      env: {},
      quotas: { ...DEFAULT_QUOTAS, fetch: { ...DEFAULT_QUOTAS.fetch, maxRedirects: 0 } },
    });
    const before = hits.length;
    const err = await rejectsWith(ctx({ op: 'fetch', url: `${base}/to-same-host` }), 'PLINTH_ERR_FETCH_REDIRECT_LIMIT');
    assert.match(err.message, /quotas\.fetch\.maxRedirects = 0/);
    assert.deepEqual(hits.slice(before), ['/to-same-host']);
  });
});

describe('fetch deadline', () => {
  it('a name server that never answers is cut at quotas.fetch.timeoutMs', async () => {
    const dataDir = path.join(await tempDir(), 'data');
    await mkdir(dataDir, { recursive: true });
    let asked = 0;
    const ctx = createContextHandler({
      extension: 'ext',
      dataDir,
      permissions: { network: ['silent.test:*'] },
      emit: () => Promise.resolve(),
      log: () => undefined,
      kv: new KvStore(),
      env: {},
      quotas: { ...DEFAULT_QUOTAS, fetch: { ...DEFAULT_QUOTAS.fetch, timeoutMs: 100 } },
      resolve: () => {
        asked++;
        return new Promise(() => undefined);
      },
    });
    const err = await rejectsWith(ctx({ op: 'fetch', url: 'http://silent.test:8080/' }), 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(err.message, /quotas\.fetch\.timeoutMs = 100/);
    assert.equal(asked, 1);
  });
});
