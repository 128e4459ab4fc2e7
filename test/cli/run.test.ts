// `plinth run`, `plinth resume`, `plinth runs ls|show` as real subprocesses: exit codes, progress on stderr, the
// result on stdout, --json; and a `plinth run` killed with SIGKILL mid-run, resumed with no completed stage redone
// (counted by the fixture appending to its granted calls/calls.log).
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { BIN, ROOT, runCli, waitFor } from '../helpers.ts';
import { pipelineRoot } from '../pipeline/helpers.ts';

const PIPELINES = path.join(ROOT, 'test', 'fixtures', 'pipeline', 'pipelines');
const env = { CI: 'true', PLINTH_LOG_LEVEL: 'warn' };

describe('plinth run / resume / runs', () => {
  let root: string;
  const callLog = async () => (await readFile(path.join(root, 'data', 'extensions', 'pipe-probe', 'calls', 'calls.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
  before(async () => {
    root = await pipelineRoot();
  });

  it('runs a pipeline: progress lines on stderr, run id, state and the final stages\' outputs on stdout, exit 0', async () => {
    const r = await runCli(['run', path.join(PIPELINES, 'two.yaml'), '--var', 'word=hi'], { cwd: root, env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^run [0-9a-f-]{36} succeeded$/m);
    assert.deepEqual(JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))), { repeat: { said: 'hi' } });
    assert.match(r.stderr, /say\s+running\s+attempt 1/);
    assert.match(r.stderr, /repeat\s+succeeded\s+attempt 1/);
  });

  it('--json prints the run record in the envelope on stdout', async () => {
    const r = await runCli(['run', path.join(PIPELINES, 'two.yaml'), '--json'], { cwd: root, env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { ok: boolean; command: string; data: { state: string; stages: Array<{ id: string; output: unknown }> } };
    assert.equal(doc.ok, true);
    assert.equal(doc.command, 'run');
    assert.equal(doc.data.state, 'succeeded');
    assert.deepEqual(doc.data.stages.map((s) => s.id), ['say', 'repeat']);
    assert.deepEqual(doc.data.stages[0]!.output, { value: 'hello' }, 'the variable default');
  });

  it('a failed run exits 1; a pipeline refused before running exits 3 with its issues; a missing file is a usage error', async () => {
    const failed = await runCli(['run', path.join(PIPELINES, 'fails.yaml')], { cwd: root, env });
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stdout, /run [0-9a-f-]{36} failed: PLINTH_ERR_STAGE_FAILED/);
    const bad = path.join(root, 'bad.yaml');
    await writeFile(bad, 'name: bad\nversion: 1.0.0\nstages:\n  - { id: x, extension: nowhere, stage: nothing }\n');
    const refused = await runCli(['run', bad, '--json'], { cwd: root, env });
    assert.equal(refused.code, 3);
    const doc = JSON.parse(refused.stdout) as { ok: boolean; error: { code: string; problems: Array<{ path: string }> } };
    assert.equal(doc.error.code, 'PLINTH_ERR_PIPELINE_INVALID');
    assert.ok(doc.error.problems.length > 0);
    const missing = await runCli(['run', path.join(root, 'nope.yaml')], { cwd: root, env });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /PLINTH_ERR_USAGE/);
  });

  it('a `plinth run` killed with SIGKILL mid-run resumes: completed stages are not run again, the running one is', async () => {
    const child = spawn(process.execPath, ['--no-node-snapshot', BIN, 'run', path.join(PIPELINES, 'hold.yaml')], { cwd: root, env: { ...process.env, ...env }, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const before = (await callLog()).length;
    await waitFor(async () => (await callLog()).slice(before).includes('middle'), 'the middle stage to start', 30_000);
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');

    const ls = await runCli(['runs', 'ls', '--json', '--pipeline', 'hold'], { cwd: root, env });
    const runs = (JSON.parse(ls.stdout) as { data: { runs: Array<{ id: string; state: string; stages: Array<{ id: string; state: string }> }> } }).data.runs;
    const killed = runs[0]!;
    assert.equal(killed.state, 'interrupted');
    assert.deepEqual(killed.stages.map((s) => [s.id, s.state]), [['first', 'succeeded'], ['middle', 'running'], ['last', 'pending']]);

    await writeFile(path.join(root, 'data', 'extensions', 'pipe-probe', 'calls', 'release'), 'go');
    const resumed = await runCli(['resume', killed.id], { cwd: root, env });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, new RegExp(`run ${killed.id} succeeded`));
    assert.match(resumed.stdout, /last-after-middle/);
    const calls = (await callLog()).slice(before);
    assert.deepEqual(calls, ['first', 'middle', 'middle', 'last-after-middle'], 'first ran once; middle twice (at-least-once); last once');

    const show = await runCli(['runs', 'show', killed.id, '--json'], { cwd: root, env });
    const record = (JSON.parse(show.stdout) as { data: { state: string; stages: Array<{ id: string; attempts: unknown[] }> } }).data;
    assert.equal(record.state, 'succeeded');
    assert.deepEqual(record.stages.map((s) => [s.id, s.attempts.length]), [['first', 1], ['middle', 2], ['last', 1]]);
    const again = await runCli(['resume', killed.id], { cwd: root, env });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /PLINTH_ERR_RUN_NOT_RESUMABLE/);
  });

  it('runs show prints the stage table; an unknown id is PLINTH_ERR_RUN_NOT_FOUND', async () => {
    const ls = await runCli(['runs', 'ls'], { cwd: root, env });
    assert.equal(ls.code, 0);
    assert.match(ls.stdout, /^ID\s+PIPELINE\s+STATE\s+STAGES/m);
    const failedId = /([0-9a-f-]{36})\s+fails 1\.0\.0\s+failed/.exec(ls.stdout)![1]!;
    const show = await runCli(['runs', 'show', failedId], { cwd: root, env });
    assert.equal(show.code, 0);
    assert.match(show.stdout, /^STAGE\s+STATE\s+ATTEMPTS\s+DURATION\s+ERROR$/m);
    assert.match(show.stdout, /^boom\s+failed\s+1\s+.*PLINTH_ERR_STAGE_FAILED/m);
    const unknown = await runCli(['runs', 'show', 'nope'], { cwd: root, env });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /PLINTH_ERR_RUN_NOT_FOUND/);
  });
});
