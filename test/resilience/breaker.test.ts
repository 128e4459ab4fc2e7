// The circuit breaker's state machine on a fake clock: (state, outcome, admitted-in-state) tables, the rolling
// window with its minimum volume, the slow-call rate, recovery and N half-open probes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Breaker, type BreakerOutcome, type BreakerPermit, type BreakerSettings, type BreakerState } from '../../src/resilience/index.ts';
import { PlinthError, type ErrorCode } from '../../src/errors.ts';
import { rejectsWith } from '../helpers.ts';

const base: BreakerSettings = {
  failureRateThreshold: 50,
  minimumCalls: 4,
  windowMs: 10_000,
  recoveryTimeoutMs: 1000,
  halfOpenMaxCalls: 3,
  slowCallDurationMs: 500,
  slowCallRateThreshold: 100,
};

function make(settings: Partial<BreakerSettings> = {}) {
  const clock = { t: 0 };
  const b = new Breaker('ext', { ...base, ...settings }, { now: () => clock.t });
  const states: BreakerState[] = [];
  b.on('state', (s) => states.push(s));
  return { b, clock, states };
}

const fail = (code: ErrorCode = 'PLINTH_ERR_STAGE_FAILED') => Promise.reject(new PlinthError(code, code));
const ok = () => Promise.resolve('ok');

/** Drives a breaker into `state` (fresh generation) on its fake clock. */
function into(state: BreakerState, settings: Partial<BreakerSettings> = {}) {
  const m = make(settings);
  if (state === 'closed') return m;
  for (let i = 0; i < (settings.minimumCalls ?? base.minimumCalls); i++) m.b.admit().record('failure', 1);
  assert.equal(m.b.state, 'open');
  if (state === 'half-open') {
    m.clock.t += settings.recoveryTimeoutMs ?? base.recoveryTimeoutMs;
    assert.equal(m.b.state, 'half-open');
  }
  m.states.length = 0;
  return m;
}

describe('circuit breaker: one outcome in each state', () => {
  // halfOpenMaxCalls 1 and minimumCalls 1 so that a single outcome decides; slow = 600 ms ≥ slowCallDurationMs.
  const settings = { minimumCalls: 1, halfOpenMaxCalls: 1, slowCallRateThreshold: 100 };
  const table: Array<{ state: BreakerState; outcome: BreakerOutcome; ms: number; admittedIn: 'current' | 'previous' | 'previous half-open'; after: BreakerState }> = [
    { state: 'closed', outcome: 'success', ms: 1, admittedIn: 'current', after: 'closed' },
    { state: 'closed', outcome: 'failure', ms: 1, admittedIn: 'current', after: 'open' },
    { state: 'closed', outcome: 'ignored', ms: 1, admittedIn: 'current', after: 'closed' },
    { state: 'closed', outcome: 'success', ms: 600, admittedIn: 'current', after: 'open' },
    { state: 'half-open', outcome: 'success', ms: 1, admittedIn: 'current', after: 'closed' },
    { state: 'half-open', outcome: 'failure', ms: 1, admittedIn: 'current', after: 'open' },
    { state: 'half-open', outcome: 'ignored', ms: 1, admittedIn: 'current', after: 'half-open' },
    { state: 'half-open', outcome: 'success', ms: 600, admittedIn: 'current', after: 'open' },
    // Admitted while closed, ends after the breaker moved on (open, then half-open): it counts for nothing.
    { state: 'half-open', outcome: 'success', ms: 1, admittedIn: 'previous', after: 'half-open' },
    { state: 'half-open', outcome: 'failure', ms: 1, admittedIn: 'previous', after: 'half-open' },
    { state: 'half-open', outcome: 'ignored', ms: 1, admittedIn: 'previous', after: 'half-open' },
    { state: 'open', outcome: 'success', ms: 1, admittedIn: 'previous', after: 'open' },
    { state: 'open', outcome: 'failure', ms: 1, admittedIn: 'previous', after: 'open' },
    // Admitted as a probe, ends after another probe reopened it: nothing.
    { state: 'open', outcome: 'success', ms: 1, admittedIn: 'previous half-open', after: 'open' },
  ];
  for (const row of table) {
    it(`${row.state}, ${row.outcome}${row.ms >= 500 ? ' (slow)' : ''}, admitted in the ${row.admittedIn} state → ${row.after}`, () => {
      let m: ReturnType<typeof make>;
      let permit: BreakerPermit;
      if (row.admittedIn === 'current') {
        m = into(row.state, settings);
        permit = m.b.admit();
      } else if (row.admittedIn === 'previous half-open') {
        m = into('half-open', { ...settings, halfOpenMaxCalls: 2 });
        permit = m.b.admit();
        m.b.admit().record('failure', 1); // the other probe reopens it
        assert.equal(m.b.state, 'open');
      } else {
        m = make({ ...settings, minimumCalls: 2 });
        permit = m.b.admit(); // admitted while closed
        m.b.admit().record('failure', 1);
        m.b.admit().record('failure', 1);
        assert.equal(m.b.state, 'open');
        if (row.state === 'half-open') {
          m.clock.t += base.recoveryTimeoutMs;
          assert.equal(m.b.state, 'half-open');
        }
      }
      permit.record(row.outcome, row.ms);
      assert.equal(m.b.state, row.after);
    });
  }

  it('open admits nothing until the recovery timeout has passed', async () => {
    const { b, clock } = into('open');
    let ran = false;
    await rejectsWith(b.run(() => ((ran = true), ok())), 'PLINTH_ERR_CIRCUIT_OPEN');
    clock.t += base.recoveryTimeoutMs - 1;
    assert.throws(() => b.admit(), { code: 'PLINTH_ERR_CIRCUIT_OPEN' });
    assert.equal(ran, false, 'an open breaker does not run the call');
    clock.t += 1;
    assert.equal(b.admit().state, 'half-open');
  });
});

