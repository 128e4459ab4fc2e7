// `plinth dev --record` and `plinth replay` (issue 13): calls recorded through a real dev session, code changed,
// replayed in a real sandbox; limits on what is recorded and read back, each with its coded error.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { DevSession, recordingFile, replay, type RecordedCall } from '../../src/dev/index.ts';
import { listPackageFiles } from '../../src/trust/index.ts';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import type { PlinthError } from '../../src/errors.ts';
import { runCli } from '../helpers.ts';
import { devConfig, fixture } from './helpers.ts';

after(() => IsolateProcess.shutdownAll());

const silent = pino({ level: 'silent' });

/** Runs a recording dev session, makes `calls`, waits until each is recorded, stops. */
async function record(dir: string, root: string, calls: Array<[string, unknown]>, limits?: { maxPerStage?: number; maxEntryBytes?: number }): Promise<{ recorded: RecordedCall[]; warnings: PlinthError[] }> {
  const base = await devConfig(root);
  const config = { ...base, recordings: { ...base.recordings, ...limits } };
  const s = new DevSession({ dir, config, logger: silent, control: false, record: true });
  const recorded: RecordedCall[] = [];
  const warnings: PlinthError[] = [];
  s.on('recorded', (c) => recorded.push(c));
  s.on('warning', (w) => warnings.push(w));
  try {
    await s.start();
    for (const [stage, input] of calls) await s.host!.call('greeter', stage, input as never).catch(() => undefined);
  } finally {
    await s.stop(); // flushes the recorder first
  }
  return { recorded, warnings };
}

