// The journal's ordering guarantees, seen from inside the stage calls (issue 11 "Execution"): when a stage's call
// starts, its own `running` row and every upstream output are committed — read by a second connection to the same
// store file — and progress reports a stage's success before its dependents start and the run's end last.
// The engine (group commits: one upstream output and its dependents' `running` rows share a commit) must never be
// ahead of the journal it acts on.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { PipelineEngine, RunJournal, readRun, type EngineProgress, type PipelineDefinition, type RunRecord } from '../../../src/pipeline/index.ts';
import { DurableBus } from '../../../src/events/index.ts';
import { evaluateCondition, resolveTemplate } from '../../../src/pipeline/definition/index.ts';
import { openStore, type Store } from '../../../src/store/index.ts';
import type { Json } from '../../../src/sdk/index.ts';
import { tempDir } from '../../helpers.ts';
import { pipeline, stage } from '../helpers.ts';

describe('pipeline engine: the journal is never behind a stage call', () => {
  const stores: Store[] = [];
  after(() => {
    for (const s of stores) s.close();
  });

  it('each call sees its upstream outputs and its own `running` committed; success is reported before dependents start, the run last', async () => {
    const dir = await tempDir('plinth-journal-order-');
    const store = openStore(path.join(dir, 'data'));
    const reader = openStore(path.join(dir, 'data'));
    stores.push(store, reader);
    // root → 4 in parallel → join, then a chain of 3: fan-out, fan-in and chains.
    const stages = [stage('root', { stage: 'echo', with: { n: 0 } })];
    for (let i = 0; i < 4; i++) stages.push(stage(`mid${i}`, { stage: 'echo', with: { up: '${{ stages.root.output.n }}', n: i + 1 }, needs: ['root'] }));
    stages.push(stage('join', { stage: 'echo', with: { n: 5 }, needs: ['mid0', 'mid1', 'mid2', 'mid3'] }));
    for (let i = 0; i < 3; i++) stages.push(stage(`tail${i}`, { stage: 'echo', with: { n: 6 + i }, needs: [i === 0 ? 'join' : `tail${i - 1}`] }));
    const def: PipelineDefinition = pipeline('journal-order', stages, { maxConcurrentStages: 4 });
    const byId = new Map(def.stages.map((s) => [s.id, s]));
    const problems: string[] = [];
    const progress: EngineProgress[] = [];
    let runId = '';
    const engine = new PipelineEngine({
      journal: () => store.runs,
      resolveTemplate,
      evaluateCondition,
      maxConcurrentStages: 4,
      call: async (_extension, _stage, input) => {
        const n = (input as { n: number }).n;
        const id = def.stages[n]!.id;
        const row = reader.runs.get(runId);
        const states = new Map(row?.stages.map((s) => [s.stageId, { state: s.state, record: JSON.parse(s.record) as { output?: Json } }]) ?? []);
        if (states.get(id)?.state !== 'running') problems.push(`${id} called while the journal has it ${states.get(id)?.state}`);
        for (const need of byId.get(id)!.needs) {
          const up = states.get(need);
          if (up?.state !== 'succeeded' || up.record.output === undefined) problems.push(`${id} called while the journal has ${need} ${up?.state} without its output`);
        }
        const started = progress.findIndex((p) => p.stage === id && p.state === 'running');
        for (const need of byId.get(id)!.needs) {
          const done = progress.findIndex((p) => p.stage === need && p.state === 'succeeded');
          if (done < 0 || done > started) problems.push(`${id} reported running before ${need} was reported succeeded`);
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
        return input;
      },
    });
    engine.onProgress((p) => void progress.push(p));
    runId = engine.start(def).runId;
    const run = await engine.wait(runId);
    engine.close();
    assert.equal(run.state, 'succeeded');
    assert.deepEqual(problems, []);
    const last = progress.at(-1)!;
    assert.equal(last.stage, undefined, 'the run is reported last');
    assert.equal(last.state, 'succeeded');
    assert.equal(progress.filter((p) => p.state === 'succeeded' && p.stage !== undefined).length, def.stages.length, 'every stage reported succeeded once');
    const row = reader.runs.get(runId)!;
    assert.equal(row.run.state, 'succeeded');
    assert.ok(row.stages.every((s) => s.state === 'succeeded'), 'every stage journaled succeeded');
  });
});

describe('pipeline engine: the bus and the run journal share the turn\'s one commit', () => {
  it('an event published and a stage row queued in the same turn land in one transaction: a subscriber that hears the event finds the row committed', async () => {
    const dir = await tempDir('plinth-journal-shared-');
    const store = openStore(path.join(dir, 'data'));
    const reader = openStore(path.join(dir, 'data'));
    const bus = new DurableBus({ store });
    const journal = new RunJournal(() => store.runs);
    try {
      const record: RunRecord = { id: 'run-1', pipeline: 'p', version: '1', state: 'running', variables: {}, trigger: { type: 'manual' }, createdAt: new Date().toISOString(), stages: [] };
      journal.saveRun(record, '{}', 'me');
      const rowWhenHeard = new Promise<string | undefined>((resolve) => bus.subscribe('pipeline.p.stage.s.running', () => resolve(reader.runs.get('run-1')?.stages.find((s) => s.stageId === 's')?.state)));
      // The event first, the row second: with a commit each, the event's would land (and be delivered) first.
      const published = bus.publish('pipeline.p.stage.s.running', { stage: 's' }, 'host');
      journal.queue(record, [{ id: 's', state: 'running', attempts: [] }]);
      assert.equal(reader.runs.get('run-1')?.stages.length, 0, 'nothing of the turn is committed before its end');
      await Promise.all([published, journal.committed()]);
      assert.equal(await rowWhenHeard, 'running');
    } finally {
      await bus.close();
      store.close();
      reader.close();
    }
  });
});

describe('pipeline engine: a run read back from the journal lists every stage', () => {
  it('stages that have not changed yet have no row and read back as pending, in definition order (another connection, mid-run)', async () => {
    const dir = await tempDir('plinth-journal-pending-');
    const store = openStore(path.join(dir, 'data'));
    const reader = openStore(path.join(dir, 'data'));
    const release = Promise.withResolvers<void>();
    const called = Promise.withResolvers<void>();
    const engine = new PipelineEngine({
      journal: () => store.runs,
      resolveTemplate,
      evaluateCondition,
      call: async (_e, _s, input) => {
        called.resolve();
        await release.promise;
        return input;
      },
    });
    try {
      const def = pipeline('pending-rows', [stage('first', { stage: 'echo', with: { n: 1 } }), stage('second', { stage: 'echo', with: { n: 2 }, needs: ['first'] }), stage('third', { stage: 'echo', with: { n: 3 }, needs: ['second'] })]);
      const { runId } = engine.start(def);
      await called.promise;
      assert.deepEqual(reader.runs.get(runId)!.stages.map((s) => s.stageId), ['first'], 'only the stage that changed has a row');
      const seen = readRun(new RunJournal(() => reader.runs), runId)!;
      assert.deepEqual(seen.stages.map((s) => [s.id, s.state]), [['first', 'running'], ['second', 'pending'], ['third', 'pending']]);
      release.resolve();
      assert.equal((await engine.wait(runId)).state, 'succeeded');
      assert.deepEqual(readRun(new RunJournal(() => reader.runs), runId)!.stages.map((s) => [s.id, s.state]), [['first', 'succeeded'], ['second', 'succeeded'], ['third', 'succeeded']]);
    } finally {
      release.resolve();
      engine.close();
      store.close();
      reader.close();
    }
  });
});
