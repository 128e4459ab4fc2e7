// ctx.fetch's breaker per extension and origin (policy.fetchBreaker, opossum): a real HTTP server on 127.0.0.1 that
// resets connections while it is "down", and counts every connection, so "failed at once" means no connection made.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createContextHandler, DEFAULT_FETCH_BREAKER, DEFAULT_QUOTAS, FetchBreakers, KvStore } from '../../src/policy/index.ts';
import { loadHostConfig } from '../../src/config/index.ts';
import type { Quotas } from '../../src/policy/index.ts';
import { rejectsWith, tempDir, waitFor } from '../helpers.ts';

let server: Server;
let origin: string;
let connections = 0;
let down = true;

before(async () => {
  server = createServer((_req, res) => res.end(down ? '' : 'x'.repeat(4096)));
  server.on('connection', (socket: Socket) => {
    connections++;
    if (down) socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function handler(breakers: FetchBreakers, extension = 'ext', quotas: Quotas = DEFAULT_QUOTAS) {
  return createContextHandler({
    extension,
    dataDir: await tempDir(),
    permissions: { network: ['127.0.0.1'] },
    emit: () => Promise.resolve(),
    log: () => undefined,
    kv: new KvStore(),
    env: {},
    quotas,
    fetchBreakers: breakers,
  });
}

async function fails(ctx: Awaited<ReturnType<typeof handler>>): Promise<string | undefined> {
  try {
    await ctx({ op: 'fetch', url: `${origin}/x` });
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe('ctx.fetch breaker per extension and origin', () => {
  it('the defaults come from the host-config schema', async () => {
    const config = await loadHostConfig({ env: {}, noFile: true });
    assert.deepEqual(config.policy.fetchBreaker, DEFAULT_FETCH_BREAKER);
    assert.equal(DEFAULT_FETCH_BREAKER.enabled, true);
  });

  it('opens after minimumCalls failing requests: the next fails with PLINTH_ERR_FETCH_CIRCUIT_OPEN without connecting; another extension still connects; one request after recoveryTimeoutMs closes it', async () => {
    down = true;
    const breakers = new FetchBreakers({ minimumCalls: 3, failureRateThreshold: 50, recoveryTimeoutMs: 150 });
    try {
      const ctx = await handler(breakers);
      const start = connections;
      for (let i = 0; i < 3; i++) assert.equal(await fails(ctx), 'ECONNRESET');
      assert.equal(connections - start, 3);
      assert.equal(breakers.state('ext', origin), 'open');
      const err = await rejectsWith(ctx({ op: 'fetch', url: `${origin}/y` }), 'PLINTH_ERR_FETCH_CIRCUIT_OPEN');
      assert.match(err.message, /127\.0\.0\.1/);
      assert.match(String(err.hint), /policy\.fetchBreaker/);
      assert.equal(connections - start, 3, 'no connection while open');

      const other = await handler(breakers, 'other');
      assert.equal(await fails(other), 'ECONNRESET', 'another extension has its own breaker');
      assert.equal(connections - start, 4);

      await waitFor(() => breakers.state('ext', origin) === 'half-open', 'the breaker to let a probe through');
      down = false;
      const res = (await ctx({ op: 'fetch', url: `${origin}/z` })) as { status: number };
      assert.equal(res.status, 200);
      assert.equal(breakers.state('ext', origin), 'closed');
    } finally {
      breakers.close();
      down = true;
    }
  });

  it('refused grants and responses over their size quota never count against the origin', async () => {
    down = false;
    const breakers = new FetchBreakers({ minimumCalls: 2, failureRateThreshold: 1 });
    try {
      const ctx = await handler(breakers, 'ext', { ...DEFAULT_QUOTAS, fetch: { ...DEFAULT_QUOTAS.fetch, maxResponseBytes: 16 } });
      for (let i = 0; i < 5; i++) await rejectsWith(ctx({ op: 'fetch', url: `${origin}/big` }), 'PLINTH_ERR_QUOTA_EXCEEDED');
      for (let i = 0; i < 5; i++) await rejectsWith(ctx({ op: 'fetch', url: origin.replace('127.0.0.1', 'localhost') }), 'PLINTH_ERR_PERMISSION_DENIED');
      assert.notEqual(breakers.state('ext', origin), 'open');
    } finally {
      breakers.close();
      down = true;
    }
  });

  it('enabled: false sends every request; close() forgets every breaker', async () => {
    down = true;
    const off = new FetchBreakers({ enabled: false, minimumCalls: 1 });
    const ctx = await handler(off);
    const start = connections;
    for (let i = 0; i < 4; i++) assert.equal(await fails(ctx), 'ECONNRESET');
    assert.equal(connections - start, 4);
    assert.equal(off.state('ext', origin), undefined);

    const on = new FetchBreakers({ minimumCalls: 1 });
    const ctx2 = await handler(on);
    assert.equal(await fails(ctx2), 'ECONNRESET');
    assert.equal(on.state('ext', origin), 'open');
    on.close();
    assert.equal(on.state('ext', origin), undefined);
  });
});
