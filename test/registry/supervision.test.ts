// Supervision of one extension through a real host with real worker sandboxes: restarts that retry with backoff and
// then give up with the cause, stop() racing a restart, the lifecycle table, call errors that say what happened.
// The sandbox factory wraps the real one only to count sandboxes and to hand a relaunch a config that makes its
// real start() fail.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { createSandbox } from '../../src/sandbox/index.ts';
import type { Sandbox, SandboxFactory, SandboxSpec } from '../../src/sandbox/types.ts';
import { TRANSITIONS } from '../../src/registry/extension.ts';
import { STATES, type ExtensionState } from '../../src/registry/index.ts';
import type { PlinthEvent } from '../../src/sdk/index.ts';
import { rejectsWith } from '../helpers.ts';
import { workspace, waitFor } from './helpers.ts';

/** Real worker sandboxes; the n-th (1-based) gets `failStart` when `failing(n)` says so. */
function countingFactory(failing: (n: number) => boolean) {
  const made: Array<{ sandbox: Sandbox; started: Promise<void> }> = [];
  const factory: SandboxFactory = (spec: SandboxSpec, ctx) => {
    const n = made.length + 1;
    const sandbox = createSandbox('worker', failing(n) ? { ...spec, config: { ...spec.config, failStart: true } } : spec, ctx);
    const start = sandbox.start.bind(sandbox);
    const entry = { sandbox, started: Promise.resolve() };
    sandbox.start = () => (entry.started = start());
    made.push(entry);
    return sandbox;
  };
  return { factory, made };
}

function lifecycle(events: PlinthEvent[], id: string): string[] {
  return events.filter((e) => e.topic.startsWith(`extension.${id}.`) && e.topic !== `extension.${id}.breaker`).map((e) => e.topic.split('.')[2]!);
}

/** Every consecutive pair of published states is allowed by the table (after the pre-start announcements). */
function assertLegal(states: string[]): void {
  const from = states.indexOf('starting');
  for (let i = Math.max(1, from + 1); i < states.length; i++) {
    const [a, b] = [states[i - 1] as ExtensionState, states[i] as ExtensionState];
    assert.ok(a === b || TRANSITIONS[a].includes(b), `illegal ${a} → ${b} in ${states.join(' → ')}`);
  }
}

const quiet = { logger: pino({ level: 'silent' }) };

describe('the lifecycle table', () => {
  it('names every state, ends in stopped or failed, and never leaves stopping except to stopped', () => {
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...STATES].sort());
    assert.deepEqual(TRANSITIONS.stopping, ['stopped']);
    assert.deepEqual(TRANSITIONS.stopped, []);
    assert.deepEqual(TRANSITIONS.failed, []);
    for (const [from, tos] of Object.entries(TRANSITIONS)) for (const to of tos) assert.ok((STATES as readonly string[]).includes(to), `${from} → ${to}`);
  });
});

