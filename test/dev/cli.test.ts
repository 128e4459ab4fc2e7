// `plinth dev` as a real child process (issue 13): it serves the folder, is reachable with `plinth call --remote`,
// reloads on save, shows a broken save at file:line:column with a code frame while the old version keeps serving,
// and stops on SIGINT. Waits are on its output, bounded.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BIN, makePublisher, runCli } from '../helpers.ts';
import { signExtension } from '../../src/trust/index.ts';
import { RUNNER_TOKEN, remoteHost } from '../sandbox/remote/helpers.ts';
import { fixture } from './helpers.ts';

function spawnDev(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, 'dev', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, PLINTH_LOG_LEVEL: 'info', ...env } });
  let log = '';
  const waiters = new Set<() => void>();
  child.stderr.on('data', (d: Buffer) => {
    log += d.toString();
    for (const w of waiters) w();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
    for (const w of waiters) w();
  });
  /** Resolves once the log from `from` on matches `re`. */
  const waitFor = (re: RegExp, from: number, ms = 30_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${re}; log:\n${log}`)), ms);
      const check = () => {
        if (re.test(log.slice(from))) finish();
        else if (gone) finish(new Error(`plinth dev exited while waiting for ${re}; log:\n${log}`));
      };
      const finish = (err?: Error) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      waiters.add(check);
      check();
    });
  return {
    log: () => log,
    waitFor,
    exited,
    signal: (s: NodeJS.Signals) => process.kill(-child.pid!, s),
    kill: () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
    },
  };
}

describe('plinth dev (the command)', () => {
  it('serves, answers plinth call --remote, reloads on save, shows a broken save with a code frame while the old version serves, stops on SIGINT', async () => {
    const { root, dir } = await fixture('greeter');
    const dev = spawnDev(root, [dir]);
    try {
      await dev.waitFor(/serving greeter 1\.0\.0 in \d+ ms/, 0);
      await dev.waitFor(/call a stage: {2}plinth call --remote greeter greet --data-dir \S+/, 0);
      const dataDir = path.join(dir, '.plinth', 'data');
      const call = async () => {
        const r = await runCli(['call', '--remote', 'greeter', 'greet', '--data-dir', dataDir, '--input', '{"name":"ada"}'], { cwd: root });
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout) as unknown;
      };
      assert.deepEqual(await call(), { message: 'hello ada' });
      // The extension's own console line is in the stream, tagged with its level.
      await dev.waitFor(/INFO {2}greeter: greeting ada/, 0);

      let mark = dev.log().length;
      await writeFile(path.join(dir, 'lib.js'), "export const salutation = 'hi';\n");
      await dev.waitFor(/reloaded greeter 1\.0\.0 in \d+ ms/, mark);
      assert.deepEqual(await call(), { message: 'hi ada' });

      mark = dev.log().length;
      await writeFile(path.join(dir, 'lib.js'), 'export const salutation = ;\n');
      await dev.waitFor(/save rejected — greeter 1\.0\.0 \(reload 2\) keeps serving\nlib\.js:1:27 {2}PLINTH_ERR_EXTENSION_LOAD_FAILED {2}syntax error: Unexpected token\n {4}> 1 \| export const salutation = ;\n +\| {27}\^/, mark);
      assert.deepEqual(await call(), { message: 'hi ada' }, 'the last good version still serves');
      // Not a terminal: no colour codes.
      assert.ok(!dev.log().includes('\u001b['), 'no ANSI colours when stderr is not a terminal');

      dev.signal('SIGINT');
      assert.equal(await dev.exited, 0, dev.log());
      assert.ok(!existsSync(path.join(dataDir, 'serve.json')), 'serve.json removed at stop');
      assert.ok(!existsSync(path.join(dataDir, 'snapshots')), 'the read-only snapshots removed at stop');
      assert.ok(existsSync(path.join(dataDir, 'plinth.db')), 'the store (kv) stays');
    } finally {
      dev.kill();
    }
  });

  it('with --log-format json a rejected save is one record with its problems at file, line and column; a second session on the folder is refused', async () => {
    const { root, dir } = await fixture('greeter');
    const dev = spawnDev(root, [dir, '--log-format', 'json']);
    try {
      await dev.waitFor(/"msg":"serving greeter 1\.0\.0 in \d+ ms"/, 0);
      // A second session on the same folder (same data dir) is refused.
      const second = await runCli(['dev', dir], { cwd: root });
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /PLINTH_ERR_DEV_ALREADY_RUNNING: a host already serves the data dir/);
      const mark = dev.log().length;
      await writeFile(path.join(dir, 'package.json'), '{ "name": "greeter", ');
      await dev.waitFor(/"dev":"rejected"/, mark);
      const record = dev
        .log()
        .slice(mark)
        .split('\n')
        .filter((l) => l.includes('"dev":"rejected"'))
        .map((l) => JSON.parse(l) as { problems: Array<{ code: string; file: string; line: number; column: number }>; msg: string })[0];
      assert.ok(record);
      assert.match(record.msg, /^save rejected: greeter 1\.0\.0 keeps serving: package\.json:\d+:\d+ PLINTH_ERR_PACKAGE_JSON_INVALID: /);
      assert.equal(record.problems[0]?.code, 'PLINTH_ERR_PACKAGE_JSON_INVALID');
      assert.equal(record.problems[0]?.file, path.join(dir, 'package.json'));
      assert.equal(typeof record.problems[0]?.line, 'number');
      dev.signal('SIGTERM');
      assert.equal(await dev.exited, 0, dev.log());
    } finally {
      dev.kill();
    }
  });

  it('--url joins a running host as a runner: the extension serves there, and a save re-registers the new version', async () => {
    const publisher = makePublisher('dev-remote');
    const remote = await remoteHost([publisher]);
    const { root, dir } = await fixture('greeter');
    await signExtension(dir, publisher.privateKey, publisher.id);
    const dev = spawnDev(root, [dir, '--url', remote.url, '--token', RUNNER_TOKEN]);
    try {
      await dev.waitFor(/joined \S+ as a runner of greeter/, 0);
      assert.equal(remote.host.list().find((e) => e.id === 'greeter')?.runtime, 'remote');
      assert.deepEqual(await remote.host.call('greeter', 'greet', { name: 'ada' }), { message: 'hello ada' });
      const mark = dev.log().length;
      await writeFile(path.join(dir, 'lib.js'), "export const salutation = 'hi';\n");
      await dev.waitFor(/reloaded greeter 1\.0\.0 in \d+ ms/, mark);
      assert.deepEqual(await remote.host.call('greeter', 'greet', { name: 'ada' }), { message: 'hi ada' });
      dev.signal('SIGTERM');
      assert.equal(await dev.exited, 0, dev.log());
    } finally {
      dev.kill();
      await remote.stop();
    }
  });

  it('a folder without package.json is a usage error (exit 2)', async () => {
    const { root } = await fixture('greeter');
    const r = await runCli(['dev', path.join(root, 'nope')], { cwd: root });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PLINTH_ERR_USAGE/);
  });
});
