// Calls travel over each thread's own MessagePort (issue 14), not as piscina tasks: they go to the least busy
// thread, at most limits.concurrency per thread; a thread's death (seen on its exit, not on a task) still names
// the call that was running on it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { harness, opts, within, WORKER_FIXTURES } from './harness.ts';
import { rejectsWith, waitFor } from '../../helpers.ts';

const fixture = (name: string) => path.join(WORKER_FIXTURES, name);

describe('worker runtime: calls over the thread ports', () => {
  it('spreads calls over the threads, least busy first, at most limits.concurrency on each', async () => {
    const h = await harness(fixture('healthy'), { threads: 2, limits: { concurrency: 2 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const results = (await within(Promise.all([1, 2, 3, 4].map(() => h.sandbox.call('sleep', { ms: 150 }, opts()))), 5_000, 'sleeps')) as Array<{ threadId: number; began: number }>;
      const perThread = new Map<number, number>();
      for (const r of results) perThread.set(r.threadId, (perThread.get(r.threadId) ?? 0) + 1);
      assert.deepEqual([...perThread.values()], [2, 2], 'two calls on each of the two threads');
      // A fifth call finds both threads full and waits for a free slot: it starts only after one of them ended.
      const sleeps = [1, 2, 3, 4].map(() => h.sandbox.call('sleep', { ms: 200 }, opts()));
      const fifth = (await within(h.sandbox.call('sleep', { ms: 1 }, opts()), 5_000, 'fifth')) as { began: number };
      const four = (await within(Promise.all(sleeps), 5_000, 'sleeps')) as Array<{ began: number; slept: number }>;
      const firstEnd = Math.min(...four.map((r) => r.began + r.slept));
      assert.ok(fifth.began >= firstEnd, `the fifth began ${firstEnd - fifth.began} ms before any slot was free`);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('a thread that exits during the only call names that call, not "which was running on it"', async () => {
    const h = await harness(fixture('failing'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const err = await within(rejectsWith(h.sandbox.call('exit', null, opts()), 'PLINTH_ERR_SANDBOX_CRASHED'), 5_000, 'exit');
      assert.match(err.message, /\(during stage "exit"\)/);
      assert.doesNotMatch(err.message, /which was running on it/);
      assert.equal((await within(h.exited, 3_000, 'onExit')).reason, 'crashed');
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it("a second port hello from the extension's own code never takes a call", async () => {
    const h = await harness(fixture('fake-hello'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const results = await within(Promise.all([1, 2, 3, 4].map((n) => h.sandbox.call('real', { n }, opts()))), 5_000, 'calls');
      assert.deepEqual(results, [1, 2, 3, 4].map((n) => ({ real: true, n })));
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('calls made in one tick travel to the thread together and each gets its own answer; an abort in the same tick never overtakes its call', async () => {
    const h = await harness(fixture('healthy'), { limits: { concurrency: 8 } });
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const answers = (await within(Promise.all([1, 2, 3, 4, 5, 6].map((n) => h.sandbox.call('echo', n, opts()))), 5_000, 'echoes')) as Array<{ input: number }>;
      assert.deepEqual(answers.map((a) => a.input), [1, 2, 3, 4, 5, 6]);
      // Dispatched and cancelled in the same tick: the call is still in the tick's outbox when the abort is sent.
      const controller = new AbortController();
      const call = rejectsWith(h.sandbox.call('sleep', { ms: 3_000, announce: true }, opts(5_000, { signal: controller.signal })), 'PLINTH_ERR_CANCELLED');
      controller.abort();
      await within(call, 1_000, 'cancelled call');
      // The stage ran and then saw its ctx.signal abort (an abort that arrived first would have been dropped and
      // the stage would sleep its 3 s through).
      await waitFor(() => h.logs.some((l) => l.message === 'sleep aborted'), 'the stage to see ctx.signal abort', 2_000);
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });
});
