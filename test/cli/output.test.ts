// Extension output never corrupts ours: what a worker or an isolate prints is the host log's, as that extension's
// lines (level, extension id), never stdout; a permission denial has the same code and hint in both (issue 9).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers.ts';
import { cliWorkspace, records, type CliWorkspace } from './helpers.ts';

const host = (ws: CliWorkspace, ...more: string[]) => ['--plugins', ws.plugins, '--trust', ws.trust, '--data-dir', ws.data, ...more];
const LEVEL: Record<number, string> = { 20: 'debug', 30: 'info', 40: 'warn', 50: 'error' };

function lines(stderr: string, extension: string): Array<{ level: string; msg: string; console: unknown }> {
  return records(stderr)
    .filter((r) => r.extension === extension && r.from === 'extension')
    .map((r) => ({ level: LEVEL[r.level as number] ?? String(r.level), msg: String(r.msg), console: (r.console ?? (r.fields as { console?: unknown } | undefined)?.console) }));
}

describe('extension output goes to the host log', () => {
  it('a worker\'s console.log, console.error and raw stdout writes never reach stdout of `call --json`', async () => {
    const ws = await cliWorkspace(['talk-worker']);
    const r = await runCli(['call', 'talk-worker', 'say', ...host(ws, '--json', '-v', '--input', '{"a":1}')], { cwd: ws.root });
    assert.equal(r.code, 0, r.stderr);
    // stdout is exactly the envelope: it parses as one JSON document.
    assert.deepEqual(JSON.parse(r.stdout), { ok: true, command: 'call', data: { said: 'hello', input: { a: 1 } }, error: null });
    const got = lines(r.stderr, 'talk-worker');
    assert.deepEqual(
      got.filter((l) => l.console !== undefined).map((l) => [l.level, l.msg]),
      [
        ['info', 'worker console.log hello { n: 1 }'],
        ['error', 'worker console.error'],
        ['info', 'worker raw stdout'],
      ],
    );
  });

  it('without -v the worker\'s info lines are not shown, and stdout is still only the output', async () => {
    const ws = await cliWorkspace(['talk-worker']);
    const r = await runCli(['call', 'talk-worker', 'say', ...host(ws, '--log-format', 'text')], { cwd: ws.root });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { said: 'hello', input: {} });
    assert.match(r.stderr, /talk-worker: worker console\.error/);
    assert.doesNotMatch(r.stderr, /worker console\.log/);
  });

  it('an isolate\'s console.* are its log lines (they used to be dropped, even with -v)', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const r = await runCli(['call', 'talk-isolate', 'say', ...host(ws, '--json', '-v')], { cwd: ws.root });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { ok: boolean }).ok, true);
    const got = lines(r.stderr, 'talk-isolate').filter((l) => l.console !== undefined);
    assert.deepEqual(got.slice(0, 2).map((l) => [l.level, l.msg]), [
      ['info', 'isolate console.log HI! 42 {"n":1}'],
      ['warn', 'isolate console.warn'],
    ]);
    assert.equal(got[2]!.level, 'error');
    assert.match(got[2]!.msg, /^Error: isolate console\.error\n\s+at (Object\.)?say \(plinth-extension:\/\/talk-isolate\/index\.js:\d+:\d+\)/);
  });

  it('a permission denial is PERMISSION_DENIED with the same hint in an isolate as in a worker', async () => {
    const ws = await cliWorkspace(['talk-worker', 'talk-isolate']);
    const fromWorker = await runCli(['call', 'talk-worker', 'denied', ...host(ws, '--json')], { cwd: ws.root });
    const fromIsolate = await runCli(['call', 'talk-isolate', 'denied', ...host(ws, '--json')], { cwd: ws.root });
    const w = (JSON.parse(fromWorker.stdout) as { error: { code: string; hint: string; message: string } }).error;
    const i = (JSON.parse(fromIsolate.stdout) as { error: { code: string; hint: string; message: string } }).error;
    assert.equal(w.code, 'PLINTH_ERR_PERMISSION_DENIED', fromWorker.stderr);
    assert.equal(i.code, 'PLINTH_ERR_PERMISSION_DENIED', fromIsolate.stderr);
    assert.equal(i.hint, w.hint);
    assert.match(i.hint, /add "kv": true to "plinth\.permissions"/);
    assert.match(i.message, /the key-value store is not granted/);
    assert.match(fromIsolate.stderr, /^PLINTH_ERR_PERMISSION_DENIED: /m);
    assert.match(fromIsolate.stderr, /hint: add "kv": true/);
  });
});