describe('circuit breaker: closed', () => {
  it('opens at the failure rate once the minimum volume is reached', () => {
    const { b, states } = make();
    b.admit().record('success', 1);
    b.admit().record('failure', 1);
    b.admit().record('failure', 1);
    assert.equal(b.state, 'closed', 'below the minimum volume nothing opens');
    b.admit().record('success', 1); // 4 calls, 50 %
    assert.equal(b.state, 'open');
    assert.deepEqual(states, ['open']);
  });

  it('stays closed below the failure rate', () => {
    const { b } = make();
    for (let i = 0; i < 20; i++) b.admit().record(i % 3 === 2 ? 'failure' : 'success', 1); // at most 33 %
    assert.equal(b.state, 'closed');
  });

  // Regression (seen): opossum counted filtered errors as successes; 10 bad inputs then 6 failures left it closed.
  it("the caller's mistakes never count: 10 STAGE_INPUT_INVALID then 6 failures open it", async () => {
    const { b } = make({ minimumCalls: 6 });
    for (let i = 0; i < 10; i++) await assert.rejects(b.run(() => fail('PLINTH_ERR_STAGE_INPUT_INVALID')));
    for (const code of ['PLINTH_ERR_CANCELLED', 'PLINTH_ERR_SHUTDOWN', 'PLINTH_ERR_STAGE_UNKNOWN'] as const) await assert.rejects(b.run(() => fail(code)));
    for (let i = 0; i < 5; i++) await assert.rejects(b.run(() => fail()));
    assert.equal(b.state, 'closed', '5 counted calls are below the minimum volume of 6');
    await assert.rejects(b.run(() => fail()));
    assert.equal(b.state, 'open');
  });

  it('counts only the calls inside the rolling window', () => {
    const { b, clock } = make({ minimumCalls: 4, windowMs: 1000 });
    for (let i = 0; i < 3; i++) b.admit().record('failure', 1);
    clock.t += 1500; // those three fell out of the window
    b.admit().record('failure', 1);
    b.admit().record('success', 1);
    b.admit().record('success', 1);
    assert.equal(b.state, 'closed');
    b.admit().record('success', 1); // 4 in the window, 25 %
    assert.equal(b.state, 'closed');
    b.admit().record('failure', 1); // 5 in the window, 40 %
    assert.equal(b.state, 'closed');
    b.admit().record('failure', 1); // 6 in the window, 50 %
    assert.equal(b.state, 'open');
  });

  it('the window slides one slice at a time: only the slices that fell out are forgotten', () => {
    // 1000 ms in 10 slices of 100 ms. At t = 1050 the window holds slices 1..10 (t 100..1099): the three successes
    // of slice 0 are gone, the one of slice 9 (t = 950) is still counted.
    const { b, clock } = make({ minimumCalls: 4, windowMs: 1000, failureRateThreshold: 60 });
    for (let i = 0; i < 3; i++) b.admit().record('success', 1);
    clock.t = 950;
    b.admit().record('success', 1);
    clock.t = 1050;
    b.admit().record('failure', 1);
    b.admit().record('failure', 1);
    assert.equal(b.state, 'closed', '3 in the window: under the minimum volume');
    b.admit().record('failure', 1); // 4 in the window: 1 success, 3 failures = 75 % (with slice 0 it would be 43 %)
    assert.equal(b.state, 'open');
  });

  it('a slice that falls out later takes exactly its own counts with it', () => {
    const { b, clock } = make({ minimumCalls: 2, windowMs: 1000, failureRateThreshold: 50 });
    for (let i = 0; i < 3; i++) b.admit().record('success', 1); // slice 0
    clock.t = 500;
    for (let i = 0; i < 3; i++) b.admit().record('success', 1); // slice 5
    clock.t = 1499; // slice 0 is gone, slice 5 stays
    b.admit().record('failure', 1);
    b.admit().record('failure', 1); // 2 failures in 5 = 40 % (a window that forgot slice 5 too would be 100 %)
    assert.equal(b.state, 'closed');
    clock.t = 1500; // now slice 5 is gone too: 3 failures in 3
    b.admit().record('failure', 1);
    assert.equal(b.state, 'open');
  });

  it('opens on the slow-call rate even when every call succeeds', () => {
    const { b } = make({ slowCallRateThreshold: 50 });
    b.admit().record('success', 1);
    b.admit().record('success', 1);
    b.admit().record('success', 700);
    assert.equal(b.state, 'closed');
    b.admit().record('success', 700); // 2 of 4 slow
    assert.equal(b.state, 'open');
  });

  it('measures the duration of run() on its clock', async () => {
    const { b, clock } = make({ minimumCalls: 1, slowCallRateThreshold: 100 });
    await b.run(() => {
      clock.t += 600;
      return Promise.resolve(1);
    });
    assert.equal(b.state, 'open');
  });
});

