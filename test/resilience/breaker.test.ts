import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Breaker, type BreakerState } from '../../src/resilience/index.ts';
import { PlinthError } from '../../src/errors.ts';
import type { BreakerSettings } from '../../src/config/index.ts';
import { rejectsWith } from '../helpers.ts';

const base: BreakerSettings = {
  failureRateThreshold: 50,
  minimumCalls: 4,
  windowMs: 10_000,
  recoveryTimeoutMs: 150,
  halfOpenMaxCalls: 3,
  slowCallDurationMs: 10_000,
  slowCallRateThreshold: 100,
};

const ok = () => Promise.resolve('ok');
const boom = () => Promise.reject(new PlinthError('PLINTH_ERR_STAGE_FAILED', 'boom'));

function track(b: Breaker): BreakerState[] {
  const states: BreakerState[] = [];
  b.on('state', (s) => states.push(s));
  return states;
}

async function until(b: Breaker, state: BreakerState, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (b.state !== state) {
    if (Date.now() > end) throw new Error(`breaker stayed ${b.state}, expected ${state}`);
    await delay(10);
  }
}

describe('circuit breaker', () => {
  it('closed → open at the failure rate once the minimum volume is reached; open fails fast with PLINTH_ERR_CIRCUIT_OPEN', async () => {
    const b = new Breaker('ext', base);
    const states = track(b);
    await b.run(ok);
    await assert.rejects(b.run(boom));
    await assert.rejects(b.run(boom));
    assert.equal(b.state, 'closed', 'below the minimum volume nothing opens');
    await assert.rejects(b.run(boom)); // 4 calls, 3 failures: 75% > 50%
    assert.equal(b.state, 'open');
    let ran = false;
    await rejectsWith(b.run(() => { ran = true; return Promise.resolve(1); }), 'PLINTH_ERR_CIRCUIT_OPEN');
    assert.equal(ran, false, 'an open breaker does not run the call');
    assert.deepEqual(states, ['open']);
    b.dispose();
  });

  it('half-open admits exactly N probes; N successes close it', async () => {
    const b = new Breaker('ext', base);
    const states = track(b);
    for (let i = 0; i < 4; i++) await assert.rejects(b.run(boom));
    await until(b, 'half-open');
    const release: Array<() => void> = [];
    const probe = () => new Promise<string>((resolve) => release.push(() => resolve('probe')));
    const probes = [b.run(probe), b.run(probe), b.run(probe)];
    await rejectsWith(b.run(ok), 'PLINTH_ERR_CIRCUIT_OPEN'); // a 4th call while 3 probes are out
    await delay(10);
    assert.equal(release.length, 3);
    release.forEach((r) => r());
    assert.deepEqual(await Promise.all(probes), ['probe', 'probe', 'probe']);
    assert.equal(b.state, 'closed');
    assert.deepEqual(states, ['open', 'half-open', 'closed']);
    assert.equal(await b.run(ok), 'ok');
    b.dispose();
  });

  it('a failed probe opens it again, and it recovers later', async () => {
    const b = new Breaker('ext', { ...base, halfOpenMaxCalls: 1 });
    const states = track(b);
    for (let i = 0; i < 4; i++) await assert.rejects(b.run(boom));
    await until(b, 'half-open');
    await assert.rejects(b.run(boom));
    assert.equal(b.state, 'open');
    await until(b, 'half-open');
    await b.run(ok);
    assert.deepEqual(states, ['open', 'half-open', 'open', 'half-open', 'closed']);
    b.dispose();
  });

  it("the caller's mistakes (bad input, unknown stage) never count as failures", async () => {
    const b = new Breaker('ext', base);
    for (let i = 0; i < 10; i++) await assert.rejects(b.run(() => Promise.reject(new PlinthError('PLINTH_ERR_STAGE_INPUT_INVALID', 'bad input'))));
    assert.equal(b.state, 'closed');
    b.dispose();
  });

  it('opens on the slow-call rate even when every call succeeds', async () => {
    const b = new Breaker('ext', { ...base, slowCallDurationMs: 20, slowCallRateThreshold: 50 });
    await b.run(ok);
    await b.run(ok);
    await b.run(() => delay(40, 'slow'));
    assert.equal(b.state, 'closed');
    await b.run(() => delay(40, 'slow')); // 2 of 4 slow = 50%
    assert.equal(b.state, 'open');
    b.dispose();
  });
});
