// Retry policies with an injected clock (the host's pipelineClock): each policy's attempt count and the delays
// the engine waited, read from the ManualClock's timers and the progress reports; non-retryable codes and caller
// mistakes never retried. Also the events on the bus, fair scheduling and per-pipeline concurrency.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { ManualClock } from '../../../src/events/index.ts';
import type { Host } from '../../../src/host/index.ts';
import type { EngineProgress, RunRecord, StageDefinition } from '../../../src/pipeline/index.ts';
import type { PlinthEvent } from '../../../src/sdk/index.ts';
import { rejectsWith, waitFor } from '../../helpers.ts';
import { pipeline, pipelineRoot, recordProgress, stage, startPipelineHost } from '../helpers.ts';

const stageOf = (run: RunRecord, id: string) => run.stages.find((s) => s.id === id)!;

describe('pipeline engine: retries, events, scheduling', () => {
  let host: Host;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  let progress: ReturnType<typeof recordProgress>;
  const events: PlinthEvent[] = [];
  let key = 0;

  before(async () => {
    const root = await pipelineRoot({ config: 'pipelines: { maxConcurrentStages: 2 }\n' });
    // random 0.5: jitter spreads by 0 (1 + j·(2·0.5 − 1)), so delays are exact.
    host = await startPipelineHost(root, { pipelineClock: clock, pipelineRandom: () => 0.5 });
    progress = recordProgress(host);
    host.bus.subscribe('pipeline.#', (e) => void events.push(e));
  });
  after(() => host.stop());

  /** Runs a flaky stage under `retry`, moving the clock over each wait; returns the run and the waits seen. */
  async function runFlaky(retry: StageDefinition['retry'], failures: number): Promise<{ run: RunRecord; waits: number[] }> {
    const def = pipeline(`retry-${++key}`, [stage('s', { stage: 'flaky', with: { key: `k${key}`, failures }, retry })]);
    const { runId } = host.pipelines.startDefinition(def);
    const waits: number[] = [];
    const done = host.pipelines.wait(runId);
    let ended = false;
    void done.then(() => (ended = true));
    for (;;) {
      // Either the run ends, or the engine is waiting for a retry timer: move the clock by exactly that wait.
      await waitFor(() => ended || clock.pending > 0, 'the run to end or wait for a retry');
      if (ended) break;
      const report = progress.filter((p) => p.runId === runId && (p as EngineProgress).retryInMs !== undefined).at(-1) as EngineProgress;
      waits.push(report.retryInMs!);
      clock.advance(report.retryInMs!);
    }
    return { run: await done, waits };
  }

  it('exponential: attempts in all, delays initial·factor^n capped at maxDelay', async () => {
    const { run, waits } = await runFlaky({ retry: { policy: 'exponential', attempts: 5, initialDelayMs: 100, maxDelayMs: 500, factor: 2, jitter: 0.5 }, nonRetryable: [] }, 4);
    assert.equal(run.state, 'succeeded');
    assert.equal(stageOf(run, 's').attempts.length, 5);
    assert.deepEqual(waits, [100, 200, 400, 500]);
    assert.deepEqual(stageOf(run, 's').attempts.map((a) => a.error?.code ?? 'ok'), ['PLINTH_ERR_STAGE_FAILED', 'PLINTH_ERR_STAGE_FAILED', 'PLINTH_ERR_STAGE_FAILED', 'PLINTH_ERR_STAGE_FAILED', 'ok']);
  });

  it('fixed: the same interval each time; the run fails once attempts are used up', async () => {
    const { run, waits } = await runFlaky({ retry: { policy: 'fixed', attempts: 3, intervalMs: 250 }, nonRetryable: [] }, 10);
    assert.equal(run.state, 'failed');
    assert.equal(stageOf(run, 's').attempts.length, 3);
    assert.deepEqual(waits, [250, 250]);
  });

  it('immediate: retried with no wait', async () => {
    const { run, waits } = await runFlaky({ retry: { policy: 'immediate', attempts: 3 }, nonRetryable: [] }, 2);
    assert.equal(run.state, 'succeeded');
    assert.equal(stageOf(run, 's').attempts.length, 3);
    assert.deepEqual(waits, []);
  });

  it('none: one attempt', async () => {
    const { run } = await runFlaky({ retry: { policy: 'none' }, nonRetryable: [] }, 1);
    assert.equal(run.state, 'failed');
    assert.equal(stageOf(run, 's').attempts.length, 1);
  });

  it('a code listed as non-retryable is not retried', async () => {
    const { run, waits } = await runFlaky({ retry: { policy: 'fixed', attempts: 5, intervalMs: 10 }, nonRetryable: ['PLINTH_ERR_STAGE_FAILED'] }, 3);
    assert.equal(run.state, 'failed');
    assert.equal(stageOf(run, 's').attempts.length, 1);
    assert.deepEqual(waits, []);
  });

  it('a caller mistake (input not matching the stage schema) is never retried, whatever the policy', async () => {
    const def = pipeline('mistake', [stage('s', { stage: 'flaky', with: { key: 'x', failures: 'many' }, retry: { retry: { policy: 'immediate', attempts: 5 }, nonRetryable: [] } })]);
    // The pre-run check refuses the literal; a reference produces it at run time instead.
    await rejectsWith(Promise.resolve().then(() => host.pipelines.startDefinition(def)), 'PLINTH_ERR_PIPELINE_INVALID');
    // echo's output is an untyped object: the check cannot know `n`; at run time it is a string.
    const viaRef = pipeline('mistake-ref', [
      stage('src', { stage: 'echo', with: { n: 'many' } }),
      stage('s', { stage: 'flaky', needs: ['src'], with: { key: 'x', failures: '${{ stages.src.output.n }}' }, retry: { retry: { policy: 'immediate', attempts: 5 }, nonRetryable: [] } }),
    ]);
    const run = await host.pipelines.wait(host.pipelines.startDefinition(viaRef).runId);
    assert.equal(stageOf(run, 's').error?.code, 'PLINTH_ERR_STAGE_INPUT_INVALID');
    assert.equal(stageOf(run, 's').attempts.length, 1);
  });

  it('publishes pipeline.<name>.run.<state> and pipeline.<name>.stage.<stage>.<state> with run id, attempt, duration, error code', async () => {
    const def = pipeline('evented', [stage('ok', { stage: 'echo', with: { a: 1 } }), stage('bad', { stage: 'flaky', needs: ['ok'], with: { key: 'ev', failures: 9 } })], { onFailure: 'stop' });
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    await waitFor(() => events.some((e) => e.topic === 'pipeline.evented.run.failed'), 'the run.failed event');
    const mine = events.filter((e) => (e.payload as { runId?: string }).runId === run.id);
    assert.deepEqual(mine.map((e) => e.topic), [
      'pipeline.evented.run.pending',
      'pipeline.evented.run.running',
      'pipeline.evented.stage.ok.running',
      'pipeline.evented.stage.ok.succeeded',
      'pipeline.evented.stage.bad.running',
      'pipeline.evented.stage.bad.failed',
      'pipeline.evented.run.failed',
    ]);
    assert.ok(mine.every((e) => e.source === 'host'));
    const ok = mine[3]!.payload as { attempt: number; durationMs: number; stage: string };
    assert.equal(ok.stage, 'ok');
    assert.equal(ok.attempt, 1);
    assert.equal(typeof ok.durationMs, 'number');
    assert.equal((mine[5]!.payload as { error: { code: string } }).error.code, 'PLINTH_ERR_STAGE_FAILED');
    assert.equal((mine[6]!.payload as { error: { code: string } }).error.code, 'PLINTH_ERR_STAGE_FAILED');
  });

  it('shares the host\'s stage slots fairly: a small run is not starved behind a wide one', async () => {
    // pipelines.maxConcurrentStages = 2 for the host. A run with 6 independent stages holds both slots (its stages
    // wait for a release file); a one-stage run started meanwhile must get the second slot freed, not the seventh
    // (round-robin). Read from the order the engine started stages in, not from timings.
    const release = `calls/release-fair-${++key}`;
    const wide = pipeline(`wide-${key}`, Array.from({ length: 6 }, (_, i) => stage(`w${i}`, { stage: 'count', with: { tag: `w${i}`, until: release } })));
    const small = pipeline(`small-${key}`, [stage('only', { stage: 'count', with: { tag: 'small' } })]);
    const w = host.pipelines.startDefinition(wide);
    const runningStages = (runId: string) => progress.filter((p) => p.runId === runId && p.stage !== undefined && p.state === 'running');
    await waitFor(() => runningStages(w.runId).length === 2, 'the wide run to hold both slots');
    const s = host.pipelines.startDefinition(small);
    await waitFor(() => progress.some((p) => p.runId === s.runId && p.stage === undefined && p.state === 'running'), 'the small run to be running');
    assert.equal(runningStages(s.runId).length, 0, 'no slot was free for the small run yet');
    const file = path.join(host.config.dataDir, 'extensions', 'pipe-probe', release);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, 'go');
    await Promise.all([host.pipelines.wait(w.runId), host.pipelines.wait(s.runId)]);
    const mine = progress.filter((p) => (p.runId === w.runId || p.runId === s.runId) && p.stage !== undefined);
    const order = mine.filter((p) => p.state === 'running').map((p) => p.stage);
    assert.ok(order.indexOf('only') <= 3, `stages started in the order ${order.join(', ')}: the small run waited behind the wide one`);
    // Never more than 2 stages of the host at once.
    let now = 0;
    let peak = 0;
    for (const p of mine) {
      if (p.state === 'running') peak = Math.max(peak, ++now);
      else if (p.state === 'succeeded' || p.state === 'failed') now--;
    }
    assert.equal(peak, 2);
  });

  it('concurrency 1: a second run of the pipeline waits (pending) until the first ends', async () => {
    const def = pipeline('one-at-a-time', [stage('s', { stage: 'wait', with: { ms: 200 } })], { concurrency: 1 });
    const a = host.pipelines.startDefinition(def);
    const b = host.pipelines.startDefinition(def);
    assert.equal(host.pipelines.get(b.runId)!.state, 'pending');
    const [ra, rb] = await Promise.all([host.pipelines.wait(a.runId), host.pipelines.wait(b.runId)]);
    const aOut = stageOf(ra, 's').output as { endedAt: number };
    const bOut = stageOf(rb, 's').output as { startedAt: number };
    assert.equal(rb.state, 'succeeded');
    assert.ok(bOut.startedAt >= aOut.endedAt, 'the second run started after the first ended');
  });
});
