// The worker runtime's lifecycle and call contract: loading (and failing to), stages, results crossing the
// boundary, concurrency on one thread, queueing, cancellation, health, stop, threads, and process exit.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { harness, lineOf, opts, within, WORKER_FIXTURES } from './harness.ts';
import { rejectsWith, waitFor } from '../../helpers.ts';
import { PlinthError } from '../../../src/errors.ts';
import type { Json } from '../../../src/sdk/index.ts';

const fixture = (name: string) => path.join(WORKER_FIXTURES, name);

describe('worker runtime: loading', () => {
  for (const [mode, marker, pattern] of [
    ['initialize', '// INIT_LINE', /initialize\(\) threw: Error: fixture failure in initialize/],
    ['start', '// START_LINE', /start\(\) threw: TypeError: fixture failure in start/],
  ] as const) {
    it(`${mode}() throwing rejects start() with EXTENSION_LOAD_FAILED and the extension's stack`, async () => {
      // The fixture's 1.5 s load bound is for the hang test; a thread starting on a loaded machine may take longer.
      const h = await harness(fixture('load-fail'), { config: { failIn: mode }, limits: { startTimeoutMs: 15_000 } });
      const err = await within(rejectsWith(h.sandbox.start(), 'PLINTH_ERR_EXTENSION_LOAD_FAILED'), 20_000, 'start');
      assert.match(err.message, pattern);
      const line = await lineOf(path.join(fixture('load-fail'), 'index.js'), marker);
      assert.match(err.extensionStack ?? '', new RegExp(`sandbox-worker/load-fail/index\\.js:${line}:\\d+`));
      await rejectsWith(h.sandbox.call('never', null, opts()), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
      await within(h.sandbox.stop(1_000), 3_000, 'stop');
      assert.deepEqual(h.exits, [], 'a failed start is reported by start(), not onExit');
    });
  }

  it('initialize() that never finishes: EXTENSION_LOAD_FAILED at limits.startTimeoutMs (callTimeoutMs when unset)', async () => {
    const h = await harness(fixture('load-fail'), { config: { failIn: 'hang' } }); // callTimeoutMs 1500
    const began = performance.now();
    const err = await within(rejectsWith(h.sandbox.start(), 'PLINTH_ERR_EXTENSION_LOAD_FAILED'), 5_000, 'start');
    assert.ok(performance.now() - began >= 1_400);
    assert.match(err.message, /1500 ms/);
    await h.sandbox.stop(1_000);
  });

  it('process.exit() in initialize(): EXTENSION_LOAD_FAILED', async () => {
    const h = await harness(fixture('load-fail'), { config: { failIn: 'exit' } });
    const err = await within(rejectsWith(h.sandbox.start(), 'PLINTH_ERR_EXTENSION_LOAD_FAILED'), 10_000, 'start');
    assert.match(err.message, /exited with code: 3/);
    assert.equal(err.extensionStack, undefined, "piscina's exit error is not the extension's stack");
    await h.sandbox.stop(1_000);
  });

  it('a module that imports a missing file, or throws while evaluated: EXTENSION_LOAD_FAILED naming it', async () => {
    const missing = await harness(fixture('missing-import'));
    const e1 = await within(rejectsWith(missing.sandbox.start(), 'PLINTH_ERR_EXTENSION_LOAD_FAILED'), 10_000, 'missing-import');
    assert.match(e1.message, /does-not-exist\.js/);
    assert.equal(e1.file, missing.spec.mainPath);
    const throwing = await harness(fixture('throws-at-import'));
    const e2 = await within(rejectsWith(throwing.sandbox.start(), 'PLINTH_ERR_EXTENSION_LOAD_FAILED'), 10_000, 'throws-at-import');
    assert.match(e2.message, /SyntaxError/);
    assert.match(e2.extensionStack ?? '', /sandbox-worker\/throws-at-import\/index\.js:2:/);
    await Promise.all([missing.sandbox.stop(1_000), throwing.sandbox.stop(1_000)]);
  });

  it('stop() while initialize() is still running: start() rejects SHUTDOWN, stop() resolves', async () => {
    const h = await harness(fixture('load-fail'), { config: { failIn: 'hang' } });
    const starting = rejectsWith(h.sandbox.start(), 'PLINTH_ERR_SHUTDOWN');
    await waitFor(() => h.logs.some((l) => l.message === 'start() is hanging'), 'start() to be running', 10_000);
    await within(h.sandbox.stop(200), 3_000, 'stop');
    await within(starting, 1_000, 'start');
    assert.deepEqual(h.exits, []);
  });

  it('is not usable before start(), and start() twice is one start', async () => {
    const h = await harness(fixture('healthy'));
    await rejectsWith(h.sandbox.call('echo', 1, opts()), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
    await rejectsWith(h.sandbox.health(500), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
    const a = h.sandbox.start();
    assert.equal(h.sandbox.start(), a);
    await within(a, 10_000, 'start');
    assert.equal(h.sandbox.runtime, 'worker');
    await h.sandbox.stop(1_000);
  });
});

describe('worker runtime: calls', () => {
  it('hands the stage a frozen ctx with extension, stage, runId, traceId and signal', async () => {
    const h = await harness(fixture('healthy'), { config: { greeting: 'hi' } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      assert.deepEqual(await h.sandbox.call('describe_ctx', null, opts(5_000, { runId: 'run-7' })), {
        extension: { id: 'healthy-ext', version: '1.2.3' },
        stage: 'describe_ctx',
        runId: 'run-7',
        traceId: 'trace-test',
        signalAborted: false,
        frozen: true,
        mutated: false,
      });
      assert.deepEqual(h.logs, [{ level: 'info', message: 'describing', fields: { stage: 'describe_ctx' } }]);
      const echoed = (await h.sandbox.call('echo', { a: [1, 'two', null] }, opts())) as { input: Json; config: Json };
      assert.deepEqual(echoed.input, { a: [1, 'two', null] });
      assert.deepEqual(echoed.config, { greeting: 'hi' });
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('unknown stages: not declared, or declared but not exported → STAGE_UNKNOWN', async () => {
    const h = await harness(fixture('failing'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      await rejectsWith(h.sandbox.call('nope', null, opts()), 'PLINTH_ERR_STAGE_UNKNOWN');
      const err = await rejectsWith(h.sandbox.call('ghost', null, opts()), 'PLINTH_ERR_STAGE_UNKNOWN');
      assert.match(err.message, /ghost/);
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('results: over 8 MiB → RESULT_TOO_LARGE, a function in it → STAGE_OUTPUT_INVALID, a function in the input → STAGE_INPUT_INVALID', async () => {
    const h = await harness(fixture('failing'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const big = await within(rejectsWith(h.sandbox.call('too_large', null, opts()), 'PLINTH_ERR_RESULT_TOO_LARGE'), 5_000, 'too_large');
      assert.match(big.message, /8388608/);
      const fn = await rejectsWith(h.sandbox.call('not_json', null, opts()), 'PLINTH_ERR_STAGE_OUTPUT_INVALID');
      assert.match(fn.message, /"callback" is a function/);
      await rejectsWith(h.sandbox.call('throws', { f: () => 1 } as unknown as Json, opts()), 'PLINTH_ERR_STAGE_INPUT_INVALID');
      assert.equal(await h.sandbox.health(1_000), true);
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('with concurrency 4, four async stages overlap on one thread', async () => {
    const h = await harness(fixture('healthy')); // limits.concurrency 4, one thread
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const results = (await within(Promise.all([1, 2, 3, 4].map(() => h.sandbox.call('sleep', { ms: 200 }, opts()))), 5_000, 'sleeps')) as Array<{ threadId: number; began: number; slept: number }>;
      // Overlap by the stages' own clocks (not the wall time of the batch, which a loaded machine stretches):
      // every sleep began before the first one ended.
      const lastBegan = Math.max(...results.map((r) => r.began));
      const firstEnd = Math.min(...results.map((r) => r.began + r.slept));
      assert.ok(lastBegan < firstEnd, `a sleep began ${lastBegan - firstEnd} ms after another had ended: they did not overlap`);
      assert.equal(new Set(results.map((r) => r.threadId)).size, 1, 'all on one thread');
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('with concurrency 1, calls queue in order; a call whose deadline passes while queued times out without killing anything', async () => {
    const h = await harness(fixture('healthy'), { limits: { concurrency: 1 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const began = performance.now();
      const first = h.sandbox.call('sleep', { ms: 300 }, opts());
      const starved = rejectsWith(h.sandbox.call('sleep', { ms: 10 }, opts(100)), 'PLINTH_ERR_STAGE_TIMEOUT');
      const second = h.sandbox.call('sleep', { ms: 300 }, opts());
      const err = await within(starved, 2_000, 'queued call');
      assert.match(err.message, /waiting for a free slot/);
      const [a, b] = (await within(Promise.all([first, second]), 5_000, 'sleeps')) as Array<{ began: number }>;
      assert.ok(b!.began >= a!.began + 290, 'the second call started only after the first finished');
      assert.ok(performance.now() - began >= 590);
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('a cancelled call rejects at once and its stage sees ctx.signal abort; the sandbox lives on', async () => {
    const h = await harness(fixture('healthy'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const controller = new AbortController();
      const began = performance.now();
      const call = rejectsWith(h.sandbox.call('sleep', { ms: 3_000, announce: true }, opts(5_000, { signal: controller.signal })), 'PLINTH_ERR_CANCELLED');
      await waitFor(() => h.logs.some((l) => l.message === 'sleeping'), 'the stage to be running', 5_000);
      controller.abort();
      await within(call, 1_000, 'cancelled call');
      assert.ok(performance.now() - began < 3_000, 'the call did not wait for its 3 s sleep');
      // The stage itself saw the abort (its thread lives on, nothing was killed).
      await waitFor(() => h.logs.some((l) => l.message === 'sleep aborted'), 'the stage to see ctx.signal abort', 5_000);
      // A reason that is already a PlinthError is passed through as is.
      const mine = new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', 'the pipeline run timed out');
      assert.equal(await h.sandbox.call('sleep', { ms: 10 }, opts(5_000, { signal: AbortSignal.abort(mine) })).catch((e: unknown) => e), mine);
      // The one thread (concurrency 1) still serves a call after both cancellations: it was not killed.
      assert.equal(((await h.sandbox.call('echo', 1, opts())) as { input: number }).input, 1);
      assert.deepEqual(h.exits, []);
      assert.deepEqual(await h.sandbox.health(1_000), { healthy: true, detail: 'calls=1' }, 'module state survived: same thread');
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('with two threads there are two module instances, each initialised and started', async () => {
    const h = await harness(fixture('healthy'), { threads: 2, limits: { concurrency: 1 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const results = (await within(Promise.all([1, 2].map(() => h.sandbox.call('sleep', { ms: 200 }, opts()))), 5_000, 'sleeps')) as Array<{ threadId: number }>;
      assert.equal(new Set(results.map((r) => r.threadId)).size, 2);
      const echoes = (await Promise.all([1, 2].map(() => h.sandbox.call('echo', null, opts())))) as Array<{ calls: number }>;
      assert.deepEqual(
        echoes.map((e) => e.calls),
        [1, 1],
        'module state is per thread',
      );
    } finally {
      await h.sandbox.stop(1_000);
    }
  });
});

describe('worker runtime: health and stop', () => {
  it('health(): healthCheck() result, true without one, a timeout when the thread does not answer', async () => {
    const sick = await harness(fixture('failing'), { config: { unhealthy: true } });
    const plain = await harness(fixture('grants')); // no healthCheck()
    await within(Promise.all([sick.sandbox.start(), plain.sandbox.start()]), 10_000, 'start');
    try {
      assert.deepEqual(await sick.sandbox.health(1_000), { healthy: false, detail: 'told to be unhealthy' });
      assert.equal(await plain.sandbox.health(1_000), true);
      // A thread stuck in a loop cannot answer its probe.
      const stuck = sick.sandbox.call('runaway', { announce: true }, opts(1_000)).catch(() => undefined);
      await waitFor(() => sick.logs.some((l) => l.message === 'looping'), 'the loop to begin', 5_000);
      await within(rejectsWith(sick.sandbox.health(200), 'PLINTH_ERR_STAGE_TIMEOUT'), 1_000, 'health of a stuck thread');
      await within(stuck, 5_000, 'runaway ends');
    } finally {
      await Promise.all([sick.sandbox.stop(1_000), plain.sandbox.stop(1_000)]);
    }
  });

  it('stop() with a stop() that never finishes returns within its bound and never rejects', async () => {
    const h = await harness(fixture('failing'), { config: { hangStop: true } });
    await within(h.sandbox.start(), 10_000, 'start');
    const running = rejectsWith(h.sandbox.call('honours_signal', null, opts(10_000)), 'PLINTH_ERR_SHUTDOWN');
    const began = performance.now();
    await within(h.sandbox.stop(300), 3_000, 'stop');
    const took = performance.now() - began;
    assert.ok(took >= 280 && took < 2_500, `stop took ${Math.round(took)} ms`);
    await within(running, 1_000, 'the call in flight');
    await rejectsWith(h.sandbox.call('throws', null, opts()), 'PLINTH_ERR_SHUTDOWN');
    await rejectsWith(h.sandbox.health(500), 'PLINTH_ERR_SHUTDOWN');
    await within(h.sandbox.stop(300), 1_000, 'second stop');
    assert.deepEqual(h.exits, [], 'stop() is not an exit on its own');
  });

  it('stop() of a sandbox never started, or already crashed, resolves', async () => {
    const h = await harness(fixture('healthy'));
    await within(h.sandbox.stop(100), 1_000, 'stop before start');
    await rejectsWith(h.sandbox.start(), 'PLINTH_ERR_SHUTDOWN');
  });

  for (const [mode, name, expected] of [
    ['stop', 'healthy', /done/],
    ['idle', 'healthy', /done/],
    ['crash', 'failing', /exit crashed[\s\S]*PLINTH_ERR_SANDBOX_CRASHED[\s\S]*done/],
  ] as const) {
    it(`nothing keeps the host process alive (${mode})`, async () => {
      const child = path.join(import.meta.dirname, 'exit-check.child.ts');
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [child, mode, fixture(name)], { timeout: 15_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
      assert.equal(code, 0, `the child did not exit by itself: ${stderr}`);
      assert.match(stdout, expected);
    });
  }
});

describe('health probes', () => {
  // Regression (seen): a hung healthCheck() was never cancelled; two hung probes took the thread's slots and a stage
  // call then waited behind them until it was killed with a message blaming the stage.
  it('a hung healthCheck() is cancelled at its timeout and never takes a stage call\'s slot', async () => {
    const h = await harness(fixture('healthy'), { config: { hangHealth: 'async' }, limits: { concurrency: 1 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      for (let i = 0; i < 3; i++) {
        const err = await rejectsWith(h.sandbox.health(100), 'PLINTH_ERR_STAGE_TIMEOUT');
        assert.match(err.message, /healthCheck\(\) did not answer within 100 ms/);
      }
      const out = (await within(h.sandbox.call('echo', 'after probes', opts(3_000)), 3_000, 'echo after hung probes')) as { input: string };
      assert.equal(out.input, 'after probes');
      assert.deepEqual(h.exits, [], 'a probe that lets go of its thread ends nothing');
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('probes never overlap: a probe asked for while one runs shares its answer', async () => {
    const h = await harness(fixture('healthy'), { config: { hangHealth: 'async' }, limits: { concurrency: 1 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const a = h.sandbox.health(150);
      const b = h.sandbox.health(150);
      const [ea, eb] = await Promise.all([a.catch((e: unknown) => e), b.catch((e: unknown) => e)]);
      assert.equal(ea, eb, 'one probe, one answer');
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('a healthCheck() that blocks its thread ends the sandbox, naming healthCheck()', async () => {
    const h = await harness(fixture('healthy'), { config: { hangHealth: 'sync' }, limits: { concurrency: 1 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      await rejectsWith(h.sandbox.health(100), 'PLINTH_ERR_STAGE_TIMEOUT');
      const exit = await within(h.exited, 5_000, 'exit');
      assert.equal(exit.reason, 'killed');
      assert.match(exit.detail, /healthCheck\(\)/);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });
});
