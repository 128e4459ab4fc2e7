// Soak (issue 14): 200 000 stage calls at 64 in flight through one isolate in a sandbox process with the default
// RSS wall. No watchdog kill, every call answered, and the process's RSS flat once warmed up (it crept past the
// wall before: the process's young generation and the external strings of finished calls, see protocol.ts).
// Long (~30 s alone, more beside other tests): run with PLINTH_SOAK=1 (.ci/run does), skipped otherwise.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IsolateProcess } from '../../../src/sandbox/isolate/index.ts';
import type { SandboxExit } from '../../../src/sandbox/types.ts';
import { fixture, shutdownAfterAll, started } from './helpers.ts';

shutdownAfterAll();

const TOTAL = Number(process.env.PLINTH_SOAK_CALLS ?? 200_000);
const IN_FLIGHT = 64;
const WARM_UP = TOTAL / 4;
const SAMPLE_EVERY = TOTAL / 20;

const payload = {
  records: Array.from({ length: 20 }, (_, i) => ({ id: i, name: `user ${i}`, email: `user${i}@example.com`, amount: i * 1.5, tags: ['a', 'b'] })),
};

describe('isolate sandbox process soak', { skip: process.env.PLINTH_SOAK === '1' ? false : 'set PLINTH_SOAK=1 to run (.ci/run does)' }, () => {
  it(`${TOTAL} calls at ${IN_FLIGHT} in flight: no watchdog kill, RSS flat after warm-up`, { timeout: 600_000 }, async () => {
    const proc = new IsolateProcess();
    const { sandbox } = await started(await fixture('echo'), { process: proc });
    const exits: SandboxExit[] = [];
    sandbox.onExit((e) => exits.push(e));
    const pid = proc.pid;
    const wallMb = proc.rssLimitMb!;
    const samples: Array<{ calls: number; rssMb: number; heapMb: number; externalMb: number }> = [];
    let started_ = 0;
    let done = 0;
    let failed: unknown;
    await new Promise<void>((resolve) => {
      const next = (): void => {
        if (started_ >= TOTAL || failed !== undefined) return;
        started_++;
        sandbox.call('echo', payload, { timeoutMs: 10_000, traceId: 'soak' }).then(
          async (out) => {
            done++;
            if (done % SAMPLE_EVERY === 0) {
              const s = await proc.stats();
              samples.push({ calls: done, rssMb: (s?.rssBytes ?? 0) / 1048576, heapMb: (s?.heapTotalBytes ?? 0) / 1048576, externalMb: (s?.externalBytes ?? 0) / 1048576 });
              if (done === 1) assert.deepEqual(out, payload);
            }
            if (done === TOTAL) resolve();
            else next();
          },
          (err: unknown) => {
            failed = err;
            resolve();
          },
        );
      };
      for (let i = 0; i < IN_FLIGHT; i++) next();
    });
    const report = samples.map((s) => `${s.calls}: ${s.rssMb.toFixed(0)} MB (heap ${s.heapMb.toFixed(0)}, external ${s.externalMb.toFixed(0)})`).join(', ');
    assert.equal(failed, undefined, `a call failed after ${done} calls: ${String(failed)} (RSS ${report})`);
    assert.deepEqual(exits, [], `the sandbox ended (RSS ${report})`);
    assert.equal(proc.pid, pid, 'the sandbox process was never replaced');
    assert.equal(proc.spawnCount, 1);
    const warm = samples.filter((s) => s.calls >= WARM_UP);
    const peak = Math.max(...samples.map((s) => s.rssMb));
    const growth = warm.at(-1)!.rssMb - warm[0]!.rssMb;
    assert.ok(peak < wallMb * 0.8, `peak RSS ${peak.toFixed(0)} MB is within 80 % of the wall (${wallMb} MB): ${report}`);
    assert.ok(growth < 24, `RSS grew ${growth.toFixed(1)} MB after warm-up: ${report}`);
    console.log(`soak: ${TOTAL} calls, wall ${wallMb} MB, RSS ${report}`);
    await sandbox.stop(1000);
    await proc.shutdown();
  });
});
