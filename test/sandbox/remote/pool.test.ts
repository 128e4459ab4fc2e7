// Pools of runners (issue 13, seed U43): several runner processes of one extension id and version, each call
// sent to one of them by the strategy in `extensions.<id>.pool.strategy`. Distribution is counted from which
// runner answered (each tags its answers), under load (calls in flight together); health-based skips a runner
// whose probes fail; a draining runner (SIGTERM) gets no new call while its call in flight finishes.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { makePublisher, waitFor } from '../../helpers.ts';
import type { PoolStrategy } from '../../../src/config/index.ts';
import type { Json } from '../../../src/sdk/index.ts';
import { registered, remoteFixture, remoteHost, spawnRunner, type RemoteHost, type RunnerProcess } from './helpers.ts';

const publisher = makePublisher('pool-pub');
const runners: RunnerProcess[] = [];
after(async () => {
  for (const r of runners) r.kill('SIGKILL');
  await Promise.all(runners.map((r) => r.exited));
});

async function pool(strategy: PoolStrategy, tags: string[], env: Record<string, NodeJS.ProcessEnv> = {}, poolBreaker?: object): Promise<{ h: RemoteHost; procs: Record<string, RunnerProcess> }> {
  const h = await remoteHost([publisher], { extensions: { 'echo-remote': { pool: { strategy, ...(poolBreaker ? { breaker: poolBreaker } : {}) } } }, defaults: { breaker: { minimumCalls: 1000 } } });
  const dir = await remoteFixture('echo-remote', publisher);
  const procs: Record<string, RunnerProcess> = {};
  for (const tag of tags) {
    const r = spawnRunner(dir, h.url, { tag, instance: `runner-${tag}`, ...(env[tag] ? { env: env[tag] } : {}) });
    runners.push(r);
    procs[tag] = r;
    await registered(r);
  }
  assert.equal(poolOf(h)?.ready, tags.length);
  return { h, procs };
}

/** The echo-remote extension's pool, as the host lists it. */
const poolOf = (h: RemoteHost) => h.host.list().find((e) => e.id === 'echo-remote')?.pool;

async function count(h: RemoteHost, calls: number, stage = 'echo', input: Json = {}): Promise<Record<string, number>> {
  const outs = await Promise.all(Array.from({ length: calls }, () => h.host.call('echo-remote', stage, input) as Promise<{ runner: string }>));
  const counts: Record<string, number> = {};
  for (const o of outs) counts[o.runner] = (counts[o.runner] ?? 0) + 1;
  return counts;
}

const stopAll = async (h: RemoteHost, procs: Record<string, RunnerProcess>) => {
  for (const r of Object.values(procs)) r.kill('SIGKILL');
  await h.stop();
};

describe('runner pools', () => {
  it('round-robin: 90 calls in flight together over 3 runners, 30 each', async () => {
    const { h, procs } = await pool('round-robin', ['a', 'b', 'c']);
    try {
      assert.deepEqual(await count(h, 90), { a: 30, b: 30, c: 30 });
      const info = poolOf(h)!;
      assert.deepEqual(info.instances.map((i) => [i.instance, i.calls]), [['runner-a', 30], ['runner-b', 30], ['runner-c', 30]]);
    } finally {
      await stopAll(h, procs);
    }
  });

  it('least-outstanding: a runner busy with a slow call gets none of the next calls; equal runners share a load', async () => {
    const { h, procs } = await pool('least-outstanding', ['a', 'b']);
    try {
      const slow = h.host.call('echo-remote', 'slow', { ms: 2000 }) as Promise<{ runner: string }>;
      await waitFor(() => poolOf(h)?.outstanding === 1, 'the slow call in flight');
      const busy = poolOf(h)!.instances.find((i) => i.outstanding === 1)!.instance.replace('runner-', '');
      const idle = busy === 'a' ? 'b' : 'a';
      const seen: Record<string, number> = {};
      for (let i = 0; i < 20; i++) {
        const { runner } = (await h.host.call('echo-remote', 'echo', { i })) as { runner: string };
        seen[runner] = (seen[runner] ?? 0) + 1;
      }
      assert.deepEqual(seen, { [idle]: 20 });
      assert.equal((await slow).runner, busy);
      const shared = await count(h, 60);
      assert.ok((shared.a ?? 0) >= 15 && (shared.b ?? 0) >= 15, `shared: ${JSON.stringify(shared)}`);
    } finally {
      await stopAll(h, procs);
    }
  });

  it('health-based: a runner whose health probes fail gets no calls while a healthy one is there', async () => {
    const { h, procs } = await pool('health-based', ['good', 'sick'], { sick: { RUNNER_UNHEALTHY: '1' } });
    try {
      const instances = () => poolOf(h)!.instances;
      await waitFor(() => instances().find((i) => i.instance === 'runner-sick')?.healthy === false && instances().find((i) => i.instance === 'runner-good')?.healthy === true, 'a probe of each runner');
      assert.deepEqual(await count(h, 40), { good: 40 });
      // The extension is still active: one healthy runner is enough.
      assert.equal(h.host.get('echo-remote')?.state, 'active');
    } finally {
      await stopAll(h, procs);
    }
  });

  it("health-based: a runner whose calls keep failing is set aside once its own breaker opens (extensions.<id>.pool.breaker)", async () => {
    const { h, procs } = await pool('health-based', ['good', 'broken'], { broken: { RUNNER_FAIL: '1' } }, { minimumCalls: 3 });
    try {
      const answers: string[] = [];
      for (let i = 0; i < 40; i++) {
        try {
          answers.push(((await h.host.call('echo-remote', 'echo', { i })) as { runner: string }).runner);
        } catch (err) {
          answers.push((err as { code: string }).code);
        }
      }
      const failures = answers.filter((a) => a === 'PLINTH_ERR_STAGE_FAILED').length;
      assert.ok(failures >= 1 && failures <= 3, `the broken runner failed ${failures} call(s) before its breaker opened: ${answers.join(' ')}`);
      assert.deepEqual(new Set(answers.slice(-30)), new Set(['good']));
      const broken = poolOf(h)!.instances.find((i) => i.instance === 'runner-broken')!;
      assert.equal(broken.breaker, 'open');
      assert.equal(broken.failures, failures);
    } finally {
      await stopAll(h, procs);
    }
  });

  it('a draining runner (SIGTERM) gets no new call while its call in flight finishes', async () => {
    const { h, procs } = await pool('round-robin', ['x', 'y']);
    try {
      const slow = h.host.call('echo-remote', 'slow', { ms: 1500 }) as Promise<{ runner: string }>;
      await waitFor(() => poolOf(h)?.outstanding === 1, 'the slow call in flight');
      const busy = poolOf(h)!.instances.find((i) => i.outstanding === 1)!.instance.replace('runner-', '');
      const other = busy === 'x' ? 'y' : 'x';
      procs[busy]!.kill('SIGTERM');
      await waitFor(() => poolOf(h)?.instances.find((i) => i.instance === `runner-${busy}`)?.state === 'draining', 'the runner to drain');
      assert.deepEqual(await count(h, 30), { [other]: 30 });
      assert.equal((await slow).runner, busy, 'the call in flight finished on the draining runner');
      assert.equal((await procs[busy]!.exited).code, 0);
      await waitFor(() => poolOf(h)?.instances.length === 1, 'the drained runner to leave');
      assert.equal(h.host.get('echo-remote')?.state, 'active');
    } finally {
      await stopAll(h, procs);
    }
  });
});
