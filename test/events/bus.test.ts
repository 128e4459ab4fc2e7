import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DurableBus, ManualClock, patternCovers, retryDelay, DEFAULT_RETRY } from '../../src/events/index.ts';
import { openStore } from '../../src/store/index.ts';
import { isPlinthError } from '../../src/errors.ts';
import type { DeliveredEvent } from '../../src/sdk/index.ts';
import { tempDir } from '../helpers.ts';

const noJitter = { jitter: false, baseMs: 100, maxMs: 10_000 };

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

function code(err: unknown, expected: string): boolean {
  assert.ok(isPlinthError(err), String(err));
  assert.equal(err.code, expected);
  return true;
}

async function durableBus(options: ConstructorParameters<typeof DurableBus>[0] = {}) {
  const dir = await tempDir();
  const store = openStore(dir);
  const clock = new ManualClock();
  return { dir, store, clock, bus: new DurableBus({ store, clock, ...options }) };
}

describe('bus: publish', () => {
  it('every event has id, topic, time, source, payload and optional headers; publish resolves once it is in the store', async () => {
    const { bus, store } = await durableBus();
    const seen: DeliveredEvent[] = [];
    bus.subscribe('orders.*', (e) => void seen.push(e), { name: 'orders-listener' });
    const event = await bus.publish('orders.created', { n: 1 }, 'acme.shop', { correlationId: 'c-1', traceId: 't-1' });
    assert.match(event.id, /^[0-9a-f-]{36}$/);
    assert.equal(event.topic, 'orders.created');
    assert.equal(event.source, 'acme.shop');
    assert.deepEqual(event.headers, { correlationId: 'c-1', traceId: 't-1' });
    assert.ok(!Number.isNaN(Date.parse(event.time)));
    assert.deepEqual(store.getEvent(event.id), event, 'in the store when publish resolved');
    await bus.idle();
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.attempt, 1);
    assert.equal(seen[0]!.redelivered, false);
    await bus.close();
    store.close();
  });

  it('a payload over events.maxPayloadBytes is refused with a coded error naming the limit; nothing is stored', async () => {
    const { bus, store } = await durableBus({ maxPayloadBytes: 100 });
    const seen: unknown[] = [];
    bus.subscribe('#', (e) => void seen.push(e), { name: 'all' });
    await assert.rejects(bus.publish('big.one', { text: 'x'.repeat(200) }, 'acme.big'), (err) => {
      code(err, 'PLINTH_ERR_EVENT_TOO_LARGE');
      assert.match((err as Error).message, /events\.maxPayloadBytes/);
      return true;
    });
    await bus.publish('big.one', { text: 'small' });
    await bus.idle();
    assert.equal(seen.length, 1);
    assert.deepEqual([...store.pendingCounts()], []);
    await bus.close();
    store.close();
  });

  it('headers are bounded (at most 32, each at most 1024 bytes with its name, strings only) with PLINTH_ERR_EVENT_HEADERS_INVALID; nothing is stored', async () => {
    const { bus, store } = await durableBus();
    const seen: unknown[] = [];
    bus.subscribe('#', (e) => void seen.push(e), { name: 'all' });
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`h${i}`, 'v']));
    await assert.rejects(bus.publish('a.b', 1, 'x', many), (err) => code(err, 'PLINTH_ERR_EVENT_HEADERS_INVALID'));
    await assert.rejects(bus.publish('a.b', 1, 'x', { traceId: 'x'.repeat(1100) }), (err) => code(err, 'PLINTH_ERR_EVENT_HEADERS_INVALID'));
    await assert.rejects(bus.publish('a.b', 1, 'x', { traceId: 5 as unknown as string }), (err) => code(err, 'PLINTH_ERR_EVENT_HEADERS_INVALID'));
    // A middleware cannot slip past the bounds either.
    const off = bus.use((e, next) => next({ ...e, headers: many }));
    await assert.rejects(bus.publish('a.b', 1), (err) => code(err, 'PLINTH_ERR_EVENT_HEADERS_INVALID'));
    off();
    await bus.publish('a.b', 2, 'x', { traceId: 't' });
    await bus.idle();
    assert.equal(seen.length, 1);
    assert.deepEqual([...store.pendingCounts()], []);
    await bus.close();
    store.close();
  });

  it('the default payload bound is 1 MiB', async () => {
    const bus = new DurableBus();
    await assert.rejects(bus.publish('big.one', 'x'.repeat(1024 * 1024)), (err) => code(err, 'PLINTH_ERR_EVENT_TOO_LARGE'));
    await bus.publish('big.one', 'x'.repeat(1024 * 1024 - 10));
    await bus.close();
  });

  it('middleware (the one shape, event + next) can enrich, transform and reject; not passing an event on rejects it', async () => {
    const { bus, store } = await durableBus();
    const seen: DeliveredEvent[] = [];
    bus.subscribe('#', (e) => void seen.push(e));
    bus.use((e, next) => next({ ...e, headers: { ...e.headers, traceId: 'enriched' } }));
    bus.use(function dropper(e, next) {
      return e.topic === 'drop.me' ? undefined : next(e);
    });
    bus.use((e, next) => {
      if (e.topic === 'reject.me') throw new Error('rejected by policy');
      return next(e.topic === 'rename.me' ? { ...e, topic: 'renamed' } : e);
    });
    const first = await bus.publish('a.b', 1);
    assert.equal(first.headers?.traceId, 'enriched', 'publish resolves with the event as published');
    assert.deepEqual(store.getEvent(first.id), first, 'and it is in the store');
    await assert.rejects(bus.publish('drop.me', 2), (err) => code(err, 'PLINTH_ERR_EVENT_REJECTED') && /dropper/.test((err as Error).message));
    await assert.rejects(bus.publish('reject.me', 3), /rejected by policy/);
    const renamed = await bus.publish('rename.me', 4);
    assert.equal(renamed.topic, 'renamed');
    await bus.idle();
    assert.deepEqual(seen.map((e) => [e.topic, e.headers?.traceId]), [['a.b', 'enriched'], ['renamed', 'enriched']]);
    assert.equal(store.getEvent(renamed.id)?.topic, 'renamed');
    await bus.close();
    store.close();
  });

  it('middleware awaiting next sees the committed event; catching a refused publish cannot turn it into a success', async () => {
    const { bus, store } = await durableBus({ maxPayloadBytes: 50 });
    const committed: boolean[] = [];
    bus.use(async (e, next) => {
      const published = await next(e);
      committed.push(store.getEvent(published.id) !== undefined);
    });
    bus.use(async (e, next) => {
      try {
        await next(e.topic === 'grow.me' ? { ...e, payload: 'x'.repeat(100) } : e);
      } catch {
        // swallowed: the publisher must still hear of it
      }
    });
    await bus.publish('a.b', 1);
    assert.deepEqual(committed, [true]);
    await assert.rejects(bus.publish('grow.me', 1), (err) => code(err, 'PLINTH_ERR_EVENT_TOO_LARGE'));
    const removed = bus.use((_e, next) => next({ ..._e, topic: 'bad..topic' }));
    await assert.rejects(bus.publish('a.b', 2), (err) => code(err, 'PLINTH_ERR_EVENT_REJECTED'));
    removed();
    await bus.publish('a.b', 3);
    await bus.close();
    store.close();
  });

  it('regression: an in-memory listener sees an event only after it is committed (it used to get it before the commit)', async () => {
    const { bus, store } = await durableBus();
    const inStoreWhenSeen: boolean[] = [];
    bus.subscribe('orders.#', (e) => void inStoreWhenSeen.push(store.getEvent(e.id) !== undefined));
    bus.subscribe('orders.#', (e) => void inStoreWhenSeen.push(store.getEvent(e.id) !== undefined), { name: 'durable-one' });
    const pending = bus.publish('orders.created', { n: 1 });
    assert.deepEqual(inStoreWhenSeen, [], 'nobody sees it before the group commit');
    await pending;
    await bus.idle();
    assert.deepEqual(inStoreWhenSeen, [true, true]);
    await bus.close();
    store.close();
  });

  it('a listener does not see an event whose commit failed; the publisher gets PLINTH_ERR_STORE_FAILED or the store error', async () => {
    const { bus, store } = await durableBus();
    const seen: unknown[] = [];
    bus.subscribe('#', (e) => void seen.push(e));
    const pending = bus.publish('orders.created', { n: 1 });
    store.close(); // the commit in the next turn fails
    await assert.rejects(pending, (err) => isPlinthError(err));
    assert.deepEqual(seen, []);
    await bus.close();
  });
});