describe('circuit breaker: half-open', () => {
  it('admits exactly N probes; N successes close it', () => {
    const { b, states } = into('half-open');
    const probes = [b.admit(), b.admit(), b.admit()];
    assert.throws(() => b.admit(), { code: 'PLINTH_ERR_CIRCUIT_OPEN' }, 'a 4th call while 3 probes are out');
    probes[0]!.record('success', 1);
    probes[1]!.record('success', 1);
    assert.equal(b.state, 'half-open');
    assert.throws(() => b.admit(), { code: 'PLINTH_ERR_CIRCUIT_OPEN' }, 'a finished probe does not free a slot');
    probes[2]!.record('success', 1);
    assert.equal(b.state, 'closed');
    assert.deepEqual(states, ['closed']);
  });

  it('a failed probe opens it again, and it recovers after another recovery timeout', () => {
    const { b, clock, states } = into('half-open', { halfOpenMaxCalls: 1 });
    b.admit().record('failure', 1);
    assert.equal(b.state, 'open');
    clock.t += base.recoveryTimeoutMs;
    b.admit().record('success', 1);
    assert.deepEqual(states, ['open', 'half-open', 'closed']);
  });

  it("a caller's mistake gives its probe slot back", () => {
    const { b } = into('half-open', { halfOpenMaxCalls: 1 });
    b.admit().record('ignored', 1);
    const probe = b.admit();
    probe.record('success', 1);
    assert.equal(b.state, 'closed');
  });

  // Regression (seen): a call admitted while closed that succeeded after half-open closed it with zero probes.
  it('a call admitted while closed that succeeds during half-open does not close it', async () => {
    const { b, clock } = make();
    let finish!: () => void;
    const early = b.run(() => new Promise<string>((resolve) => (finish = () => resolve('late'))));
    for (let i = 0; i < 4; i++) await assert.rejects(b.run(() => fail()));
    assert.equal(b.state, 'open');
    clock.t += base.recoveryTimeoutMs;
    assert.equal(b.state, 'half-open');
    finish();
    assert.equal(await early, 'late');
    assert.equal(b.state, 'half-open', 'the late success is not a probe');
  });

  // Regression (seen): a late CANCELLED during half-open closed it.
  it('a late CANCELLED during half-open changes nothing', async () => {
    const { b } = into('half-open');
    const probe = b.admit();
    await assert.rejects(b.run(() => fail('PLINTH_ERR_CANCELLED')));
    assert.equal(b.state, 'half-open');
    probe.record('ignored', 1);
    assert.equal(b.state, 'half-open');
  });

  it('an outcome is recorded once', () => {
    const { b } = into('half-open', { halfOpenMaxCalls: 2 });
    const probe = b.admit();
    probe.record('success', 1);
    probe.record('success', 1);
    assert.equal(b.state, 'half-open');
  });

  it('rejects settings that are not positive numbers', () => {
    assert.throws(() => new Breaker('ext', { ...base, halfOpenMaxCalls: 0 }), TypeError);
  });
});
