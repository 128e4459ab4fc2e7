// The remote runtime end to end (issue 13): real runner processes (runExtension in a child process) over a real
// WebSocket control channel to a real host. Registration under the trust policy (trusted, untrusted, forged,
// disabled), calls served like any extension's (schemas, errors, events, metrics of the registry), ctx ops checked
// by the host's grants, a runner killed with a real signal (in-flight calls fail RUNNER_DISCONNECTED, the
// extension is degraded) and its reconnect (active again, the same extension, no new id), pipelines, and the pool
// in extensions.get and `plinth status`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makePublisher, rejectsWith, runCli, waitFor } from '../../helpers.ts';
import { connectControl } from '../../../src/control/index.ts';
import { rawClient } from '../../control/helpers.ts';
import { registered, refused, remoteFixture, remoteHost, spawnRunner, RUNNER_TOKEN, type RemoteHost, type RunnerProcess } from './helpers.ts';

const publisher = makePublisher('remote-pub');
const other = makePublisher('other-pub');
const stranger = makePublisher('stranger');

const runners: RunnerProcess[] = [];
function runner(...args: Parameters<typeof spawnRunner>): RunnerProcess {
  const r = spawnRunner(...args);
  runners.push(r);
  return r;
}
after(async () => {
  for (const r of runners) r.kill('SIGKILL');
  await Promise.all(runners.map((r) => r.exited));
});

describe('remote runners: registration under the trust policy', () => {
  let h: RemoteHost;
  before(async () => {
    h = await remoteHost([publisher, other]);
  });
  after(() => h.stop());

  it('a runner signed by a trusted publisher registers; the extension is listed as remote and active with its pool', async () => {
    const r = runner(await remoteFixture('echo-remote', publisher), h.url, { tag: 'a' });
    const line = await registered(r);
    assert.deepEqual(line.registered, { id: 'echo-remote', version: '1.0.0' });
    const e = h.host.list().find((x) => x.id === 'echo-remote')!;
    assert.equal(e.runtime, 'remote');
    assert.equal(e.state, 'active');
    assert.equal(e.pool?.instances.length, 1);
    assert.equal(e.pool?.instances[0]?.instance, line.instance);
    assert.equal(e.pool?.instances[0]?.state, 'ready');
  });

  it('a runner whose publisher is not in the trust store is refused (SIG_UNTRUSTED_PUBLISHER) and nothing of it runs', async () => {
    const r = runner(await remoteFixture('echo-remote-v2', stranger), h.url);
    const line = await refused(r);
    assert.equal(line.refused, 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER');
    assert.equal(h.host.list().find((x) => x.id === 'echo-remote')?.version, '1.0.0');
    await r.exited;
  });

  it('an unsigned runner is refused under sandbox.remote trusted (SIG_MISSING)', async () => {
    const r = runner(await remoteFixture('echo-remote-v2', undefined), h.url);
    assert.equal((await refused(r)).refused, 'PLINTH_ERR_SIG_MISSING');
  });

  it('a forged id — a manifest renamed after signing — is refused (SIG_FILE_CHANGED): the signature does not cover what it claims', async () => {
    const dir = await remoteFixture('echo-remote', publisher);
    const file = path.join(dir, 'package.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"echo-remote"', '"forged-remote"'));
    const r = runner(dir, h.url);
    assert.equal((await refused(r)).refused, 'PLINTH_ERR_SIG_FILE_CHANGED');
    assert.equal(h.host.list().some((x) => x.id === 'forged-remote'), false);
  });

  it('a trusted publisher claiming an id that belongs to another is refused (PUBLISHER_MISMATCH)', async () => {
    const r = runner(await remoteFixture('echo-remote', other), h.url);
    assert.equal((await refused(r)).refused, 'PLINTH_ERR_PUBLISHER_MISMATCH');
    assert.equal(h.host.list().find((x) => x.id === 'echo-remote')?.pool?.instances.length, 1, 'the pool is as it was');
  });

  it('a forged signature (its text edited) is refused with SIG_INVALID, over the raw protocol', async () => {
    const dir = await remoteFixture('echo-remote', publisher);
    const manifestText = await readFile(path.join(dir, 'package.json'), 'utf8');
    const sig = JSON.parse(await readFile(path.join(dir, 'plinth.sig'), 'utf8')) as { files: Record<string, string> };
    sig.files['index.js'] = '0'.repeat(64);
    const c = await rawClient(h.url, { token: RUNNER_TOKEN });
    const reply = await c.call('runner.register', { manifest: JSON.parse(manifestText) as object, manifestText, signature: JSON.stringify(sig) });
    assert.equal(reply.error?.data?.code, 'PLINTH_ERR_SIG_INVALID');
    // A runner request before registering is refused with its own code.
    const ctx = await c.call('ctx', { op: { op: 'log', level: 'info', message: 'hi' } });
    assert.equal(ctx.error?.data?.code, 'PLINTH_ERR_RUNNER_NOT_REGISTERED');
    c.close();
  });

  it('only a runner token may register; a client token is forbidden (RPC_FORBIDDEN)', async () => {
    const c = await rawClient(h.url, { token: h.adminToken });
    const reply = await c.call('runner.register', { manifest: { name: 'x', version: '1.0.0', plinth: { runtime: 'remote' } } });
    assert.equal(reply.error?.data?.code, 'PLINTH_ERR_RPC_FORBIDDEN');
    c.close();
  });

  it('another version while the pool has runners is refused (RUNNER_VERSION_MISMATCH)', async () => {
    const r = runner(await remoteFixture('echo-remote-v2', publisher), h.url);
    assert.equal((await refused(r)).refused, 'PLINTH_ERR_RUNNER_VERSION_MISMATCH');
  });
});

