// `plinth call` shows the real start failure and `plinth ls` checks what `call` would check (issue 9).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, writeFile } from 'node:fs/promises';
import { FIXTURES, runCli, tempDir } from '../helpers.ts';
import { signExtension } from '../../src/trust/index.ts';
import { cliWorkspace, publisher, type CliWorkspace } from './helpers.ts';

interface Entry {
  id: string;
  state: string;
  reason?: { code: string; message: string; file?: string; hint?: string; problems?: Array<{ path: string }> };
}

const host = (ws: CliWorkspace, ...more: string[]) => ['--plugins', ws.plugins, '--trust', ws.trust, '--data-dir', ws.data, ...more];

async function lsJson(ws: CliWorkspace, ...more: string[]): Promise<{ code: number; entries: Map<string, Entry>; stderr: string }> {
  const r = await runCli(['ls', ...host(ws, '--json', ...more)], { cwd: ws.root });
  const envelope = JSON.parse(r.stdout) as { data: { extensions: Entry[] } };
  return { code: r.code, entries: new Map(envelope.data.extensions.map((e) => [e.id, e])), stderr: r.stderr };
}

describe('plinth call: the real start failure', () => {
  it('a bad extensions.<id>.config: its code, the problem with its path, the config file', async () => {
    const ws = await cliWorkspace(['talk-worker']);
    await writeFile(path.join(ws.root, 'plinth.config.yaml'), 'extensions:\n  talk-worker:\n    config: { greeting: 5 }\n');
    const r = await runCli(['call', 'talk-worker', 'say', ...host(ws)], { cwd: ws.root });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^PLINTH_ERR_EXTENSION_CONFIG_INVALID: extension talk-worker: its config does not match its configSchema$/m);
    assert.match(r.stderr, /- \/extensions\/talk-worker\/config\/greeting: must be string/);
    assert.match(r.stderr, /hint: fix extensions\.talk-worker\.config/);
    assert.doesNotMatch(r.stderr, /EXTENSION_UNAVAILABLE|see `plinth ls`/);
  });

  it('a bad manifest: MANIFEST_INVALID with every problem and its path (and --json has the same error)', async () => {
    const ws = await cliWorkspace([]);
    await cp(path.join(FIXTURES, 'bad-manifest'), path.join(ws.plugins, 'bad-manifest'), { recursive: true });
    // Signed, so the manifest is what is refused (the signature is checked first, on the verified snapshot).
    await signExtension(path.join(ws.plugins, 'bad-manifest'), publisher.privateKey, publisher.id);
    const r = await runCli(['call', 'bad-manifest', 'run', ...host(ws)], { cwd: ws.root });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^PLINTH_ERR_MANIFEST_INVALID: /m);
    assert.match(r.stderr, /- \/plinth\/runtme: unknown property "runtme" \(did you mean "runtime"\?\)/);
    const j = await runCli(['call', 'bad-manifest', 'run', ...host(ws, '--json')], { cwd: ws.root });
    const envelope = JSON.parse(j.stdout) as { ok: boolean; command: string; error: { code: string; file: string; problems: unknown[] } };
    assert.deepEqual([envelope.ok, envelope.command, envelope.error.code], [false, 'call', 'PLINTH_ERR_MANIFEST_INVALID']);
    assert.equal(envelope.error.file, path.join(ws.plugins, 'bad-manifest', 'package.json'));
    assert.ok(envelope.error.problems.length >= 5);
  });

  it('an untrusted worker (policy warn): RUNTIME_NOT_ALLOWED with its hint', async () => {
    const ws = await cliWorkspace(['talk-worker'], { unsigned: ['talk-worker'] });
    const r = await runCli(['call', 'talk-worker', 'say', ...host(ws, '--trust-policy', 'warn')], { cwd: ws.root });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^PLINTH_ERR_RUNTIME_NOT_ALLOWED: extension talk-worker is not signed by a trusted publisher/m);
    assert.match(r.stderr, /hint: sign it with a key in the trust store, or set "runtime": "isolate"/);
  });
});

