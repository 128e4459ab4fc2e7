// Routes (filter, expression and stage transforms, hop limit) and the middleware chain, over a real LocalBus.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalBus, Router, attachRoutesAndRules, compileRoutes, HOPS_HEADER, type Middleware, type RouteConfig } from '../../src/events/index.ts';
import { PlinthError } from '../../src/errors.ts';
import type { Json, PlinthEvent } from '../../src/sdk/index.ts';

function setup(routes: RouteConfig[], callStage?: (extension: string, stage: string, input: Json) => Promise<Json>, maxHops = 8) {
  const bus = new LocalBus();
  const warnings: PlinthError[] = [];
  const router = new Router({
    routes: compileRoutes(routes),
    publish: (t, p, s, h) => bus.publish(t, p, s, h),
    maxHops,
    onWarning: (w) => void warnings.push(w),
    ...(callStage ? { callStage } : {}),
  });
  bus.subscribe('#', (e) => router.handle(e));
  const seen: PlinthEvent[] = [];
  bus.subscribe('#', (e) => void seen.push(e));
  return { bus, router, warnings, seen };
}

describe('routes', () => {
  it('routes matching events that pass the filter to every destination, transformed by an expression', async () => {
    const { bus, seen, warnings } = setup([
      { id: 'audit', from: 'data.*', to: ['audit.data', 'archive.data'], filter: 'payload.bytes > 1048576', transform: { expression: '{"user": payload.userId, "mb": payload.bytes / 1048576.0}' } },
    ]);
    await bus.publish('data.export', { userId: 'ann', bytes: 2 * 1048576 }, 'exporter', { correlationId: 'c1' });
    await bus.publish('data.export', { userId: 'bob', bytes: 10 }, 'exporter');
    await bus.publish('data.export', { userId: 'eve' }, 'exporter'); // no bytes: does not pass, no warning
    const original = seen.find((e) => e.topic === 'data.export')!;
    const routed = seen.filter((e) => e.source === 'route:audit');
    assert.deepEqual(routed.map((e) => e.topic).sort(), ['archive.data', 'audit.data']);
    for (const e of routed) {
      assert.deepEqual(e.payload, { user: 'ann', mb: 2 });
      assert.equal(e.headers?.causationId, original.id);
      assert.equal(e.headers?.correlationId, 'c1');
      assert.equal(e.headers?.[HOPS_HEADER], '1');
    }
    assert.equal(seen.filter((e) => e.topic === 'data.export').length, 3, 'the originals are delivered as usual');
    assert.deepEqual(warnings, []);
  });

  it("a stage transform calls the injected stage caller with the route's input and publishes its output", async () => {
    const calls: Array<[string, string, Json]> = [];
    const { bus, seen } = setup(
      [{ id: 'redact', from: 'users.signup', to: ['users.signup.redacted'], transform: { extension: 'redact-fields', stage: 'redact', input: '{"records": [payload]}' } }],
      (ext, stage, input) => {
        calls.push([ext, stage, input]);
        return Promise.resolve({ records: [{ name: 'ann', ssn: '***' }], redactedCount: 1 });
      },
    );
    await bus.publish('users.signup', { name: 'ann', ssn: '123' }, 'signup');
    assert.deepEqual(calls, [['redact-fields', 'redact', { records: [{ name: 'ann', ssn: '123' }] }]]);
    assert.deepEqual(seen.find((e) => e.topic === 'users.signup.redacted')?.payload, { records: [{ name: 'ann', ssn: '***' }], redactedCount: 1 });
  });

  it('a failing transform (expression or stage) skips that event with PLINTH_ERR_ROUTE_FAILED; the original is delivered', async () => {
    const { bus, seen, warnings } = setup(
      [
        { id: 'expr', from: 'a.b', to: ['c.d'], transform: { expression: 'payload.missing * 2.0' } },
        { id: 'stage', from: 'a.b', to: ['c.e'], transform: { extension: 'x', stage: 'y' } },
      ],
      () => Promise.reject(new PlinthError('PLINTH_ERR_STAGE_FAILED', 'boom', { extension: 'x' })),
    );
    await bus.publish('a.b', {}, 'p');
    assert.deepEqual(seen.map((e) => e.topic), ['a.b']);
    assert.deepEqual(warnings.map((w) => w.code).sort(), ['PLINTH_ERR_ROUTE_FAILED', 'PLINTH_ERR_ROUTE_FAILED']);
    assert.ok(warnings.some((w) => w.extension === 'x' && /route stage/.test(w.message)));
  });

  it('a route into its own pattern stops at events.maxHops with PLINTH_ERR_ROUTE_HOPS_EXCEEDED', async () => {
    const { bus, seen, warnings } = setup([{ id: 'loop', from: 'ping.#', to: ['ping.again'] }], undefined, 3);
    await bus.publish('ping.start', {}, 'p');
    assert.equal(seen.filter((e) => e.topic === 'ping.again').length, 3);
    assert.deepEqual(warnings.map((w) => w.code), ['PLINTH_ERR_ROUTE_HOPS_EXCEEDED']);
  });

  it('a slow stage transform never delays the publisher (attachRoutesAndRules runs routes beside it)', async () => {
    const bus = new LocalBus();
    let release: (value: Json) => void = () => {};
    const pending = new Promise<Json>((resolve) => (release = resolve));
    const seen: PlinthEvent[] = [];
    bus.subscribe('#', (e) => void seen.push(e));
    const attached = attachRoutesAndRules({
      subscribe: (p, l) => bus.subscribe(p, l),
      publish: (t, p, s, h) => bus.publish(t, p, s, h),
      settings: { maxHops: 8, routes: [{ id: 'slow', from: 'a.b', to: ['c.d'], transform: { extension: 'x', stage: 'y' } }], rules: [], cep: { maxKeys: 10, maxEventsPerKey: 10, maxEvents: 100_000 } },
      callStage: () => pending,
      tickMs: 0,
    });
    await bus.publish('a.b', 1, 'p');
    assert.deepEqual(seen.map((e) => e.topic), ['a.b'], 'publish resolved while the stage still runs');
    release({ done: true });
    await pending;
    for (let i = 0; i < 10 && seen.length < 2; i++) await new Promise<void>((r) => setImmediate(r));
    assert.deepEqual(seen.map((e) => e.topic), ['a.b', 'c.d']);
    attached.detach();
  });

  it('config problems come with paths: bad pattern, reserved destination, bad filter, both transforms, a half stage transform', () => {
    try {
      compileRoutes([
        { id: 'a', from: 'x..y', to: ['host.started'], filter: 'payload.x >' },
        { id: 'b', from: 'x', to: ['y'], transform: { expression: 'payload', extension: 'e', stage: 's' } },
        { id: 'c', from: 'x', to: ['y'], transform: { extension: 'e' } },
        { id: 'c', from: 'x', to: ['y'], transform: { expression: 'payload', input: 'payload' } },
      ]);
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof PlinthError);
      assert.equal(err.code, 'PLINTH_ERR_CONFIG_INVALID');
      assert.deepEqual(err.problems.map((p) => p.path).sort(), [
        '/events/routes/0/filter',
        '/events/routes/0/from',
        '/events/routes/0/to/0',
        '/events/routes/1/transform',
        '/events/routes/2/transform',
        '/events/routes/3/id',
        '/events/routes/3/transform/input',
      ]);
    }
  });
});

