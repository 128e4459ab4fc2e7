// The SDK runs in an extension author's process: `plinth/sdk` (src/sdk/index.ts, runExtension included) must load
// only the wire pieces it needs, never the host (registry, control server, policy, stores…). Checked on the real
// module graph: every module it imports at run time (type-only imports are erased), followed transitively.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT } from '../../helpers.ts';
import { RUNNER_TOKEN } from './helpers.ts';
import { once } from 'node:events';
import { WebSocketServer } from 'ws';
import { runExtension, type Json, type StageContext } from '../../../src/sdk/index.ts';
import { PlinthError } from '../../../src/errors.ts';
import { Peer } from '../../../src/sandbox/link/index.ts';
import { webSocketTransport } from '../../../src/sandbox/link/ws.ts';

async function runtimeImports(file: string, seen = new Set<string>()): Promise<Set<string>> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = await readFile(file, 'utf8');
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"](\.[^'"]+)['"]/gm)) {
    await runtimeImports(path.resolve(path.dirname(file), m[1]!), seen);
  }
  return seen;
}

/** A minimal host over a real ws server: accepts one runner.register, then lets the test send it requests. */
async function fakeHost(): Promise<{ url: string; peer: Promise<Peer>; close(): Promise<void> }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  const peer = new Promise<Peer>((resolve) => {
    server.once('connection', (socket) => {
      const p = new Peer(webSocketTransport(socket));
      p.handle('runner.register', (params) => {
        const manifest = (params as { manifest: { name: string; version: string } }).manifest;
        resolve(p);
        return { id: manifest.name, version: manifest.version, instance: 'fake', trust: 'unchecked' };
      });
      p.handle('ctx', () => ({}));
    });
  });
  const { port } = server.address() as { port: number };
  return { url: `ws://127.0.0.1:${port}/rpc`, peer, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('the SDK', () => {
  // Regression (failed under load, runtime.test "serves stages like any runtime"): a stage that rejects when its
  // ctx.signal aborts at the runner's own deadline was answered STAGE_FAILED "aborted"; when that answer reached the
  // host before the host's own deadline timer ran, the call failed with the wrong code. The runner says timeout.
  it('a stage ended by its deadline is answered STAGE_TIMEOUT by the runner, not STAGE_FAILED', async () => {
    const fake = await fakeHost();
    const handle = runExtension(
      { stages: { slow: (_input: Json, ctx: StageContext) => new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')))) } },
      { url: fake.url, token: 'any', dir: path.join(ROOT, 'test', 'fixtures', 'remote', 'echo-remote'), handleSignals: false, log: () => undefined },
    );
    try {
      await handle.registered;
      const peer = await fake.peer;
      await peer.request('extension.initialize', { instanceId: 'fake', config: {}, env: {}, limits: { callTimeoutMs: 1000, concurrency: 1 }, stages: ['slow'] });
      const err = await peer.request('stage.execute', { stage: 'slow', input: null, timeoutMs: 50, traceId: 't' }).then(
        () => assert.fail('the stage resolved'),
        (e: unknown) => e as PlinthError,
      );
      assert.equal(err.code, 'PLINTH_ERR_STAGE_TIMEOUT', err.message);
      assert.match(err.message, /within 50 ms/);
    } finally {
      await handle.stop();
      await fake.close();
    }
  });

  it('loads no host internals: only src/sdk, the JSON-RPC link, the remote protocol and the error table', async () => {
    const files = [...(await runtimeImports(path.join(ROOT, 'src', 'sdk', 'index.ts')))].map((f) => path.relative(path.join(ROOT, 'src'), f)).sort();
    assert.deepEqual(files, ['errors.ts', 'sandbox/link/call-table.ts', 'sandbox/link/index.ts', 'sandbox/link/ws.ts', 'sandbox/remote/protocol.ts', 'sdk/index.ts', 'sdk/runner.ts']);
  });

  it('runExtension: a token the host refuses is final (registered rejects with CONTROL_AUTH) and the runner stops; a missing package.json too', async () => {
    const { remoteHost } = await import('./helpers.ts');
    const h = await remoteHost([]);
    try {
      const states: string[] = [];
      const handle = runExtension({ stages: {} }, { url: h.url, token: 'not-a-token', dir: path.join(ROOT, 'test', 'fixtures', 'remote', 'echo-remote'), handleSignals: false, log: () => undefined });
      handle.on('state', (s) => states.push(s));
      await assert.rejects(handle.registered, (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_CONTROL_AUTH');
      await handle.stop();
      assert.equal(handle.state, 'stopped');
      const missing = runExtension({ stages: {} }, { url: h.url, token: RUNNER_TOKEN, dir: path.join(ROOT, 'no-such-folder'), handleSignals: false, log: () => undefined });
      await assert.rejects(missing.registered, (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_PACKAGE_JSON_INVALID');
      await missing.stop();
    } finally {
      await h.stop();
    }
  });
});