describe('plinth dev --record, then plinth replay', () => {
  it('records each call in <dir>/.plinth/recordings/<stage>.jsonl; after a code change replay shows which outputs changed, and --stage filters', async () => {
    const { root, dir } = await fixture('greeter');
    const { recorded } = await record(dir, root, [
      ['greet', { name: 'ada' }],
      ['greet', { name: 'bob' }],
      ['shout', { text: 'hey' }],
    ]);
    assert.equal(recorded.length, 3);
    const greetLines = (await readFile(recordingFile(dir, 'greet'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as RecordedCall);
    assert.deepEqual(greetLines.map((l) => [l.stage, l.input, l.output, l.version]), [
      ['greet', { name: 'ada' }, { message: 'hello ada' }, '1.0.0'],
      ['greet', { name: 'bob' }, { message: 'hello bob' }, '1.0.0'],
    ]);
    assert.deepEqual((await readdir(path.join(dir, '.plinth', 'recordings'))).sort(), ['greet.jsonl', 'shout.jsonl']);
    // The recordings are not part of the package: never signed, hashed or copied into a snapshot.
    assert.ok((await listPackageFiles(dir)).every((f) => !f.startsWith('.plinth')));

    // Unchanged code: everything is the same.
    const config = await devConfig(root);
    let result = await replay({ dir, config, logger: silent });
    assert.deepEqual(result.counts, { same: 3, changed: 0, invalid: 0 });

    // A change that breaks greet's output.
    await writeFile(path.join(dir, 'lib.js'), "export const salutation = 'hi';\n");
    result = await replay({ dir, config, logger: silent });
    assert.deepEqual(result.counts, { same: 1, changed: 2, invalid: 0 });
    const changed = result.entries.filter((e) => e.status === 'changed');
    assert.deepEqual(changed.map((e) => [e.stage, e.line, e.changes]), [
      ['greet', 1, [{ path: '/message', kind: 'changed', before: 'hello ada', after: 'hi ada' }]],
      ['greet', 2, [{ path: '/message', kind: 'changed', before: 'hello bob', after: 'hi bob' }]],
    ]);

    // --stage: only that stage's recordings.
    result = await replay({ dir, config, logger: silent, stage: 'shout' });
    assert.deepEqual(result.entries.map((e) => [e.stage, e.status]), [['shout', 'same']]);

    // The CLI: a readable diff, exit 1 when something changed, 0 when nothing did.
    const cli = await runCli(['replay', dir], { cwd: root, env: { NO_COLOR: '1' } });
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stdout, /greet {2}\.plinth\/recordings\/greet\.jsonl:1 .*output changed\n {4}~ \/message: "hello ada" → "hi ada"/);
    assert.match(cli.stdout, /3 recorded call\(s\) replayed against greeter 1\.0\.0: 1 same, 2 changed/);
    assert.ok(!cli.stdout.includes('\u001b['), 'no colour with NO_COLOR');
    const onlyShout = await runCli(['replay', dir, '--stage', 'shout'], { cwd: root });
    assert.equal(onlyShout.code, 0, onlyShout.stderr);
    assert.match(onlyShout.stdout, /1 recorded call\(s\) replayed against greeter 1\.0\.0: 1 same, 0 changed/);
    const unknown = await runCli(['replay', dir, '--stage', 'nope'], { cwd: root });
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.match(unknown.stderr, /PLINTH_ERR_USAGE.*no stage "nope"/);
  });

  it('a recorded call whose stage now fails is shown as failing, with the error code', async () => {
    const { root, dir } = await fixture('greeter');
    await record(dir, root, [['greet', { name: 'ada' }]]);
    const source = await readFile(path.join(dir, 'index.js'), 'utf8');
    await writeFile(path.join(dir, 'index.js'), source.replace('return { message:', "if (input.name === 'ada') throw new Error('no ada');\n      return { message:"));
    const result = await replay({ dir, config: await devConfig(root), logger: silent });
    assert.equal(result.entries[0]?.status, 'failed');
    assert.equal(result.entries[0]?.now.error?.code, 'PLINTH_ERR_STAGE_FAILED');
  });

  it('recording is bounded: recordings.maxPerStage calls per stage (PLINTH_ERR_RECORDING_LIMIT, once), recordings.maxEntryBytes per call (PLINTH_ERR_RECORDING_TOO_LARGE)', async () => {
    const { root, dir } = await fixture('greeter');
    const { warnings } = await record(
      dir,
      root,
      [
        ['greet', { name: 'a' }],
        ['greet', { name: 'b' }],
        ['greet', { name: 'c' }],
        ['greet', { name: 'd' }],
        ['shout', { text: 'x'.repeat(2000) }],
      ],
      { maxPerStage: 2, maxEntryBytes: 1000 },
    );
    const lines = (await readFile(recordingFile(dir, 'greet'), 'utf8')).trim().split('\n');
    assert.equal(lines.length, 2);
    const limit = warnings.filter((w) => w.code === 'PLINTH_ERR_RECORDING_LIMIT');
    assert.equal(limit.length, 1, 'logged once per stage');
    assert.match(limit[0]!.message, /recordings\.maxPerStage \(2\)/);
    const large = warnings.filter((w) => w.code === 'PLINTH_ERR_RECORDING_TOO_LARGE');
    assert.equal(large.length, 1);
    assert.match(large[0]!.message, /recordings\.maxEntryBytes is 1000/);
    await assert.rejects(readFile(recordingFile(dir, 'shout')), { code: 'ENOENT' });
  });

  it('replay refuses recording lines that are not recorded calls or are too long, naming file:line, and exits 1', async () => {
    const { root, dir } = await fixture('greeter');
    await record(dir, root, [['greet', { name: 'ada' }]]);
    const file = recordingFile(dir, 'greet');
    await appendFile(file, 'not json\n' + JSON.stringify({ stage: 'greet' }) + '\n' + JSON.stringify({ stage: 'greet', input: { name: 'x'.repeat(5000) }, output: {} }) + '\n');
    const base = await devConfig(root);
    const result = await replay({ dir, config: { ...base, recordings: { ...base.recordings, maxEntryBytes: 1000 } }, logger: silent });
    assert.deepEqual(result.problems.map((p) => [p.code, p.line]), [
      ['PLINTH_ERR_RECORDING_INVALID', 2],
      ['PLINTH_ERR_RECORDING_INVALID', 3],
      ['PLINTH_ERR_RECORDING_INVALID', 4],
    ]);
    assert.match(result.problems[2]!.message, /recordings\.maxEntryBytes \(1000 bytes\)/);
    assert.deepEqual(result.counts, { same: 1, changed: 0, invalid: 3 });
    const cli = await runCli(['replay', dir], { cwd: root });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /\.plinth\/recordings\/greet\.jsonl:2:1 {2}PLINTH_ERR_RECORDING_INVALID/);
  });

  it('a stage name cannot take a recording out of its folder', async () => {
    const { dir } = await fixture('greeter');
    const file = recordingFile(dir, '../../etc/x');
    assert.equal(path.dirname(file), path.join(dir, '.plinth', 'recordings'));
    assert.equal(path.basename(file), '%2e%2e%2f%2e%2e%2fetc%2fx.jsonl');
  });
});