describe('middleware around publish', () => {
  it('enriches and transforms in order; the last sees what the first passed on', async () => {
    const bus = new LocalBus();
    const seen: PlinthEvent[] = [];
    bus.subscribe('#', (e) => void seen.push(e));
    const enrich: Middleware = (e, next) => next({ ...e, headers: { ...e.headers, traceId: 't-1' } });
    const rename: Middleware = (e, next) => next(e.topic === 'legacy.order' ? { ...e, topic: 'orders.created', payload: { wrapped: e.payload } } : e);
    bus.use(enrich);
    bus.use(rename);
    await bus.publish('legacy.order', 7, 'shop');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.topic, 'orders.created');
    assert.deepEqual(seen[0]!.payload, { wrapped: 7 });
    assert.deepEqual(seen[0]!.headers, { traceId: 't-1' });
    assert.equal(seen[0]!.source, 'shop');
  });

  it('rejects: by throwing (its error), by not calling next, or by making an invalid topic (PLINTH_ERR_EVENT_REJECTED); nothing is delivered', async () => {
    const bus = new LocalBus();
    const seen: PlinthEvent[] = [];
    bus.subscribe('#', (e) => void seen.push(e));
    const off = bus.use((e) => {
      if (e.source === 'spammer') throw new PlinthError('PLINTH_ERR_PERMISSION_DENIED', 'no');
    });
    await assert.rejects(bus.publish('a.b', 1, 'spammer'), { code: 'PLINTH_ERR_PERMISSION_DENIED' });
    await assert.rejects(bus.publish('a.b', 1, 'other'), { code: 'PLINTH_ERR_EVENT_REJECTED' });
    off();
    const offBad = bus.use(function badTopic(e, next) {
      return next({ ...e, topic: 'a..b' });
    });
    await assert.rejects(bus.publish('a.b', 1), (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_EVENT_REJECTED' && /badTopic/.test(err.message));
    offBad();
    bus.use((e, next) => next(e));
    await bus.publish('a.b', 1);
    assert.equal(seen.length, 1);
  });
});
