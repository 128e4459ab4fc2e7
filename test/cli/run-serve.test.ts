// Pipelines under a real `plinth serve`: an interrupted run (a `plinth run` SIGKILLed mid-run) listed at start and
// resumed (pipelines.resumeInterrupted), a schedule trigger (a per-second cron) whose stage publishes an event, and
// an event trigger that starts a run with that event as its variable. Observed through the journal (`runs ls`).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { BIN, ROOT, runCli, waitFor } from '../helpers.ts';
import { pipelineRoot } from '../pipeline/helpers.ts';
import { spawnServe } from './helpers.ts';

const PIPELINES = path.join(ROOT, 'test', 'fixtures', 'pipeline', 'pipelines');
const env = { CI: 'true', PLINTH_LOG_LEVEL: 'warn' };

interface Listed {
  id: string;
  pipeline: string;
  state: string;
  trigger: { type: string };
  stages: Array<{ id: string; output?: { topic?: string; from?: string } }>;
}

describe('pipelines under plinth serve', () => {
  it('lists and resumes an interrupted run, runs a schedule trigger and the event trigger its events fire', async () => {
    const root = await pipelineRoot({
      config: `pipelines:\n  resumeInterrupted: true\n  files: [${path.join(PIPELINES, 'every-second.yaml')}, ${path.join(PIPELINES, 'on-tick.yaml')}]\n`,
    });
    const ws = { root, plugins: path.join(root, 'plugins'), trust: path.join(root, 'trust.json'), data: path.join(root, 'data') };
    const callLog = async () => (await readFile(path.join(ws.data, 'extensions', 'pipe-probe', 'calls', 'calls.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
    const runs = async (): Promise<Listed[]> => (JSON.parse((await runCli(['runs', 'ls', '--json', '--limit', '200'], { cwd: root, env })).stdout) as { data: { runs: Listed[] } }).data.runs;

    // An interrupted run: `plinth run` killed while its middle stage holds.
    const child = spawn(process.execPath, ['--no-node-snapshot', BIN, 'run', path.join(PIPELINES, 'hold.yaml')], { cwd: root, env: { ...process.env, ...env }, stdio: 'ignore' });
    const killed = new Promise((resolve) => child.once('exit', resolve));
    await waitFor(async () => (await callLog()).includes('middle'), 'the middle stage to start', 30_000);
    child.kill('SIGKILL');
    await killed;
    const [interrupted] = await runs();
    assert.equal(interrupted!.state, 'interrupted');
    await writeFile(path.join(ws.data, 'extensions', 'pipe-probe', 'calls', 'release'), 'go');

    const serve = spawnServe(ws, ['--no-watch']);
    try {
      await serve.waitFor(new RegExp(`interrupted pipeline run\\(s\\): ${interrupted!.id}`), 30_000, 'the interrupted run listed');
      await serve.waitFor(/pipeline triggers started for 2 pipeline/, 30_000, 'the triggers to start');
      await waitFor(async () => (await runs()).find((r) => r.id === interrupted!.id)?.state === 'succeeded', 'the resumed run to succeed', 30_000);
      assert.deepEqual(await callLog(), ['first', 'middle', 'middle', 'last-after-middle']);
      // The schedule fires every second; each run publishes probe.tick, which starts an on-tick run.
      await waitFor(async () => (await runs()).some((r) => r.pipeline === 'on-tick' && r.state === 'succeeded'), 'a run started by the event trigger', 30_000);
      const all = await runs();
      const scheduled = all.filter((r) => r.pipeline === 'every-second');
      assert.ok(scheduled.length >= 1 && scheduled.every((r) => r.trigger.type === 'schedule'));
      const onTick = all.find((r) => r.pipeline === 'on-tick' && r.state === 'succeeded')!;
      assert.equal(onTick.trigger.type, 'event');
      const seen = onTick.stages[0]!.output!;
      assert.equal(seen.topic, 'probe.tick');
      assert.ok(scheduled.some((r) => r.id === seen.from), 'the event came from a scheduled run');
    } finally {
      serve.signalGroup('SIGTERM');
      await serve.exited;
      serve.kill();
    }
  });
});
