// Memory blow-ups. isolated-vm's memoryLimit stops plain heap growth (the isolate is disposed: OUT_OF_MEMORY);
// resizable ArrayBuffers and WebAssembly.Memory grow outside it, so the host's RSS watchdog kills the sandbox
// process. Either way the call fails with a coded error, onExit says out-of-memory, and the host stays small.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rejectsWith } from '../../helpers.ts';
import { IsolateProcess, type IsolateSandbox } from '../../../src/sandbox/isolate/index.ts';
import type { SandboxExit } from '../../../src/sandbox/types.ts';
import { call, fixture, shutdownAfterAll, started } from './helpers.ts';

shutdownAfterAll();

function exitOf(sandbox: IsolateSandbox): Promise<SandboxExit> {
  return new Promise((resolve, reject) => {
    sandbox.onExit(resolve);
    setTimeout(() => reject(new Error('no onExit within 15 s')), 15_000).unref();
  });
}

describe('memory', () => {
  it('plain heap growth past memoryLimit is OUT_OF_MEMORY; only that isolate dies', async () => {
    const bystander = (await started(await fixture('probe'))).sandbox;
    const { sandbox } = await started(await fixture('hostile'));
    const exited = exitOf(sandbox);
    const t0 = performance.now();
    await rejectsWith(sandbox.call('grow', {}, { timeoutMs: 10_000, traceId: 't' }), 'PLINTH_ERR_OUT_OF_MEMORY');
    assert.ok(performance.now() - t0 < 10_000);
    assert.equal((await exited).reason, 'out-of-memory');
    await rejectsWith(call(sandbox, 'loop'), 'PLINTH_ERR_SANDBOX_CRASHED');
    assert.ok(await call(bystander, 'echo'), 'the other isolate in the process is untouched');
  });

  for (const [stage, input] of [
    ['rab', { maxMb: 3072 }],
    ['wasm', { maxPages: 49152 }],
  ] as const) {
    it(`${stage} growth outside memoryLimit is stopped by the RSS watchdog (OUT_OF_MEMORY) and the host stays small`, async () => {
      const proc = new IsolateProcess({ rssLimitMb: 384, rssIntervalMs: 50 });
      const bystander = (await started(await fixture('probe'), { process: proc })).sandbox;
      const { sandbox } = await started(await fixture('hostile'), { process: proc });
      const pid = proc.pid;
      const exits = Promise.all([exitOf(sandbox), exitOf(bystander)]);
      const hostRssBefore = process.memoryUsage.rss();
      const err = await rejectsWith(sandbox.call(stage, input, { timeoutMs: 20_000, traceId: 't' }), 'PLINTH_ERR_OUT_OF_MEMORY');
      assert.match(err.message, /RSS/);
      const [own, other] = await exits;
      assert.equal(own.reason, 'out-of-memory');
      assert.equal(other.reason, 'out-of-memory', 'the whole process went: its other sandboxes report it too');
      assert.ok(process.memoryUsage.rss() - hostRssBefore < 100 * 1024 * 1024, 'the host process did not absorb the growth');
      // A fresh process serves the restarted extension.
      const fresh = (await started(await fixture('probe'), { process: proc })).sandbox;
      assert.ok(await call(fresh, 'echo'));
      assert.notEqual(proc.pid, pid);
      await proc.shutdown();
    });
  }

  it('a huge result string is RESULT_TOO_LARGE (default cap 8 MiB) and the isolate lives on', async () => {
    const { sandbox } = await started(await fixture('hostile'));
    await rejectsWith(call(sandbox, 'huge', { n: 9 * 1024 * 1024 }, 5000), 'PLINTH_ERR_RESULT_TOO_LARGE');
    assert.equal(((await call(sandbox, 'huge', { n: 10 }, 5000)) as string).length, 10);
  });

  it('an input larger than a sandbox process accepts is RESULT_TOO_LARGE before it is sent, and the isolate lives on', async () => {
    const { sandbox } = await started(await fixture('probe'));
    const pid = sandbox.process.pid;
    const err = await rejectsWith(call(sandbox, 'echo', { blob: 'x'.repeat(17 * 1024 * 1024) }, 5000), 'PLINTH_ERR_RESULT_TOO_LARGE');
    assert.match(err.message, /the input is \d+ characters of JSON/);
    assert.ok(await call(sandbox, 'echo', { small: true }));
    assert.equal(sandbox.process.pid, pid, 'the sandbox process was not touched');
  });

  it('reports idle memory per isolate in the shared process', async () => {
    const proc = new IsolateProcess();
    const one = (await started(await fixture('probe'), { process: proc })).sandbox;
    const s1 = await proc.stats();
    for (let i = 0; i < 4; i++) await started(await fixture('probe'), { process: proc });
    const s5 = await proc.stats();
    assert.ok(s1 && s5);
    assert.equal(s5.isolates.length, 5);
    const perIsolateMb = (s5.rssBytes - s1.rssBytes) / 4 / 1048576;
    // Measured ≈ 3-6 MB per idle isolate; far below its 32 MB limit.
    assert.ok(perIsolateMb < 32, `${perIsolateMb.toFixed(1)} MB per idle isolate`);
    assert.ok(await call(one, 'echo'));
    await proc.shutdown();
  });
});

describe('memory watchdog without procfs', () => {
  // Regression: where /proc is missing the RSS watchdog silently turned off. It says so, and asks the process.
  it('warns once and still kills a sandbox process past its RSS limit, asking the process over the link', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const proc = new IsolateProcess({ procRoot: '/nonexistent-procfs', rssLimitMb: 384, rssIntervalMs: 50 });
      const { sandbox } = await started(await fixture('hostile'), { process: proc });
      const exited = exitOf(sandbox);
      const err = await rejectsWith(sandbox.call('rab', { maxMb: 3072 }, { timeoutMs: 20_000, traceId: 't' }), 'PLINTH_ERR_OUT_OF_MEMORY');
      assert.match(err.message, /RSS/);
      assert.equal((await exited).reason, 'out-of-memory');
      await new Promise((resolve) => setImmediate(resolve)); // 'warning' is emitted on a later tick
      const ours = warnings.filter((w) => (w as Error & { code?: string }).code === 'PLINTH_NO_PROCFS');
      assert.equal(ours.length, 1);
      assert.match(ours[0]!.message, /no procfs at \/nonexistent-procfs/);
      await proc.shutdown();
    } finally {
      process.off('warning', onWarning);
    }
  });
});
