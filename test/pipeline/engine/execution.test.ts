// The engine over a real host (worker stages of test/fixtures/pipeline/pipe-probe): parallelism measured by the
// stages' own timestamps, `needs` order, references to outputs, conditions, failure → skipped dependents,
// cancelled running stages, compensations in reverse completion order, continueOnError, cancel, the journal.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Host } from '../../../src/host/index.ts';
import type { RunRecord } from '../../../src/pipeline/index.ts';
import { openStore } from '../../../src/store/index.ts';
import { rejectsWith, waitFor } from '../../helpers.ts';
import { pipeline, pipelineRoot, recordProgress, stage, startPipelineHost } from '../helpers.ts';

const stageOf = (run: RunRecord, id: string) => run.stages.find((s) => s.id === id)!;

describe('pipeline engine: execution', () => {
  let root: string;
  let host: Host;
  let progress: ReturnType<typeof recordProgress>;
  const callLog = async () => (await readFile(path.join(root, 'data', 'extensions', 'pipe-probe', 'calls', 'calls.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);

  before(async () => {
    root = await pipelineRoot();
    host = await startPipelineHost(root);
    progress = recordProgress(host);
  });
  after(() => host.stop());

  it('runs two independent stages at the same time (their own timestamps overlap), then the one that needs both', async () => {
    const def = pipeline('overlap', [
      stage('left', { stage: 'wait', with: { ms: 300, tag: 'left' } }),
      stage('right', { stage: 'wait', with: { ms: 300, tag: 'right' } }),
      stage('join', { stage: 'wait', with: { ms: 0 }, needs: ['left', 'right'] }),
    ]);
    const { runId } = host.pipelines.startDefinition(def);
    const run = await host.pipelines.wait(runId);
    assert.equal(run.state, 'succeeded');
    const out = (id: string) => stageOf(run, id).output as { startedAt: number; endedAt: number };
    const [l, r, j] = [out('left'), out('right'), out('join')];
    // Overlap: each started before the other ended.
    assert.ok(l.startedAt < r.endedAt && r.startedAt < l.endedAt, `left ${l.startedAt}-${l.endedAt}, right ${r.startedAt}-${r.endedAt}`);
    // needs: join started only after both ended.
    assert.ok(j.startedAt >= Math.max(l.endedAt, r.endedAt), 'join waited for its needs');
  });

  it('keeps maxConcurrentStages: with 1, independent stages run one after the other', async () => {
    const def = pipeline('serial', [stage('a', { stage: 'wait', with: { ms: 100 } }), stage('b', { stage: 'wait', with: { ms: 100 } })], { maxConcurrentStages: 1 });
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    const [a, b] = ['a', 'b'].map((id) => stageOf(run, id).output as { startedAt: number; endedAt: number });
    assert.ok(a!.endedAt <= b!.startedAt || b!.endedAt <= a!.startedAt, 'no overlap');
  });

  it('passes outputs to dependents through ${{ }} references and journals every stage with its output', async () => {
    const def = pipeline('refs', [
      stage('first', { stage: 'text', with: { value: '${{ vars.greeting }}' } }),
      stage('second', { stage: 'echo', with: { got: '${{ stages.first.output.value }}', run: '${{ run.pipeline }}' }, needs: ['first'] }),
    ], { variablesSchema: { type: 'object', properties: { greeting: { type: 'string' } } } });
    const { runId } = host.pipelines.startDefinition(def, { variables: { greeting: 'hello' } });
    const run = await host.pipelines.wait(runId);
    assert.deepEqual(stageOf(run, 'second').output, { got: 'hello', run: 'refs' });
    // The journal has it, read by a second connection to the same file.
    const store = openStore(path.join(root, 'data'));
    try {
      const row = store.runs.get(runId)!;
      assert.equal(row.run.state, 'succeeded');
      assert.deepEqual(row.stages.map((s) => [s.stageId, s.state]), [['first', 'succeeded'], ['second', 'succeeded']]);
      assert.deepEqual((JSON.parse(row.stages[1]!.record) as { output: unknown }).output, { got: 'hello', run: 'refs' });
    } finally {
      store.close();
    }
  });

  it('skips a stage whose `if` is false; its dependents still run', async () => {
    const def = pipeline('cond', [
      stage('maybe', { stage: 'echo', with: { x: 1 }, if: 'vars.enabled == true' }),
      stage('after', { stage: 'echo', with: { state: '${{ stages.maybe.state }}' }, needs: ['maybe'] }),
    ], { variablesSchema: { type: 'object', properties: { enabled: { type: 'boolean' } } } });
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def, { variables: { enabled: false } }).runId);
    assert.equal(run.state, 'succeeded');
    assert.equal(stageOf(run, 'maybe').state, 'skipped');
    assert.equal(stageOf(run, 'maybe').attempts.length, 0, 'never called');
    assert.deepEqual(stageOf(run, 'after').output, { state: 'skipped' });
    const ran = await host.pipelines.wait(host.pipelines.startDefinition(def, { variables: { enabled: true } }).runId);
    assert.equal(stageOf(ran, 'maybe').state, 'succeeded');
  });

  it('a failed stage fails the run: dependents skipped, a running stage cancelled, compensations in reverse completion order', async () => {
    const undo = (tag: string) => ({ extension: 'pipe-probe', stage: 'count', with: { tag } });
    const def = pipeline('saga', [
      stage('a', { stage: 'count', with: { tag: 'do-a' }, compensate: undo('undo-a') }),
      stage('b', { stage: 'count', with: { tag: 'do-b' }, needs: ['a'], compensate: undo('undo-${{ stages.b.output.tag }}') }),
      stage('c', { stage: 'count', with: { tag: 'do-c' }, needs: ['b'], compensate: undo('undo-c') }),
      stage('slow', { stage: 'wait', with: { ms: 20000 }, needs: ['a'] }),
      stage('boom', { stage: 'flaky', with: { key: 'saga-boom', failures: 99 }, needs: ['c'] }),
      stage('never', { stage: 'echo', needs: ['boom'] }),
    ]);
    const started = Date.now();
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    assert.ok(Date.now() - started < 15000, 'the 20 s stage was cancelled, not waited for');
    assert.equal(run.state, 'compensated');
    assert.equal(run.error?.code, 'PLINTH_ERR_STAGE_FAILED');
    assert.equal(stageOf(run, 'boom').state, 'failed');
    assert.equal(stageOf(run, 'boom').error?.code, 'PLINTH_ERR_STAGE_FAILED');
    assert.equal(stageOf(run, 'never').state, 'skipped');
    assert.equal(stageOf(run, 'slow').state, 'cancelled');
    for (const id of ['a', 'b', 'c']) {
      assert.equal(stageOf(run, id).state, 'compensated');
      assert.deepEqual(stageOf(run, id).compensation, { state: 'succeeded' });
    }
    const log = await callLog();
    const mine = log.filter((l) => /^(do|undo)-/.test(l));
    assert.deepEqual(mine.slice(-6), ['do-a', 'do-b', 'do-c', 'undo-c', 'undo-do-b', 'undo-a']);
    // Each change was reported, the compensations included.
    const changes = progress.filter((p) => p.runId === run.id).map((p) => `${p.stage ?? 'run'}:${p.state}`);
    assert.ok(changes.includes('c:compensating') && changes.includes('c:compensated') && changes.includes('run:compensating') && changes.includes('run:compensated'));
  });

  it('onFailure: stop runs no compensation', async () => {
    const def = pipeline('stop', [
      stage('a', { stage: 'count', with: { tag: 'stop-a' }, compensate: { extension: 'pipe-probe', stage: 'count', with: { tag: 'stop-undo-a' } } }),
      stage('boom', { stage: 'flaky', with: { key: 'stop-boom', failures: 99 }, needs: ['a'] }),
    ], { onFailure: 'stop' });
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    assert.equal(run.state, 'failed');
    assert.equal(stageOf(run, 'a').state, 'succeeded');
    assert.ok(!(await callLog()).includes('stop-undo-a'));
  });

  it('continueOnError: the run goes on and succeeds, the failure recorded', async () => {
    const def = pipeline('tolerant', [
      stage('shaky', { stage: 'flaky', with: { key: 'tolerant', failures: 99 }, continueOnError: true }),
      stage('next', { stage: 'echo', with: { s: '${{ stages.shaky.state }}' }, needs: ['shaky'] }),
    ]);
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    assert.equal(run.state, 'succeeded');
    assert.equal(stageOf(run, 'shaky').state, 'failed');
    assert.deepEqual(stageOf(run, 'next').output, { s: 'failed' });
  });

  it('a stage past its timeout fails with PLINTH_ERR_STAGE_TIMEOUT (the sandbox deadline)', async () => {
    const def = pipeline('slowpoke', [stage('slow', { stage: 'wait', with: { ms: 5000 }, timeoutMs: 200 })]);
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    assert.equal(run.state, 'failed');
    assert.equal(stageOf(run, 'slow').error?.code, 'PLINTH_ERR_STAGE_TIMEOUT');
  });

  it('the whole run past the pipeline timeout fails with PLINTH_ERR_PIPELINE_TIMEOUT', async () => {
    const def = pipeline('overall', [stage('slow', { stage: 'wait', with: { ms: 10000 } })], { timeoutMs: 300 });
    const run = await host.pipelines.wait(host.pipelines.startDefinition(def).runId);
    assert.equal(run.state, 'failed');
    assert.equal(run.error?.code, 'PLINTH_ERR_PIPELINE_TIMEOUT');
    assert.equal(stageOf(run, 'slow').state, 'cancelled');
  });

  it('cancel: running stages cancelled, compensations run, the run ends cancelled', async () => {
    const def = pipeline('cancel-me', [
      stage('done', { stage: 'count', with: { tag: 'cancel-done' }, compensate: { extension: 'pipe-probe', stage: 'count', with: { tag: 'cancel-undo' } } }),
      stage('long', { stage: 'wait', with: { ms: 20000 }, needs: ['done'] }),
      stage('later', { stage: 'echo', needs: ['long'] }),
    ]);
    const { runId } = host.pipelines.startDefinition(def);
    await waitFor(() => host.pipelines.get(runId)?.stages.find((s) => s.id === 'long')?.state === 'running', 'the long stage to run');
    await host.pipelines.cancel(runId);
    const run = await host.pipelines.wait(runId);
    assert.equal(run.state, 'cancelled');
    assert.equal(run.error?.code, 'PLINTH_ERR_CANCELLED');
    assert.equal(stageOf(run, 'long').state, 'cancelled');
    assert.equal(stageOf(run, 'later').state, 'skipped');
    assert.equal(stageOf(run, 'done').state, 'compensated');
    assert.ok((await callLog()).includes('cancel-undo'));
  });

  it('cancel with force stops at once: no compensation', async () => {
    const def = pipeline('force-me', [
      stage('done', { stage: 'count', with: { tag: 'force-done' }, compensate: { extension: 'pipe-probe', stage: 'count', with: { tag: 'force-undo' } } }),
      stage('long', { stage: 'wait', with: { ms: 20000 }, needs: ['done'] }),
    ]);
    const { runId } = host.pipelines.startDefinition(def);
    await waitFor(() => host.pipelines.get(runId)?.stages.find((s) => s.id === 'long')?.state === 'running', 'the long stage to run');
    await host.pipelines.cancel(runId, { force: true });
    const run = await host.pipelines.wait(runId);
    assert.equal(run.state, 'cancelled');
    assert.equal(stageOf(run, 'done').state, 'succeeded');
    assert.equal(stageOf(run, 'long').state, 'cancelled');
    assert.ok(!(await callLog()).includes('force-undo'));
  });

  it('refuses a definition naming an unknown stage before anything runs (PLINTH_ERR_PIPELINE_INVALID with issues)', async () => {
    const def = pipeline('bad', [stage('x', { stage: 'no_such_stage' })]);
    const err = await rejectsWith(Promise.resolve().then(() => host.pipelines.startDefinition(def)), 'PLINTH_ERR_PIPELINE_INVALID');
    assert.ok((err as unknown as { issues: unknown[] }).issues.length > 0);
    assert.equal(host.pipelines.list({ pipeline: 'bad' }).length, 0, 'nothing journaled');
  });

  it('lists runs newest first, filtered by pipeline and state; unknown ids are PLINTH_ERR_RUN_NOT_FOUND', async () => {
    const runs = host.pipelines.list({ pipeline: 'cond' });
    assert.equal(runs.length, 2);
    assert.ok(runs[0]!.createdAt >= runs[1]!.createdAt);
    assert.ok(host.pipelines.list({ state: 'failed' }).every((r) => r.state === 'failed'));
    await rejectsWith(host.pipelines.wait('nope'), 'PLINTH_ERR_RUN_NOT_FOUND');
    await rejectsWith(host.pipelines.resume('nope'), 'PLINTH_ERR_RUN_NOT_FOUND');
    const ended = runs[0]!.id;
    await rejectsWith(host.pipelines.resume(ended), 'PLINTH_ERR_RUN_NOT_RESUMABLE');
  });
});