describe('bus: delivery', () => {
  it('ordered per topic per subscriber under retries: the next event on a topic waits for the previous one', async () => {
    const { bus, clock, store } = await durableBus({ retry: { ...noJitter, maxAttempts: 3 } });
    const log: string[] = [];
    let failFirst = true;
    bus.subscribe('t.*', (e) => {
      log.push(`${e.topic}:${(e.payload as { n: number }).n}#${e.attempt}`);
      if (e.topic === 't.a' && failFirst) {
        failFirst = false;
        throw new Error('first attempt fails');
      }
    }, { name: 'ordered' });
    for (let n = 1; n <= 3; n++) {
      void bus.publish('t.a', { n });
      void bus.publish('t.b', { n });
    }
    await until(() => log.length === 4, 't.b delivered while t.a waits');
    assert.deepEqual(log, ['t.a:1#1', 't.b:1#1', 't.b:2#1', 't.b:3#1'], 't.b is not held back by t.a');
    clock.advance(100);
    await bus.idle();
    assert.deepEqual(log.slice(4), ['t.a:1#2', 't.a:2#1', 't.a:3#1']);
    await bus.close();
    store.close();
  });

  it('regression: a handler that never returns no longer pins its pending row: each attempt is bounded by the delivery timeout, then dead-lettered', async () => {
    const { bus, clock, store } = await durableBus({ retry: { ...noJitter, maxAttempts: 2 }, deliveryTimeoutMs: 1000 });
    const calls: string[] = [];
    bus.subscribe('hang.#', (e) => {
      calls.push(`${e.topic}#${e.attempt}`);
      return e.topic === 'hang.forever' ? new Promise<void>(() => {}) : undefined;
    }, { name: 'hanger' });
    const event = await bus.publish('hang.forever', { n: 1 });
    await until(() => calls.length === 1, 'the first attempt');
    assert.equal(store.pending('hanger').length, 1);
    await bus.publish('hang.other', { n: 2 });
    await until(() => calls.includes('hang.other#1'), 'another topic goes on beside the hung one');
    clock.advance(999);
    assert.deepEqual(calls, ['hang.forever#1', 'hang.other#1'], 'not before the timeout');
    clock.advance(1);
    assert.equal(store.pending('hanger')[0]?.attempts[0]?.error.code, 'PLINTH_ERR_EVENT_DELIVERY_TIMEOUT', 'the timed-out attempt is recorded as a failure');
    clock.advance(100); // backoff
    assert.deepEqual(calls.slice(2), ['hang.forever#2']);
    clock.advance(1000);
    await bus.idle();
    assert.equal(store.pending('hanger').length, 0, 'no pending row left');
    const [letter] = bus.listDeadLetters({ subscriber: 'hanger' });
    assert.equal(letter?.event.id, event.id);
    assert.deepEqual(letter?.attempts.map((a) => a.error.code), ['PLINTH_ERR_EVENT_DELIVERY_TIMEOUT', 'PLINTH_ERR_EVENT_DELIVERY_TIMEOUT']);
    assert.match(letter.attempts[0]!.error.message, /events\.deliveryTimeout/);
    await bus.close();
    store.close();
  });

  it('a late return after the delivery timeout is ignored: the retry decides, and the order on the topic holds', async () => {
    const { bus, clock, store } = await durableBus({ retry: { ...noJitter, maxAttempts: 3 }, deliveryTimeoutMs: 500 });
    const log: string[] = [];
    let finishFirst!: () => void;
    bus.subscribe('slow.t', (e) => {
      log.push(`${(e.payload as { n: number }).n}#${e.attempt}`);
      return e.attempt === 1 && (e.payload as { n: number }).n === 1 ? new Promise<void>((r) => (finishFirst = r)) : undefined;
    }, { name: 'late', deliveryTimeoutMs: 500 });
    await bus.publish('slow.t', { n: 1 });
    await bus.publish('slow.t', { n: 2 });
    await until(() => log.length === 1, 'first attempt');
    clock.advance(500); // times out; n=2 still waits behind n=1
    finishFirst(); // the late return must not acknowledge n=1 nor let n=2 go first
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(log, ['1#1']);
    clock.advance(100);
    await bus.idle();
    assert.deepEqual(log, ['1#1', '1#2', '2#1']);
    assert.equal(store.pending('late').length, 0);
    assert.equal(bus.listDeadLetters().length, 0);
    await bus.close();
    store.close();
  });

  it('the delivery timeout defaults to 60 s (events.deliveryTimeout)', async () => {
    const { bus, clock, store } = await durableBus({ retry: { ...noJitter, maxAttempts: 1 } });
    bus.subscribe('x', () => new Promise<void>(() => {}), { name: 'x' });
    await bus.publish('x', 1);
    await until(() => store.pending('x').length === 1, 'pending');
    clock.advance(59_999);
    assert.equal(bus.listDeadLetters().length, 0);
    clock.advance(1);
    assert.equal(bus.listDeadLetters().length, 1);
    await bus.close();
    store.close();
  });

  it('a slow subscriber never delays a fast one', async () => {
    const bus = new DurableBus();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: number[] = [];
    const fast: number[] = [];
    bus.subscribe('jobs.#', async (e) => {
      await gate;
      slow.push(e.payload as number);
    }, { name: 'slow', durable: false, maxInFlight: 1 });
    bus.subscribe('jobs.#', (e) => void fast.push(e.payload as number), { name: 'fast', durable: false });
    for (let i = 0; i < 50; i++) await bus.publish(`jobs.q${i % 5}`, i);
    await until(() => fast.length === 50, 'the fast subscriber got everything');
    assert.equal(slow.length, 0);
    release();
    await bus.idle();
    assert.equal(slow.length, 50);
    await bus.close();
  });

  it('backpressure: a publish past a subscriber\'s queue bound is refused with a clear error; nothing is stored', async () => {
    const { bus, store } = await durableBus({ maxQueuedPerSubscriber: 3 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    bus.subscribe('q.#', () => gate, { name: 'stuck' });
    const other: unknown[] = [];
    bus.subscribe('other.#', (e) => void other.push(e), { name: 'other' });
    for (let i = 0; i < 3; i++) await bus.publish('q.x', i);
    await assert.rejects(bus.publish('q.x', 3), (err) => {
      code(err, 'PLINTH_ERR_EVENT_QUEUE_FULL');
      assert.match((err as Error).message, /stuck.*events\.maxQueuedPerSubscriber/);
      return true;
    });
    assert.equal(store.pending('stuck').length, 3);
    await bus.publish('other.y', 1);
    await until(() => other.length === 1, 'others still get events');
    release();
    await bus.idle();
    await bus.publish('q.x', 4);
    await bus.close();
    store.close();
  });

  it('retries with exponential backoff, then dead-letters with every attempt\'s error and time', async () => {
    const { bus, clock, store } = await durableBus({ retry: { ...noJitter, maxAttempts: 3 } });
    const attempts: number[] = [];
    bus.subscribe('pay.*', (e) => {
      attempts.push(e.attempt);
      throw new Error(`fail ${e.attempt}`);
    }, { name: 'payments' });
    const event = await bus.publish('pay.started', { amount: 5 });
    await until(() => attempts.length === 1, 'first attempt');
    clock.advance(99);
    assert.equal(attempts.length, 1, 'not before its backoff');
    clock.advance(1);
    await until(() => attempts.length === 2, 'second attempt after 100 ms');
    clock.advance(199);
    assert.equal(attempts.length, 2);
    clock.advance(1);
    await until(() => bus.listDeadLetters().length === 1, 'dead-lettered');
    assert.deepEqual(attempts, [1, 2, 3]);
    const [letter] = bus.listDeadLetters({ subscriber: 'payments', topic: 'pay.#' });
    assert.equal(letter!.event.id, event.id);
    assert.deepEqual(letter!.attempts.map((a) => a.error.message), ['fail 1', 'fail 2', 'fail 3']);
    assert.ok(letter!.attempts.every((a) => a.startedAt && a.failedAt));
    assert.deepEqual(store.pending('payments'), [], 'no longer pending');
    assert.deepEqual(bus.listDeadLetters({ topic: 'other.#' }), []);
    await bus.close();
    store.close();
  });

  it('backoff is exponential with jitter by default, capped', () => {
    assert.equal(DEFAULT_RETRY.backoff, 'exponential');
    assert.equal(DEFAULT_RETRY.jitter, true);
    const p = { ...DEFAULT_RETRY, baseMs: 100, maxMs: 1000 };
    assert.equal(retryDelay(1, p, () => 1), 100);
    assert.equal(retryDelay(3, p, () => 1), 400);
    assert.equal(retryDelay(3, p, () => 0), 200);
    assert.equal(retryDelay(10, p, () => 1), 1000);
    assert.equal(retryDelay(4, { ...p, backoff: 'fixed', jitter: false }), 100);
  });

  it('replay to the original subscriber or to all current subscribers; purge; expiry after the TTL', async () => {
    const { bus, clock, store } = await durableBus({ retry: { ...noJitter, maxAttempts: 1 }, deadLetterTtlMs: 60_000 });
    let healthy = false;
    const a: DeliveredEvent[] = [];
    const b: DeliveredEvent[] = [];
    bus.subscribe('r.*', (e) => {
      if (!healthy) throw new Error('down');
      a.push(e);
    }, { name: 'a' });
    bus.subscribe('r.*', (e) => void b.push(e), { name: 'b' });
    await bus.publish('r.one', 1);
    await bus.publish('r.two', 2);
    await until(() => bus.listDeadLetters().length === 2, 'two dead letters');
    healthy = true;
    const [first, second] = bus.listDeadLetters();
    assert.deepEqual(bus.replayDeadLetter(first!.id), { replayedTo: ['a'] });
    await until(() => a.length === 1, 'replayed to a');
    assert.equal(a[0]!.redelivered, true);
    assert.equal(b.length, 2, 'b not bothered');
    assert.deepEqual(bus.replayDeadLetter(second!.id, 'all').replayedTo.sort(), ['a', 'b']);
    await until(() => a.length === 2 && b.length === 3, 'replayed to all');
    assert.throws(() => bus.replayDeadLetter(second!.id), (err) => code(err, 'PLINTH_ERR_DEAD_LETTER_NOT_FOUND'));
    healthy = false;
    await bus.publish('r.three', 3);
    await bus.publish('r.four', 4);
    await until(() => bus.listDeadLetters().length === 2, 'two more');
    assert.equal(bus.purgeDeadLetters({ topic: 'r.three' }), 1);
    assert.equal(bus.listDeadLetters().length, 1);
    clock.advance(59_999);
    assert.equal(bus.listDeadLetters().length, 1);
    clock.advance(1);
    assert.equal(bus.listDeadLetters().length, 0, 'expired after events.deadLetterTtl');
    await bus.close();
    store.close();
  });

  it('a durable subscriber gets what it had not acknowledged after the bus and store are reopened, flagged redelivered', async () => {
    const { dir, bus, store } = await durableBus();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const acked: number[] = [];
    bus.subscribe('d.*', async (e) => {
      if ((e.payload as number) >= 3) await gate;
      acked.push(e.payload as number);
    }, { name: 'durable-one', maxInFlight: 1 });
    for (let i = 1; i <= 5; i++) await bus.publish('d.x', i);
    await until(() => acked.length === 2, 'two acknowledged');
    await bus.close();
    store.close();
    release();
    const store2 = openStore(dir);
    const bus2 = new DurableBus({ store: store2 });
    const again: DeliveredEvent[] = [];
    bus2.subscribe('d.*', (e) => void again.push(e), { name: 'durable-one' });
    await bus2.idle();
    assert.deepEqual(again.map((e) => e.payload), [3, 4, 5]);
    assert.ok(again.every((e) => e.redelivered));
    await bus2.close();
    store2.close();
  });
});

describe('subscribe grants', () => {
  it('a pattern is covered only when every topic it matches is matched by the grant', () => {
    const yes: Array<[string, string]> = [['security.#', 'security.login'], ['security.#', 'security.*.failed'], ['#', 'a.#'], ['extension.*.failed', 'extension.*.failed'], ['a.*', 'a.b'], ['a.#.z', 'a.b.#.z'], ['*.#', 'a.b']];
    const no: Array<[string, string]> = [['security.*', 'security.#'], ['a.b', 'a.*'], ['extension.*.failed', 'extension.#'], ['pipeline.#', 'security.x'], ['a.*.c', 'a.#.c']];
    for (const [g, p] of yes) assert.equal(patternCovers(g, p), true, `${g} covers ${p}`);
    for (const [g, p] of no) assert.equal(patternCovers(g, p), false, `${g} does not cover ${p}`);
  });
});