describe('remote runners: sandbox.remote', () => {
  it('off: every runner.register is refused (REMOTE_DISABLED)', async () => {
    const h = await remoteHost([publisher], { sandbox: { remote: 'off' } });
    try {
      const r = runner(await remoteFixture('echo-remote', publisher), h.url);
      assert.equal((await refused(r)).refused, 'PLINTH_ERR_REMOTE_DISABLED');
      assert.equal(h.host.list().length, 0);
    } finally {
      await h.stop();
    }
  });

  it('any with trust.policy warn: an unsigned runner joins as untrusted, and its ctx is still held to the grants', async () => {
    const h = await remoteHost([publisher], { sandbox: { remote: 'any' }, trust: { store: 'trust.json', policy: 'warn' } });
    try {
      const r = runner(await remoteFixture('echo-remote', undefined), h.url);
      await registered(r);
      assert.deepEqual(await h.host.call('echo-remote', 'echo', { a: 1 }), { input: { a: 1 }, runner: 'runner', initialized: 1 });
      await rejectsWith(h.host.call('echo-remote', 'kv', {}), 'PLINTH_ERR_PERMISSION_DENIED');
      r.kill('SIGKILL');
    } finally {
      await h.stop();
    }
  });
});

describe('remote runners: serving, ctx, drops and reconnects, pipelines, status', () => {
  let h: RemoteHost;
  let dir: string;
  /** The runner serving the extension now (each test hands it on). */
  let serving: RunnerProcess | undefined;
  before(async () => {
    h = await remoteHost([publisher], {
      defaults: { breaker: { minimumCalls: 1000 } },
      extensions: { 'echo-remote': { pool: { strategy: 'round-robin' } } },
    });
    dir = await remoteFixture('echo-remote', publisher);
  });
  after(() => h.stop());

  it('serves stages like any runtime: input and output schemas checked by the host, a throw is STAGE_FAILED with its stack', async () => {
    serving = runner(dir, h.url, { tag: 'one', instance: 'runner-one' });
    await registered(serving);
    assert.deepEqual(await h.host.call('echo-remote', 'echo', { x: [1, 2] }), { input: { x: [1, 2] }, runner: 'one', initialized: 1 });
    await rejectsWith(h.host.call('echo-remote', 'slow', { ms: 'no' }), 'PLINTH_ERR_STAGE_INPUT_INVALID');
    await rejectsWith(h.host.call('echo-remote', 'bad-output', {}), 'PLINTH_ERR_STAGE_OUTPUT_INVALID');
    const failed = await rejectsWith(h.host.call('echo-remote', 'fail', {}), 'PLINTH_ERR_STAGE_FAILED');
    assert.match(failed.message, /RangeError: one fails on purpose/);
    assert.match(failed.extensionStack ?? '', /index\.js/);
    await rejectsWith(h.host.call('echo-remote', 'nope', {}), 'PLINTH_ERR_STAGE_UNKNOWN');
    // A call that runs past its timeout fails STAGE_TIMEOUT (the runner is sent $/cancelRequest).
    await rejectsWith(h.host.call('echo-remote', 'slow', { ms: 5000 }, { timeoutMs: 200 }), 'PLINTH_ERR_STAGE_TIMEOUT');
  });

  it("a runner's ctx ops are checked by the host's grants: a denied op is PERMISSION_DENIED, a granted emit reaches the bus", async () => {
    const denied = await rejectsWith(h.host.call('echo-remote', 'kv', {}), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.match(denied.message, /key-value store/);
    const seen: unknown[] = [];
    const off = h.host.bus.subscribe('remote.*', (e) => void seen.push(e.payload), { durable: false });
    try {
      assert.deepEqual(await h.host.call('echo-remote', 'emit', {}), { emitted: true });
      await waitFor(() => seen.length > 0, 'the emitted event');
      assert.deepEqual(seen[0], { from: 'one' });
    } finally {
      off();
    }
  });

  it("events reach the remote extension's handleEvent (its manifest's subscribes), delivered through a runner", async () => {
    const pongs: unknown[] = [];
    const off = h.host.bus.subscribe('remote.pong', (e) => void pongs.push(e.payload), { durable: false });
    try {
      await h.host.bus.publish('remote.ping', { n: 7 }, 'control');
      await waitFor(() => pongs.length > 0, 'the pong');
      assert.deepEqual(pongs[0], { from: 'one', got: { n: 7 }, attempt: 1 });
    } finally {
      off();
    }
  });

  it('stages.call over the control channel and extensions.get show it like any extension, with its pool', async () => {
    const client = await connectControl({ url: h.url, token: h.adminToken });
    try {
      const { output } = await client.request('stages.call', { extension: 'echo-remote', stage: 'echo', input: { via: 'ws' } });
      assert.deepEqual(output, { input: { via: 'ws' }, runner: 'one', initialized: 1 });
      const { extension } = await client.request('extensions.get', { id: 'echo-remote' });
      assert.equal(extension.runtime, 'remote');
      assert.equal(extension.pool?.strategy, 'round-robin');
      assert.equal(extension.pool?.instances[0]?.instance, 'runner-one');
      assert.ok((extension.pool?.instances[0]?.calls ?? 0) >= 1);
    } finally {
      await client.close();
    }
    const status = await runCli(['status', '--url', h.url, '--token', h.adminToken]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /echo-remote pool \(round-robin\): 1 ready of 1 runner/);
    assert.match(status.stdout, /runner-one/);
  });

  it('a runner killed with SIGKILL: its in-flight call fails RUNNER_DISCONNECTED, the extension is degraded; a reconnect restores it (same extension, same runner id)', async () => {
    const before = h.host.get('echo-remote')!;
    const first = serving!;
    const inflight = h.host.call('echo-remote', 'slow', { ms: 30_000 });
    await waitFor(() => (h.host.list().find((e) => e.id === 'echo-remote')?.pool?.outstanding ?? 0) === 1, 'the call to be in flight at the runner');
    first.kill('SIGKILL');
    const err = await rejectsWith(inflight, 'PLINTH_ERR_RUNNER_DISCONNECTED');
    assert.equal(err.extension, 'echo-remote');
    await waitFor(() => h.host.get('echo-remote')?.state === 'degraded', 'degraded');
    const listed = h.host.list().find((e) => e.id === 'echo-remote')!;
    assert.equal(listed.reason?.code, 'PLINTH_ERR_RUNNER_DISCONNECTED');
    assert.equal(listed.pool?.instances.length, 0);
    await rejectsWith(h.host.call('echo-remote', 'echo', {}), 'PLINTH_ERR_RUNNER_DISCONNECTED');

    serving = runner(dir, h.url, { tag: 'two', instance: 'runner-one' });
    await registered(serving);
    await waitFor(() => h.host.get('echo-remote')?.state === 'active', 'active again');
    assert.equal(h.host.get('echo-remote'), before, 'the same supervised extension: nothing re-created');
    assert.equal(h.host.list().find((e) => e.id === 'echo-remote')?.pool?.instances[0]?.instance, 'runner-one');
    assert.equal(((await h.host.call('echo-remote', 'echo', {})) as { runner: string }).runner, 'two');
  });

  it('a pipeline stage is served by the remote runner, and a stage whose runner dropped is retried (RUNNER_DISCONNECTED is retryable)', async () => {
    const definition = {
      name: 'remote-pipe',
      version: '1.0.0',
      stages: [
        { id: 'wait', extension: 'echo-remote', stage: 'slow', with: { ms: 1500 }, retry: { policy: 'fixed', attempts: 30, interval: '200ms' } },
        { id: 'say', extension: 'echo-remote', stage: 'echo', needs: ['wait'], with: { after: '${{ stages.wait.output.waited }}' } },
      ],
    };
    const { runId } = await h.host.pipelines.start({ definition });
    await waitFor(() => (h.host.list().find((e) => e.id === 'echo-remote')?.pool?.outstanding ?? 0) === 1, 'the first stage to be at the runner');
    serving!.kill('SIGKILL');
    await waitFor(() => h.host.get('echo-remote')?.state === 'degraded', 'degraded');
    serving = runner(dir, h.url, { tag: 'three', instance: 'runner-one' });
    await registered(serving);
    const run = await h.host.pipelines.wait(runId);
    assert.equal(run.state, 'succeeded', JSON.stringify(run.stages.map((s) => [s.id, s.state, s.error?.code])));
    const wait = run.stages.find((s) => s.id === 'wait')!;
    assert.ok(wait.attempts.length >= 2, 'the dropped attempt was retried');
    assert.equal(wait.attempts[0]?.error?.code, 'PLINTH_ERR_RUNNER_DISCONNECTED');
    assert.deepEqual(run.stages.find((s) => s.id === 'say')?.output, { input: { after: 1500 }, runner: 'three', initialized: 1 });
  });

  it('SIGTERM stops a runner gracefully: its call in flight finishes, then it leaves the pool and exits 0', async () => {
    const live = serving!;
    const inflight = h.host.call('echo-remote', 'slow', { ms: 800 });
    await waitFor(() => (h.host.list().find((e) => e.id === 'echo-remote')?.pool?.outstanding ?? 0) === 1, 'the call to be in flight');
    live.kill('SIGTERM');
    await waitFor(() => h.host.list().find((e) => e.id === 'echo-remote')?.pool?.instances[0]?.state === 'draining', 'the runner to drain');
    await rejectsWith(h.host.call('echo-remote', 'echo', {}), 'PLINTH_ERR_RUNNER_DISCONNECTED');
    assert.deepEqual(await inflight, { runner: 'three', waited: 800 });
    assert.deepEqual(await live.exited, { code: 0, signal: null });
    await waitFor(() => h.host.list().find((e) => e.id === 'echo-remote')?.pool?.instances.length === 0, 'the pool to be empty');
    assert.ok(live.lines.some((l) => l.state === 'stopped'));
  });
});