describe('restarts', () => {
  // Regression (seen): one failed relaunch left the extension failed for good; the loop returned on both paths.
  it('a relaunch that fails is retried with backoff until one starts', async () => {
    const { factory, made } = countingFactory((n) => n === 2 || n === 3);
    const w = await workspace([{ id: 'flappy' }], { host: { ...quiet, makeSandbox: factory, backoff: { baseMs: 10, maxMs: 40, maxAttempts: 5 } } });
    try {
      await rejectsWith(w.host.call('flappy', 'exit', {}), 'PLINTH_ERR_SANDBOX_CRASHED');
      await waitFor(() => w.host.get('flappy')!.state === 'active' && made.length === 4, 'the fourth sandbox active', 15_000);
      assert.equal(w.host.get('flappy')!.info().restarts, 1);
      assert.deepEqual(await w.host.call('flappy', 'whoami', {}), { id: 'flappy', version: '1.0.0' });
      const states = lifecycle(w.events, 'flappy');
      assertLegal(states);
      assert.deepEqual(states.slice(states.lastIndexOf('active') - 4), ['active', 'starting', 'starting', 'starting', 'active']);
      const retry = w.events.filter((e) => e.topic === 'extension.flappy.starting').map((e) => String((e.payload as { reason: { message?: string } | null }).reason?.message ?? ''));
      assert.match(retry.at(-1)!, /restart 2 of 5 failed \(.*start refused by config.*\); retrying in \d+ ms/);
    } finally {
      await w.host.stop();
    }
  });

  it('gives up after maxAttempts failed relaunches: failed, with the last cause', async () => {
    const { factory, made } = countingFactory((n) => n > 1);
    const w = await workspace([{ id: 'doomed' }], { host: { ...quiet, makeSandbox: factory, backoff: { baseMs: 5, maxMs: 10, maxAttempts: 2 } } });
    try {
      await rejectsWith(w.host.call('doomed', 'exit', {}), 'PLINTH_ERR_SANDBOX_CRASHED');
      await waitFor(() => w.host.get('doomed')!.state === 'failed', 'failed', 15_000);
      assert.equal(made.length, 3, 'the first sandbox and two relaunches');
      const reason = w.host.get('doomed')!.info().reason!;
      assert.equal(reason.code, 'PLINTH_ERR_EXTENSION_LOAD_FAILED');
      assert.match(String(reason.message), /gave up after 2 failed restart\(s\) \(defaults\.restart\.maxAttempts\).*start refused by config/);
      await rejectsWith(w.host.call('doomed', 'whoami', {}), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
      assertLegal(lifecycle(w.events, 'doomed'));
    } finally {
      await w.host.stop();
    }
  });

  // Regression (seen): stop() during a restart ended stopping → stopped → active.
  it('stop() while a relaunch is starting ends stopped, and the relaunched sandbox is stopped too', async () => {
    const { factory, made } = countingFactory(() => false);
    const w = await workspace([{ id: 'racy' }], { host: { ...quiet, makeSandbox: factory, backoff: { baseMs: 1, maxMs: 1 } } });
    const ext = w.host.get('racy')!;
    await rejectsWith(w.host.call('racy', 'exit', {}), 'PLINTH_ERR_SANDBOX_CRASHED');
    await waitFor(() => made.length === 2, 'the relaunch to begin');
    const first = ext.stop();
    assert.equal(ext.stop(), first, 'a second stop() is the first one');
    await first;
    assert.equal(ext.state, 'stopped');
    await made[1]!.started.catch(() => undefined);
    await made[1]!.sandbox.stop(1000); // settles once the supervisor's own stop of it has finished
    assert.equal(ext.state, 'stopped', 'still stopped once the relaunch finished starting');
    // Events reach listeners after their commit (issue 10): wait for the stopped one, bounded.
    await waitFor(() => lifecycle(w.events, 'racy').at(-1) === 'stopped', 'the stopped event');
    const states = lifecycle(w.events, 'racy');
    assertLegal(states);
    assert.deepEqual(states.slice(-2), ['stopping', 'stopped']);
    await rejectsWith(w.host.call('racy', 'whoami', {}), 'PLINTH_ERR_SHUTDOWN');
    await w.host.stop();
  });

  it('stop() during the backoff wait ends at once, stopped', async () => {
    const w = await workspace([{ id: 'waiting' }], { host: { ...quiet, backoff: { baseMs: 60_000, maxMs: 60_000 } } });
    const ext = w.host.get('waiting')!;
    await rejectsWith(w.host.call('waiting', 'exit', {}), 'PLINTH_ERR_SANDBOX_CRASHED');
    assert.equal(ext.state, 'starting');
    const t0 = performance.now();
    await ext.stop();
    assert.ok(performance.now() - t0 < 5000, 'did not wait out the backoff');
    assert.equal(ext.state, 'stopped');
    await w.host.stop();
  });
});

describe('call errors', () => {
  // Regression: a non-Plinth error on the call path was reported as STAGE_TIMEOUT.
  it('an unknown error is STAGE_FAILED with its message, never a timeout', async () => {
    const factory: SandboxFactory = (spec, ctx) => {
      const sandbox = createSandbox('worker', spec, ctx);
      const call = sandbox.call.bind(sandbox);
      sandbox.call = async (stage, input, options) => {
        const out = await call(stage, input, options);
        return JSON.parse(`{${JSON.stringify(out)}`) as never; // a real SyntaxError after a real call
      };
      return sandbox;
    };
    const w = await workspace([{ id: 'odd' }], { host: { ...quiet, makeSandbox: factory } });
    try {
      const err = await rejectsWith(w.host.call('odd', 'whoami', {}), 'PLINTH_ERR_STAGE_FAILED');
      assert.match(err.message, /SyntaxError/);
    } finally {
      await w.host.stop();
    }
  });

  it('a call option that is not valid is PLINTH_ERR_CALL_OPTIONS_INVALID and counts nothing', async () => {
    const w = await workspace([{ id: 'opts' }], { ...{ config: 'defaults:\n  breaker: { minimumCalls: 1 }\n' }, host: quiet });
    try {
      for (const timeoutMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) await rejectsWith(w.host.call('opts', 'whoami', {}, { timeoutMs }), 'PLINTH_ERR_CALL_OPTIONS_INVALID');
      assert.equal(w.host.get('opts')!.breaker.state, 'closed');
    } finally {
      await w.host.stop();
    }
  });
});

describe('host stop', () => {
  // Regression: the host's stop was time-boxed per dependency level, so three levels of hung stop() took three
  // bounds. One bound covers the whole host.
  it('one bound for the whole host, however many levels hang in stop()', async () => {
    const hang = 'extensions:\n' + ['l0', 'l1', 'l2'].map((id) => `  ${id}:\n    config: { hangStop: true }\n`).join('');
    const w = await workspace([{ id: 'l0' }, { id: 'l1', dependencies: { l0: '*' } }, { id: 'l2', dependencies: { l1: '*' } }], { host: quiet, config: hang });
    const t0 = performance.now();
    const first = w.host.stop(1000);
    assert.equal(w.host.stop(1000), first, 'a second stop() is the first one');
    await first;
    const ms = performance.now() - t0;
    assert.ok(ms < 2800, `stopped in ${Math.round(ms)} ms; per-level bounds would take 3000 ms or more`);
    assert.deepEqual(w.host.list().map((e) => e.state), ['stopped', 'stopped', 'stopped']);
  });
});
