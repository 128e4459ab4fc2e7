import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Bulkhead, Budget, backoffDelay } from '../../src/resilience/index.ts';
import { rejectsWith } from '../helpers.ts';

describe('bulkhead', () => {
  it('runs at most `limit` at once and queues the rest in FIFO order', async () => {
    // Each task holds its slot until the test releases it: no timing, the order is the test's.
    const b = new Bulkhead(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const gates = [0, 1, 2, 3, 4].map(() => Promise.withResolvers<void>());
    const started: number[] = [];
    const task = (i: number) => async () => {
      running++;
      started.push(i);
      peak = Math.max(peak, running);
      await gates[i]!.promise;
      running--;
      order.push(i);
      return i;
    };
    const all = Promise.all([0, 1, 2, 3, 4].map((i) => b.run(task(i))));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(started, [0, 1], 'two run, three wait');
    assert.equal(b.queued, 3);
    for (const i of [1, 0, 2, 3, 4]) {
      gates[i]!.resolve();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(await all, [0, 1, 2, 3, 4]);
    assert.equal(peak, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4], 'queued calls start in FIFO order');
    assert.deepEqual(order, [1, 0, 2, 3, 4]);
  });

  it('a wait bounded by a deadline (WaitBound) leaves the queue at its deadline with timedOut(), or on its caller\'s abort with the reason; the next waiter still gets the slot', async () => {
    const b = new Bulkhead(1);
    const gate = Promise.withResolvers<void>();
    const holder = b.run(() => gate.promise);
    const timedOut = new Error('slot wait timed out');
    const ran: string[] = [];
    const late = b.run(() => Promise.resolve(void ran.push('late')), { deadline: Date.now() + 30, timedOut: () => timedOut });
    const controller = new AbortController();
    const cancelled = b.run(() => Promise.resolve(void ran.push('cancelled')), { deadline: Date.now() + 60_000, signal: controller.signal, timedOut: () => new Error('not this') });
    const next = b.run(() => Promise.resolve(void ran.push('next')), { deadline: Date.now() + 60_000, timedOut: () => new Error('not this either') });
    assert.equal(b.queued, 3);
    assert.equal(await late.catch((e: unknown) => e), timedOut, 'rejected with timedOut() at the deadline');
    const reason = new Error('caller gave up');
    controller.abort(reason);
    assert.equal(await cancelled.catch((e: unknown) => e), reason);
    assert.equal(b.queued, 1, 'both left the queue');
    gate.resolve();
    await holder;
    await next;
    assert.deepEqual(ran, ['next']);
    assert.equal(b.active, 0);
  });

  it('a queued call whose signal aborts leaves the queue without running', async () => {
    const b = new Bulkhead(1);
    const gate = Promise.withResolvers<void>();
    const blocker = b.run(() => gate.promise);
    const controller = new AbortController();
    let ran = false;
    const queued = b.run(() => { ran = true; return Promise.resolve(); }, controller.signal);
    assert.equal(b.queued, 1);
    controller.abort(new Error('deadline'));
    await assert.rejects(queued, /deadline/);
    assert.equal(b.queued, 0);
    gate.resolve();
    await blocker;
    assert.equal(ran, false);
  });
});

describe('budget', () => {
  it('reserves declared limits and refuses what does not fit with PLINTH_ERR_BUDGET_EXCEEDED', async () => {
    const budget = new Budget({ memoryMb: 256, concurrency: 10 });
    budget.reserve('a#1', 'a', { memoryMb: 128, concurrency: 4 });
    budget.reserve('b#1', 'b', { memoryMb: 64, concurrency: 4 });
    const err = await rejectsWith(Promise.resolve().then(() => budget.reserve('c#1', 'c', { memoryMb: 128, concurrency: 1 })), 'PLINTH_ERR_BUDGET_EXCEEDED');
    assert.equal(err.extension, 'c');
    assert.match(err.message, /needs 128 MB, 64 MB of 256 MB left/);
    assert.deepEqual(budget.used, { memoryMb: 192, concurrency: 8 }, 'a refused reservation holds nothing');
    budget.release('a#1');
    budget.reserve('c#1', 'c', { memoryMb: 128, concurrency: 1 });
  });
});

describe('backoff', () => {
  it('grows exponentially with jitter and is capped', () => {
    const s = { baseMs: 100, maxMs: 5000 };
    assert.equal(backoffDelay(0, s, () => 0), 50);
    assert.equal(backoffDelay(0, s, () => 1), 100);
    assert.equal(backoffDelay(3, s, () => 1), 800);
    assert.equal(backoffDelay(20, s, () => 1), 5000);
    assert.equal(backoffDelay(1000, s, () => 0.5), 3750);
  });
});

describe('bulkhead handoff', () => {
  // Regression (seen): with limit 1, a caller arriving between a release and the queued waiter's wake-up ran as a
  // second concurrent call. Peak concurrency under a burst stays at the limit, and order is FIFO.
  it('never exceeds its limit when callers arrive right as a slot is released', async () => {
    for (const limit of [1, 3]) {
      const b = new Bulkhead(limit);
      let running = 0;
      let peak = 0;
      const order: number[] = [];
      const task = (i: number) => async () => {
        running++;
        peak = Math.max(peak, running);
        await Promise.resolve();
        running--;
        order.push(i);
      };
      const calls: Array<Promise<void>> = [];
      for (let i = 0; i < 50; i++) {
        calls.push(b.run(task(i)));
        // Newcomers land exactly when earlier calls finish and release their slots.
        if (i % 5 === 4) await Promise.resolve();
      }
      await Promise.all(calls);
      assert.equal(peak, limit, `limit ${limit}`);
      if (limit === 1) assert.deepEqual(order, [...Array(50).keys()]);
      assert.equal(b.active, 0);
      assert.equal(b.queued, 0);
    }
  });
});
