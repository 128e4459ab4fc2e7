// Ctrl-C, SIGTERM and --no-watch as a person meets them: `plinth serve` leads its own process group, and the
// signal goes to the whole group — the isolate sandbox process included — as a terminal sends it (issue 9).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { BIN } from '../helpers.ts';
import { cliWorkspace, records, spawnServe } from './helpers.ts';
import { writeExt } from '../registry/helpers.ts';

/** Index of the first JSON record matching all `fields`, or -1. */
function at(recs: Array<Record<string, unknown>>, fields: Record<string, unknown>): number {
  return recs.findIndex((r) => Object.entries(fields).every(([k, v]) => r[k] === v));
}

describe('plinth serve: Ctrl-C, SIGTERM, --no-watch', () => {
  it('Ctrl-C (SIGINT to the process group) stops every extension in reverse dependency order and exits 0', async () => {
    const ws = await cliWorkspace([], { bundled: true });
    // A chain on top of the bundled extensions (two of which are isolates, in the shared sandbox process).
    await writeExt(ws.plugins, { id: 'chain-base' });
    await writeExt(ws.plugins, { id: 'chain-mid', dependencies: { 'chain-base': '^1.0.0' } });
    await writeExt(ws.plugins, { id: 'chain-top', dependencies: { 'chain-mid': '^1.0.0' } });
    const serve = spawnServe(ws, ['--json']);
    try {
      await serve.waitFor(/watching the plugin directories/, 30_000, 'serve to start');
      serve.signalGroup('SIGINT');
      const { code, signal } = await serve.exited;
      const log = serve.log();
      assert.equal(signal, null, log);
      assert.equal(code, 0, log);
      assert.doesNotMatch(log, /unsettled top-level await/);
      const recs = records(log);
      const ids = ['analytics', 'audit-log', 'csv-ingest', 'policy-check', 'record-validate', 'redact-fields', 'report', 'storage-writer', 'chain-base', 'chain-mid', 'chain-top'];
      for (const id of ids) {
        assert.ok(at(recs, { extension: id, state: 'stopped' }) >= 0, `${id} stopped\n${log}`);
        assert.equal(at(recs, { extension: id, state: 'failed' }), -1, `${id} never failed\n${log}`);
      }
      // Dependents first: each one is stopped before its dependency starts stopping.
      const stopped = (id: string) => at(recs, { extension: id, state: 'stopped' });
      const stopping = (id: string) => at(recs, { extension: id, state: 'stopping' });
      assert.ok(stopped('chain-top') < stopping('chain-mid'), log);
      assert.ok(stopped('chain-mid') < stopping('chain-base'), log);
      assert.ok(stopped('record-validate') < stopping('audit-log'), log);
      assert.ok(at(recs, { msg: 'stopped' }) > stopped('chain-base'), log);
      // No sandbox ended on its own: the terminal's signal reached the sandbox process, which ignored it.
      assert.doesNotMatch(log, /sandbox ended|PLINTH_ERR_SANDBOX_CRASHED/);
    } finally {
      serve.kill();
    }
  });

  it('Ctrl-C during start-up: start-up finishes, then everything stops gracefully, exit 0', async () => {
    const ws = await cliWorkspace(['talk-worker', 'talk-isolate'], { bundled: true });
    const serve = spawnServe(ws, ['--json']);
    try {
      await serve.waitFor(/resolved → starting/, 30_000, 'the first extension starting');
      serve.signalGroup('SIGINT');
      const { code } = await serve.exited;
      assert.equal(code, 0, serve.log());
      const recs = records(serve.log());
      assert.equal(recs.filter((r) => r.state === 'failed').length, 0, serve.log());
      for (const id of ['talk-worker', 'talk-isolate', 'analytics', 'audit-log', 'csv-ingest', 'policy-check', 'record-validate', 'redact-fields', 'report', 'storage-writer']) {
        assert.ok(at(recs, { extension: id, state: 'stopped' }) >= 0, `${id} stopped\n${serve.log()}`);
      }
      assert.doesNotMatch(serve.log(), /watching the plugin directories for changes/);
    } finally {
      serve.kill();
    }
  });

  it('a second Ctrl-C while extensions are still stopping exits at once with 130', async () => {
    const ws = await cliWorkspace(['slow-stop']);
    const serve = spawnServe(ws, ['--no-watch', '--stop-timeout', '60000', '--log-format', 'text']);
    try {
      await serve.waitFor(/serving 1 extension/, 30_000, 'serve to start');
      serve.signalGroup('SIGINT');
      await serve.waitFor(/slow-stop: stop\(\) called/, 10_000, 'slow-stop to be asked to stop');
      const t0 = Date.now();
      serve.signalGroup('SIGINT');
      const { code } = await serve.exited;
      assert.equal(code, 130, serve.log());
      assert.ok(Date.now() - t0 < 5000, `exited at once (took ${Date.now() - t0} ms)`);
      assert.match(serve.log(), /SIGINT again: exiting at once/);
    } finally {
      serve.kill();
    }
  });

  it('SIGTERM behaves like the first Ctrl-C: a graceful stop, exit 0', async () => {
    const ws = await cliWorkspace(['talk-worker', 'talk-isolate']);
    const serve = spawnServe(ws, ['--log-format', 'text']);
    try {
      await serve.waitFor(/watching the plugin directories/, 30_000, 'serve to start');
      serve.signalGroup('SIGTERM');
      const { code } = await serve.exited;
      assert.equal(code, 0, serve.log());
      assert.match(serve.log(), /SIGTERM: stopping/);
      assert.match(serve.log(), /talk-worker: stopping → stopped/);
      assert.match(serve.log(), /talk-isolate: stopping → stopped/);
    } finally {
      serve.kill();
    }
  });

  it('serve --no-watch keeps serving until stopped (it used to exit 13 a second after start-up)', async () => {
    const ws = await cliWorkspace(['talk-worker', 'talk-isolate']);
    const serve = spawnServe(ws, ['--no-watch', '--log-format', 'text']);
    try {
      await serve.waitFor(/serving 2 extension/, 30_000, 'serve to start');
      // talk-worker's health probe runs every 200 ms and logs a heartbeat: fifteen of them is three seconds.
      await serve.waitFor(/heartbeat 15\b/, 20_000, 'fifteen heartbeats');
      assert.doesNotMatch(serve.log(), /watching the plugin directories for changes/);
      serve.signalGroup('SIGINT');
      const { code } = await serve.exited;
      assert.equal(code, 0, serve.log());
      assert.match(serve.log(), /talk-isolate: stopping → stopped/);
    } finally {
      serve.kill();
    }
  });
});

describe('plinth call: Ctrl-C', () => {
  it('Ctrl-C during a call stops the host and exits 130, before the call would have timed out', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const child = spawn(process.execPath, [BIN, 'call', 'talk-isolate', 'hang', '--plugins', ws.plugins, '--trust', ws.trust, '--data-dir', ws.data, '-v', '--log-format', 'text'], {
      cwd: ws.root,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let log = '';
    const seen = new Promise<void>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        log += d.toString();
        if (/talk-isolate: hang: waiting forever/.test(log)) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await Promise.race([seen, exited.then(() => assert.fail(`call exited early:\n${log}`))]);
      const t0 = Date.now();
      process.kill(-child.pid!, 'SIGINT');
      assert.equal(await exited, 130, log);
      assert.ok(Date.now() - t0 < 4000, `stopped before the 5 s call timeout (took ${Date.now() - t0} ms)`);
      assert.match(log, /SIGINT: stopping the call/);
      assert.match(log, /talk-isolate: stopping → stopped/);
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
});
