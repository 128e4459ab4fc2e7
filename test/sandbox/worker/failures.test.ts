// Failure containment of the worker runtime (DESIGN.md §4): every way an extension can fail ends in a precise
// code within a bound; a thread-killing failure ends that sandbox (onExit with its reason, later calls
// SANDBOX_CRASHED); and a second, healthy extension sandbox keeps serving throughout — it is called before,
// during (while the failing call is in flight) and after each failure, and pinged in the background all along.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { PlinthError } from '../../../src/errors.ts';
import type { SandboxExit } from '../../../src/sandbox/types.ts';
import { harness, lineOf, opts, within, WORKER_FIXTURES, type Harness } from './harness.ts';
import { rejectsWith, waitFor } from '../../helpers.ts';

const FAILING = path.join(WORKER_FIXTURES, 'failing');
const FAILING_MAIN = path.join(FAILING, 'index.js');

describe('worker runtime: failure containment', () => {
  let neighbour: Harness;
  let pinger: NodeJS.Timeout | undefined;
  let pings = 0;
  const pingFailures: unknown[] = [];

  /** A call to the healthy neighbour: must answer promptly whatever the failing sandbox is doing. */
  const neighbourServes = async (label: string) => {
    const r = (await within(neighbour.sandbox.call('echo', { label }, opts(2_000)), 2_000, `neighbour echo (${label})`)) as { input: { label: string } };
    assert.equal(r.input.label, label);
  };

  before(async () => {
    neighbour = await harness(path.join(WORKER_FIXTURES, 'healthy'));
    await within(neighbour.sandbox.start(), 10_000, 'neighbour start');
    pinger = setInterval(() => {
      neighbour.sandbox.call('echo', { ping: pings }, opts(2_000)).then(
        () => pings++,
        (err: unknown) => pingFailures.push(err),
      );
    }, 50);
  });

  after(async () => {
    clearInterval(pinger);
    await neighbourServes('the end');
    assert.deepEqual(pingFailures, [], 'the neighbour failed a background call');
    assert.ok(pings >= 20, `the neighbour answered only ${pings} background pings`);
    assert.deepEqual(neighbour.exits, [], 'the neighbour sandbox must never exit');
    await neighbour.sandbox.stop(2_000);
  });

  async function failing(config: Record<string, boolean> = {}): Promise<Harness> {
    const h = await harness(FAILING, { config });
    await within(h.sandbox.start(), 10_000, 'failing start');
    return h;
  }

  /** Runs a thread-killing failure and checks everything that must follow it. */
  async function crashes(stage: string, timeoutMs: number, code: string, reason: SandboxExit['reason'], bound: number): Promise<{ err: PlinthError; exit: SandboxExit; h: Harness }> {
    const h = await failing();
    await neighbourServes(`before ${stage}`);
    const began = performance.now();
    const call = rejectsWith(h.sandbox.call(stage, null, opts(timeoutMs)), code);
    await neighbourServes(`during ${stage}`);
    const err = await within(call, bound, `${stage} rejects`);
    const exit = await within(h.exited, bound + 2_000, `${stage} onExit`);
    const took = performance.now() - began;
    assert.equal(exit.reason, reason);
    assert.ok(took < bound + 2_000, `${stage} took ${Math.round(took)} ms`);
    assert.equal(err.extension, 'failing-ext');
    await neighbourServes(`after ${stage}`);
    // Dead: further calls fail fast, and onExit fired exactly once.
    await within(rejectsWith(h.sandbox.call('throws', null, opts()), 'PLINTH_ERR_SANDBOX_CRASHED'), 1_000, 'call after crash');
    await within(rejectsWith(h.sandbox.health(500), 'PLINTH_ERR_SANDBOX_CRASHED'), 1_000, 'health after crash');
    await within(h.sandbox.stop(1_000), 3_000, 'stop after crash');
    // Once stopped (every timer of the sandbox settled), onExit has fired exactly once.
    assert.equal(h.exits.length, 1);
    return { err, exit, h };
  }

  it("a stage that throws: STAGE_FAILED with the extension's stack (file and line); the sandbox lives on", async () => {
    const h = await failing();
    try {
      const err = await within(rejectsWith(h.sandbox.call('throws', { what: 'on purpose' }, opts()), 'PLINTH_ERR_STAGE_FAILED'), 5_000, 'throws');
      assert.match(err.message, /fixture failure: on purpose/);
      const line = await lineOf(FAILING_MAIN, '// THROW_LINE');
      assert.match(err.extensionStack ?? '', new RegExp(`sandbox-worker/failing/index\\.js:${line}:\\d+`));
      assert.doesNotMatch(err.extensionStack ?? '', /src\/sandbox\/worker\/index\.ts/, 'the stack is the extension side, not the host');
      assert.equal(await h.sandbox.health(1_000), true);
      await neighbourServes('after throws');
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('deep recursion: STAGE_FAILED with the RangeError and its stack; the sandbox lives on', async () => {
    const h = await failing();
    try {
      const err = await within(rejectsWith(h.sandbox.call('recursion', null, opts()), 'PLINTH_ERR_STAGE_FAILED'), 5_000, 'recursion');
      assert.match(err.message, /RangeError: Maximum call stack size exceeded/);
      assert.match(err.extensionStack ?? '', /sandbox-worker\/failing\/index\.js:\d+/);
      assert.equal(await h.sandbox.health(1_000), true);
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('a synchronous endless loop: STAGE_TIMEOUT at the deadline, then the thread is killed', async () => {
    const { err, exit } = await crashes('runaway', 300, 'PLINTH_ERR_STAGE_TIMEOUT', 'killed', 3_000);
    assert.match(err.message, /300 ms/);
    assert.match(exit.detail, /runaway/);
  });

  it('an endless microtask loop (the event loop never turns): STAGE_TIMEOUT, then killed', async () => {
    await crashes('microtasks', 300, 'PLINTH_ERR_STAGE_TIMEOUT', 'killed', 3_000);
  });

  it('async code that ignores ctx.signal is really stopped: its ctx calls end with the thread', async () => {
    const { h } = await crashes('ignores_signal', 300, 'PLINTH_ERR_STAGE_TIMEOUT', 'killed', 3_000);
    const logged = h.logs.length;
    assert.ok(logged > 3, `the runaway logged ${logged} lines before it was stopped`);
    // It logged every 20 ms while alive: let the host's event loop serve five more background pings (≥ 250 ms of
    // turns, however loaded the machine) and not one more line may have arrived.
    const seen = pings;
    await waitFor(() => pings >= seen + 5, 'five more neighbour pings', 10_000);
    assert.equal(h.logs.length, logged, 'the runaway code kept running after it was killed');
  });

  it('a stage that honours ctx.signal at its deadline: STAGE_TIMEOUT, and the sandbox is not killed', async () => {
    // One slot: the next call is dispatched only once the thread itself reported the timed-out call finished, which
    // is what calls off its kill (no timer needed to prove that nothing happens later).
    const h = await harness(FAILING, { limits: { concurrency: 1 } });
    await within(h.sandbox.start(), 10_000, 'failing start');
    try {
      await within(rejectsWith(h.sandbox.call('honours_signal', null, opts(300)), 'PLINTH_ERR_STAGE_TIMEOUT'), 3_000, 'honours_signal');
      await within(rejectsWith(h.sandbox.call('throws', { what: 'next' }, opts()), 'PLINTH_ERR_STAGE_FAILED'), 3_000, 'the next call on the one slot');
      assert.deepEqual(h.exits, []);
      assert.deepEqual(h.logs.map((l) => l.fields), [{ code: 'PLINTH_ERR_STAGE_TIMEOUT' }]);
      assert.equal(await h.sandbox.health(1_000), true);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('out of memory (resourceLimits): OUT_OF_MEMORY and onExit out-of-memory', async () => {
    const { err, exit } = await crashes('oom', 20_000, 'PLINTH_ERR_OUT_OF_MEMORY', 'out-of-memory', 15_000);
    assert.match(err.message, /48 MB/);
    assert.match(exit.detail, /memory limit/);
  });

  it('process.exit() in a stage: SANDBOX_CRASHED and onExit crashed', async () => {
    const { exit } = await crashes('exit', 5_000, 'PLINTH_ERR_SANDBOX_CRASHED', 'crashed', 3_000);
    assert.match(exit.detail, /exit/);
  });

  it('an uncaught exception in a timer between calls: onExit crashed naming the file and line', async () => {
    const h = await failing();
    assert.equal(await h.sandbox.call('timer_throw', null, opts()), 'scheduled');
    await neighbourServes('during timer_throw');
    const exit = await within(h.exited, 3_000, 'onExit after a timer threw');
    assert.equal(exit.reason, 'crashed');
    const line = await lineOf(FAILING_MAIN, '// TIMER_LINE');
    assert.match(exit.detail, new RegExp(`thrown from a timer.*failing/index\\.js:${line}`));
    await rejectsWith(h.sandbox.call('throws', null, opts()), 'PLINTH_ERR_SANDBOX_CRASHED');
    await neighbourServes('after timer_throw');
    await h.sandbox.stop(1_000);
  });

  it('an uncaught exception while a call is in flight: that call fails SANDBOX_CRASHED with the thrown stack', async () => {
    const h = await failing();
    const inFlight = rejectsWith(h.sandbox.call('honours_signal', null, opts(5_000)), 'PLINTH_ERR_SANDBOX_CRASHED');
    assert.equal(await h.sandbox.call('timer_throw', null, opts()), 'scheduled');
    const err = await within(inFlight, 3_000, 'in-flight call');
    const line = await lineOf(FAILING_MAIN, '// TIMER_LINE');
    assert.match(err.extensionStack ?? '', new RegExp(`failing/index\\.js:${line}`));
    assert.equal((await within(h.exited, 3_000, 'onExit')).reason, 'crashed');
    await h.sandbox.stop(1_000);
  });

  it('a crash rejects every other pending call (running and queued) with a clear code', async () => {
    const h = await failing(); // concurrency 2: one runaway, one polite call running, two queued
    const runaway = rejectsWith(h.sandbox.call('runaway', null, opts(300)), 'PLINTH_ERR_STAGE_TIMEOUT');
    const running = rejectsWith(h.sandbox.call('honours_signal', null, opts(10_000)), 'PLINTH_ERR_SANDBOX_CRASHED');
    const queued = [1, 2].map(() => rejectsWith(h.sandbox.call('throws', null, opts(10_000)), 'PLINTH_ERR_SANDBOX_CRASHED'));
    await within(runaway, 3_000, 'runaway');
    const [runningErr, ...queuedErrs] = await within(Promise.all([running, ...queued]), 3_000, 'the others');
    assert.match(runningErr.message, /runaway/);
    for (const e of queuedErrs) assert.match(e.message, /was not run/);
    assert.equal((await within(h.exited, 3_000, 'onExit')).reason, 'killed');
    assert.equal(h.exits.length, 1);
    await h.sandbox.stop(1_000);
  });
});
