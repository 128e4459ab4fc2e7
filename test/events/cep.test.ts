// Complex-event rules: the seed's example config (examples/cep.config.yaml) inside and outside its windows,
// absence, sliding windows, every state bound with its coded warning, config problems with their paths.
// Time is an injected clock stepped by the tests; nothing sleeps.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { loadHostConfig, type HostConfig } from '../../src/config/index.ts';
import { compileRules, RuleEngine, type RuleConfig } from '../../src/events/index.ts';
import { PlinthError } from '../../src/errors.ts';
import type { Json, PlinthEvent } from '../../src/sdk/index.ts';
import { ROOT, tempDir } from '../helpers.ts';

const EXAMPLE = path.join(ROOT, 'examples', 'cep.config.yaml');
const MIN = 60_000;

interface Published {
  topic: string;
  payload: Json;
  source: string | undefined;
  headers: Record<string, string> | undefined;
}

function harness(rules: RuleConfig[], cep = { maxKeys: 10_000, maxEventsPerKey: 10_000, maxEvents: 100_000 }) {
  let t = 1_000_000;
  const clock = { now: () => t };
  const published: Published[] = [];
  const warnings: PlinthError[] = [];
  const engine = new RuleEngine({
    rules: compileRules(rules, { settings: cep }),
    publish: (topic, payload, source, headers) => {
      published.push({ topic, payload, source, headers });
      return Promise.resolve();
    },
    maxHops: 8,
    clock,
    onWarning: (w) => void warnings.push(w),
  });
  const send = async (topic: string, payload: Json, headers?: Record<string, string>): Promise<PlinthEvent> => {
    const event: PlinthEvent = { id: randomUUID(), topic, payload, time: new Date(t).toISOString(), source: 'test', ...(headers ? { headers } : {}) };
    await engine.handle(event);
    return event;
  };
  return {
    engine,
    published,
    warnings,
    send,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

async function exampleRules(): Promise<HostConfig['events']> {
  return (await loadHostConfig({ flags: { config: EXAMPLE }, env: {} })).events;
}

async function rule(id: string): Promise<RuleConfig> {
  const found = (await exampleRules()).rules.find((r) => r.id === id);
  assert.ok(found, id);
  return found;
}

describe('CEP sequence: the seed rule from examples/cep.config.yaml', () => {
  it('login → confidential access within 5 min → export > 10 MB within 10 min publishes security.exfiltration.suspected', async () => {
    const h = harness([await rule('exfiltration')]);
    const login = await h.send('auth.login', { userId: 'ann' }, { correlationId: 'corr-1' });
    h.advance(4 * MIN);
    const access = await h.send('data.access', { userId: 'ann', classification: 'confidential' });
    h.advance(9 * MIN);
    const exp = await h.send('data.export', { userId: 'ann', bytes: 20 * 1024 * 1024 });
    assert.equal(h.published.length, 1);
    const [match] = h.published;
    assert.equal(match!.topic, 'security.exfiltration.suspected');
    assert.deepEqual(match!.payload, { rule: 'exfiltration', key: 'ann', events: [login.id, access.id, exp.id] });
    assert.equal(match!.source, 'rule:exfiltration');
    assert.equal(match!.headers?.causationId, exp.id);
    // The sequence is consumed: another export does not raise a second alert.
    await h.send('data.export', { userId: 'ann', bytes: 20 * 1024 * 1024 });
    assert.equal(h.published.length, 1);
    assert.equal(h.engine.stats()[0]!.keys, 0);
  });

  it('a window edge counts as inside: access exactly 5 min after login, export exactly 10 min after', async () => {
    const h = harness([await rule('exfiltration')]);
    await h.send('auth.login', { userId: 'ann' });
    h.advance(5 * MIN);
    await h.send('data.access', { userId: 'ann', classification: 'confidential' });
    h.advance(10 * MIN);
    await h.send('data.export', { userId: 'ann', bytes: 10485761 });
    assert.equal(h.published.length, 1);
  });

  it('outside its windows nothing matches: access 5 min + 1 ms after login, or export 10 min + 1 ms after access', async () => {
    const late = harness([await rule('exfiltration')]);
    await late.send('auth.login', { userId: 'ann' });
    late.advance(5 * MIN + 1);
    await late.send('data.access', { userId: 'ann', classification: 'confidential' });
    await late.send('data.export', { userId: 'ann', bytes: 20e6 });
    assert.equal(late.published.length, 0);

    const lateExport = harness([await rule('exfiltration')]);
    await lateExport.send('auth.login', { userId: 'ann' });
    await lateExport.send('data.access', { userId: 'ann', classification: 'confidential' });
    lateExport.advance(10 * MIN + 1);
    await lateExport.send('data.export', { userId: 'ann', bytes: 20e6 });
    assert.equal(lateExport.published.length, 0);
    // The expired state is gone, not kept forever.
    await lateExport.engine.tick();
    assert.equal(lateExport.engine.stats()[0]!.keys, 0);
  });

  it('conditions and the key hold: public data, a small export, another user, steps out of order', async () => {
    const h = harness([await rule('exfiltration')]);
    await h.send('auth.login', { userId: 'ann' });
    await h.send('data.access', { userId: 'ann', classification: 'public' });
    await h.send('data.export', { userId: 'ann', bytes: 20e6 });
    await h.send('data.access', { userId: 'bob', classification: 'confidential' });
    await h.send('data.export', { userId: 'bob', bytes: 20e6 });
    await h.send('data.access', { userId: 'ann', classification: 'confidential' });
    await h.send('data.export', { userId: 'ann', bytes: 10485760 }); // not more than 10 MB
    await h.send('data.export', { userId: 'ann' }); // no bytes field: does not take part
    assert.equal(h.published.length, 0);
    await h.send('data.export', { userId: 'ann', bytes: 10485761 });
    assert.equal(h.published.length, 1);
    assert.equal((h.published[0]!.payload as { key: string }).key, 'ann');
  });

  it('a second login restarts the first window from the later login', async () => {
    const h = harness([await rule('exfiltration')]);
    await h.send('auth.login', { userId: 'ann' });
    h.advance(4 * MIN);
    const second = await h.send('auth.login', { userId: 'ann' });
    h.advance(4 * MIN); // 8 min after the first login, 4 after the second
    await h.send('data.access', { userId: 'ann', classification: 'confidential' });
    await h.send('data.export', { userId: 'ann', bytes: 20e6 });
    assert.equal(h.published.length, 1);
    assert.equal((h.published[0]!.payload as { events: string[] }).events[0], second.id);
  });
});

describe('CEP absence: payment.started not followed by payment.completed within 30 s', () => {
  it('fires at the deadline, once, naming the started event', async () => {
    const h = harness([await rule('payment-stalled')]);
    const started = await h.send('payment.started', { paymentId: 'p1' });
    h.advance(30_000);
    await h.engine.tick();
    assert.equal(h.published.length, 0, 'the window is still open at exactly 30 s');
    h.advance(1);
    await h.engine.tick();
    assert.equal(h.published.length, 1);
    assert.equal(h.published[0]!.topic, 'payment.stalled');
    assert.deepEqual(h.published[0]!.payload, { rule: 'payment-stalled', key: 'p1', events: [started.id], absent: 'payment.completed' });
    h.advance(MIN);
    await h.engine.tick();
    await h.send('payment.completed', { paymentId: 'p1' });
    assert.equal(h.published.length, 1);
  });

  it('a completion within 30 s (same payment) means no match; another payment still fires', async () => {
    const h = harness([await rule('payment-stalled')]);
    await h.send('payment.started', { paymentId: 'p1' });
    await h.send('payment.started', { paymentId: 'p2' });
    h.advance(29_000);
    await h.send('payment.completed', { paymentId: 'p1' });
    h.advance(2_000);
    await h.engine.tick();
    assert.deepEqual(h.published.map((p) => (p.payload as { key: string }).key), ['p2']);
  });

  it('the deadline is also noticed by the next event, without a tick', async () => {
    const h = harness([await rule('payment-stalled')]);
    await h.send('payment.started', { paymentId: 'p1' });
    h.advance(31_000);
    await h.send('unrelated.topic', {});
    assert.equal(h.published.length, 1);
  });
});

describe('CEP sliding windows', () => {
  it('average stage duration over the last 100 completions: fires when it turns above 5 s, once, re-armed when it falls', async () => {
    const h = harness([await rule('stages-slow')]);
    for (let i = 0; i < 99; i++) await h.send('pipeline.etl.stage.completed', { durationMs: 6000 });
    assert.equal(h.published.length, 0, 'not before 100 completions');
    await h.send('pipeline.etl.stage.completed', { durationMs: 6000 });
    assert.equal(h.published.length, 1);
    const p = h.published[0]!.payload as { value: number; count: number; events: string[]; fn: string };
    assert.equal(p.value, 6000);
    assert.equal(p.count, 100);
    assert.equal(p.events.length, 100);
    assert.equal(p.fn, 'avg');
    await h.send('pipeline.etl.stage.completed', { durationMs: 6000 });
    assert.equal(h.published.length, 1, 'a steady state does not repeat the alert');
    // 100 fast completions bring the average of the last 100 down to 100 ms: re-armed.
    for (let i = 0; i < 100; i++) await h.send('pipeline.etl.stage.completed', { durationMs: 100 });
    assert.equal(h.published.length, 1);
    for (let i = 0; i < 100; i++) await h.send('pipeline.etl.stage.completed', { durationMs: 9000 });
    assert.equal(h.published.length, 2);
  });

  it('a time window with count, sum, min and max; events older than the window leave it', async () => {
    const mk = (fn: 'count' | 'sum' | 'min' | 'max', condition: string): RuleConfig => ({
      id: `w-${fn}`, type: 'window', topic: 'orders.*', key: 'payload.shop', within: '1m', minEvents: 1,
      aggregate: fn === 'count' ? { fn } : { fn, field: 'payload.amount' }, condition, emit: `alerts.${fn}`,
    });
    const h = harness([mk('count', 'value >= 3'), mk('sum', 'value > 100.0'), mk('min', 'value < 2.0'), mk('max', 'value > 50.0')]);
    await h.send('orders.created', { shop: 's1', amount: 10 });
    h.advance(30_000);
    await h.send('orders.created', { shop: 's1', amount: 60 });
    assert.deepEqual(h.published.map((p) => p.topic).sort(), ['alerts.max']);
    h.advance(31_000); // the first order is now older than 1 min
    await h.send('orders.created', { shop: 's1', amount: 1 });
    const count = h.engine.stats().find((s) => s.id === 'w-count')!;
    assert.equal(count.matches, 0, 'only two orders are inside the last minute');
    assert.deepEqual(h.published.map((p) => p.topic).sort(), ['alerts.max', 'alerts.min']);
    await h.send('orders.created', { shop: 's1', amount: 50 });
    assert.deepEqual(h.published.map((p) => p.topic).sort(), ['alerts.count', 'alerts.max', 'alerts.min', 'alerts.sum']);
    const sum = h.published.find((p) => p.topic === 'alerts.sum')!.payload as { value: number; key: string };
    assert.equal(sum.value, 111);
    assert.equal(sum.key, 's1');
    // Another shop has its own window.
    await h.send('orders.created', { shop: 's2', amount: 5 });
    assert.equal(h.published.length, 4);
    h.advance(2 * MIN);
    await h.engine.tick();
    assert.ok(h.engine.stats().every((s) => s.keys === 0), 'expired windows are dropped');
  });
});

describe('CEP state bounds: each with PLINTH_ERR_CEP_STATE_LIMIT', () => {
  it('events.cep.maxKeys: the oldest key is dropped with a warning naming the rule and the key to raise, once a minute', async () => {
    const h = harness([await rule('exfiltration')], { maxKeys: 2, maxEventsPerKey: 10_000, maxEvents: 100_000 });
    await h.send('auth.login', { userId: 'u1' });
    await h.send('auth.login', { userId: 'u2' });
    assert.equal(h.warnings.length, 0);
    await h.send('auth.login', { userId: 'u3' });
    assert.equal(h.warnings.length, 1);
    assert.equal(h.warnings[0]!.code, 'PLINTH_ERR_CEP_STATE_LIMIT');
    assert.match(h.warnings[0]!.message, /exfiltration/);
    assert.match(h.warnings[0]!.hint!, /events\.cep\.maxKeys/);
    assert.equal(h.engine.stats()[0]!.keys, 2);
    await h.send('auth.login', { userId: 'u4' });
    assert.equal(h.warnings.length, 1, 'not one warning per drop');
    assert.equal(h.engine.stats()[0]!.dropped, 2);
    h.advance(MIN);
    await h.send('auth.login', { userId: 'u5' });
    assert.equal(h.warnings.length, 2);
    assert.match(h.warnings[1]!.message, /3 dropped/);
    // u1 was dropped: its sequence can no longer complete; u5 still can.
    for (const u of ['u1', 'u5']) {
      await h.send('data.access', { userId: u, classification: 'confidential' });
      await h.send('data.export', { userId: u, bytes: 20e6 });
    }
    assert.deepEqual(h.published.map((p) => (p.payload as { key: string }).key), ['u5']);
  });

  it("a rule's limits.maxKeys overrides events.cep.maxKeys", async () => {
    const r = { ...(await rule('payment-stalled')), limits: { maxKeys: 1 } } as RuleConfig;
    const h = harness([r]);
    await h.send('payment.started', { paymentId: 'a' });
    await h.send('payment.started', { paymentId: 'b' });
    assert.equal(h.warnings[0]?.code, 'PLINTH_ERR_CEP_STATE_LIMIT');
    assert.match(h.warnings[0].hint!, /limits\.maxKeys/);
  });

  it('events.cep.maxEventsPerKey: a time window keeps at most that many events, the oldest dropped with a warning', async () => {
    const h = harness([{ id: 'burst', type: 'window', topic: 'clicks', within: '1h', aggregate: { fn: 'count' }, condition: 'value > 100', emit: 'alerts.burst' }], { maxKeys: 10, maxEventsPerKey: 5, maxEvents: 100_000 });
    for (let i = 0; i < 5; i++) await h.send('clicks', {});
    assert.equal(h.warnings.length, 0);
    await h.send('clicks', {});
    assert.equal(h.warnings[0]?.code, 'PLINTH_ERR_CEP_STATE_LIMIT');
    assert.match(h.warnings[0].hint!, /events\.cep\.maxEventsPerKey/);
    assert.equal(h.engine.stats()[0]!.dropped, 1);
  });

  it('events.cep.maxEvents: over all keys, the least recently fed windows are dropped with a warning', async () => {
    const h = harness([{ id: 'per-user', type: 'window', topic: 'clicks', key: 'payload.u', within: '1h', aggregate: { fn: 'count' }, condition: 'value > 100', emit: 'alerts.clicks' }], { maxKeys: 100, maxEventsPerKey: 100, maxEvents: 10 });
    for (let u = 0; u < 5; u++) for (let i = 0; i < 2; i++) await h.send('clicks', { u: `u${u}` });
    assert.equal(h.engine.stats()[0]!.events, 10);
    assert.equal(h.warnings.length, 0);
    await h.send('clicks', { u: 'u5' });
    assert.equal(h.warnings[0]?.code, 'PLINTH_ERR_CEP_STATE_LIMIT');
    assert.match(h.warnings[0].hint!, /events\.cep\.maxEvents\b/);
    const stats = h.engine.stats()[0]!;
    assert.ok(stats.events <= 10, `holds ${stats.events}`);
    assert.equal(stats.keys, 5, 'u0 was dropped whole');
  });

  it('a key from a payload is kept as a hash when long, so hostile keys stay small', async () => {
    const h = harness([await rule('payment-stalled')]);
    const long = 'k'.repeat(100_000);
    await h.send('payment.started', { paymentId: long });
    h.advance(31_000);
    await h.engine.tick();
    assert.match((h.published[0]!.payload as { key: string }).key, /^sha256:[0-9a-f]{64}$/);
  });

  it('a count window larger than maxEventsPerKey is refused at load with its path', () => {
    assert.throws(
      () => compileRules([{ id: 'big', type: 'window', topic: 'x', last: 50, aggregate: { fn: 'count' }, condition: 'value > 1', emit: 'y' }], { settings: { maxKeys: 10, maxEventsPerKey: 10, maxEvents: 100_000 } }),
      (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_CONFIG_INVALID' && err.problems.some((p) => p.path === '/events/rules/0/last'),
    );
  });
});

describe('CEP rules in host config are validated with paths', () => {
  async function problemsOf(yaml: string): Promise<PlinthError> {
    const dir = await tempDir();
    const file = path.join(dir, 'plinth.config.yaml');
    await writeFile(file, yaml);
    try {
      await loadHostConfig({ flags: { config: file }, env: {} });
    } catch (err) {
      assert.ok(err instanceof PlinthError);
      assert.equal(err.code, 'PLINTH_ERR_CONFIG_INVALID');
      assert.equal(err.file, file);
      return err;
    }
    assert.fail('the config was accepted');
  }

  it('schema problems: a missing key, an unknown property, a bad duration, an unknown rule type', async () => {
    const err = await problemsOf(`events:
  rules:
    - { id: a, type: sequence, steps: [{ topic: x }, { topic: y, within: 5m }], emit: z }
    - { id: b, type: sequence, key: payload.u, steps: [{ topic: x }, { topic: y, within: 5 minutes }], emit: z }
    - { id: c, type: window, topic: x, last: 3, aggregate: { fn: avg, field: payload.d }, condition: "value > 1.0", emit: z, colour: red }
    - { id: d, type: pattern, emit: z }
`);
    const paths = err.problems.map((p) => p.path);
    assert.ok(paths.includes('/events/rules/0/key'), paths.join(' '));
    assert.ok(paths.includes('/events/rules/1/steps/1/within'), paths.join(' '));
    assert.ok(paths.includes('/events/rules/2/colour'), paths.join(' '));
    assert.ok(paths.includes('/events/rules/3/type'), paths.join(' '));
  });

  it('semantic problems: bad CEL, an unknown variable, absent not last, a missing within, a reserved emit topic, a bad pattern, a duplicate id', async () => {
    const err = await problemsOf(`events:
  rules:
    - id: a
      type: sequence
      key: payload.u +
      steps:
        - { topic: "x.#.y" }
        - { topic: y, absent: true, within: 5m }
        - { topic: z }
      emit: host.alerts
    - id: a
      type: window
      topic: "x..y"
      last: 3
      aggregate: { fn: sum }
      condition: secret > 1
      emit: alerts.b
`);
    const paths = err.problems.map((p) => p.path).sort();
    assert.deepEqual(paths, [
      '/events/rules/0/emit',
      '/events/rules/0/key',
      '/events/rules/0/steps/1/absent',
      '/events/rules/0/steps/2/within',
      '/events/rules/1/aggregate/field',
      '/events/rules/1/condition',
      '/events/rules/1/id',
      '/events/rules/1/topic',
    ]);
  });
});