describe('plinth ls checks what call checks', () => {
  it('bad config, untrusted worker, a runtime this host does not run, a dynamic import: none is "verified"', async () => {
    const ws = await cliWorkspace(['talk-worker', 'remote-ext', 'dynamic-import', 'talk-isolate', 'slow-stop'], { unsigned: ['slow-stop'] });
    await writeFile(path.join(ws.root, 'plinth.config.yaml'), 'extensions:\n  talk-worker:\n    config: { greeting: 5 }\n');
    const { code, entries } = await lsJson(ws, '--trust-policy', 'warn');
    assert.equal(code, 1);
    const reason = (id: string) => [entries.get(id)?.state, entries.get(id)?.reason?.code];
    assert.deepEqual(reason('talk-worker'), ['failed', 'PLINTH_ERR_EXTENSION_CONFIG_INVALID']);
    assert.ok(entries.get('talk-worker')!.reason!.problems!.some((p) => p.path === '/extensions/talk-worker/config/greeting'));
    assert.deepEqual(reason('slow-stop'), ['failed', 'PLINTH_ERR_RUNTIME_NOT_ALLOWED']);
    assert.deepEqual(reason('remote-ext'), ['failed', 'PLINTH_ERR_RUNTIME_UNSUPPORTED']);
    assert.deepEqual(reason('dynamic-import'), ['failed', 'PLINTH_ERR_IMPORT_REFUSED']);
    assert.match(entries.get('dynamic-import')!.reason!.message, /index\.js:6:23 uses import\(\)/);
    // The JSDoc `import('…')` types and the string mentioning `import(` are not imports.
    assert.deepEqual(reason('talk-isolate'), ['verified', undefined]);

    // call says the same as ls.
    const remote = await runCli(['call', 'remote-ext', 'run', ...host(ws)], { cwd: ws.root });
    assert.match(remote.stderr, /^PLINTH_ERR_RUNTIME_UNSUPPORTED: extension remote-ext asks for the "remote" runtime/m);
    const dynamic = await runCli(['call', 'dynamic-import', 'run', ...host(ws)], { cwd: ws.root });
    assert.equal(dynamic.code, 1);
    assert.match(dynamic.stderr, /^PLINTH_ERR_IMPORT_REFUSED: extension dynamic-import: index\.js:6:23 uses import\(\) of "\.\/index\.js"/m);
  });

  it('an isolate whose JSDoc types use import(\'…\') loads, runs and is listed as verified', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const { code, entries } = await lsJson(ws);
    assert.equal(code, 0);
    assert.equal(entries.get('talk-isolate')!.state, 'verified');
    const r = await runCli(['call', 'talk-isolate', 'say', ...host(ws, '--input', '{"x":1}')], { cwd: ws.root });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { said: 'dynamic import( is not used here', input: { x: 1 } });
  });

  it('on a folder that is itself an extension, says so (exit 2); a missing plugin dir is a usage error (exit 2)', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const own = await runCli(['ls', '--plugins', path.join(ws.plugins, 'talk-isolate'), '--trust', ws.trust], { cwd: ws.root });
    assert.equal(own.code, 2);
    assert.match(own.stderr, /PLINTH_ERR_USAGE: .*talk-isolate is itself an extension \(talk-isolate\), not a plugin directory/);
    assert.ok(own.stderr.includes(`--plugins ${ws.plugins}`), own.stderr);
    assert.doesNotMatch(own.stdout, /no extensions found/);

    const missing = path.join(await tempDir(), 'nope');
    const r = await runCli(['ls', '--plugins', missing], { cwd: ws.root });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PLINTH_ERR_PLUGIN_DIR_MISSING: plugin directory .*nope does not exist/);
    const j = await runCli(['ls', '--plugins', missing, '--json'], { cwd: ws.root });
    assert.equal(j.code, 2);
    assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, 'PLINTH_ERR_PLUGIN_DIR_MISSING');
  });
});
