// Authoring basics as a newcomer meets them: sign validates first, --version, bare `plinth`, one --json envelope
// for every command (issue 9).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { access, readFile } from 'node:fs/promises';
import { ROOT, runCli, tempDir, pluginDir } from '../helpers.ts';
import { cliWorkspace, records, spawnServe } from './helpers.ts';

const exists = (file: string) => access(file).then(() => true, () => false);

describe('plinth sign validates the manifest first', () => {
  it('refuses an invalid manifest with its problems and writes no plinth.sig; --force signs anyway', async () => {
    const root = await tempDir();
    const kg = await runCli(['keygen', '--out', path.join(root, 'me')]);
    assert.equal(kg.code, 0, kg.stderr);
    const dir = path.join(await pluginDir(path.join(root, 'plugins'), { bad: 'bad-manifest' }), 'bad');
    const r = await runCli(['sign', dir, '--key', path.join(root, 'me.key'), '--publisher', 'me']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^PLINTH_ERR_MANIFEST_INVALID: not signed: extension bad-manifest/m);
    assert.match(r.stderr, /- \/plinth\/runtme: unknown property "runtme" \(did you mean "runtime"\?\)/);
    assert.match(r.stderr, /--force signs anyway/);
    assert.equal(await exists(path.join(dir, 'plinth.sig')), false);

    const forced = await runCli(['sign', dir, '--key', path.join(root, 'me.key'), '--publisher', 'me', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await exists(path.join(dir, 'plinth.sig')), true);
  });

  it('refuses a folder with no package.json or no plinth block', async () => {
    const root = await tempDir();
    await runCli(['keygen', '--out', path.join(root, 'me')]);
    const plain = path.join(await pluginDir(path.join(root, 'plugins'), { plain: 'not-an-extension' }), 'plain');
    const r = await runCli(['sign', plain, '--key', path.join(root, 'me.key'), '--publisher', 'me', '--json']);
    assert.equal(r.code, 1);
    const envelope = JSON.parse(r.stdout) as { ok: boolean; command: string; data: null; error: { code: string } };
    assert.deepEqual([envelope.ok, envelope.command, envelope.data, envelope.error.code], [false, 'sign', null, 'PLINTH_ERR_MANIFEST_INVALID']);
    assert.equal(await exists(path.join(plain, 'plinth.sig')), false);
  });
});

describe('plinth --version and bare plinth', () => {
  it('--version prints the package version; bare `plinth` prints the help and exits 0', async () => {
    const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = await runCli(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), version);
    const bare = await runCli([]);
    assert.equal(bare.code, 0, bare.stderr);
    assert.match(bare.stdout, /^Usage: plinth/m);
    for (const cmd of ['ls', 'keygen', 'sign', 'verify', 'call', 'serve', 'lock']) assert.match(bare.stdout, new RegExp(`^ {2}${cmd}\\b`, 'm'));
    assert.equal(bare.stderr, '');
  });
});

describe('one --json envelope for every command', () => {
  it('ls, keygen, sign, verify, lock, call, serve and a usage error all print { ok, command, data, error }', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const host = ['--plugins', ws.plugins, '--trust', ws.trust, '--data-dir', ws.data, '--json'];
    const key = path.join(ws.root, 'k');
    const runs: Array<[string, string[]]> = [
      ['ls', ['ls', ...host]],
      ['keygen', ['keygen', '--out', key, '--json']],
      ['sign', ['sign', path.join(ws.plugins, 'talk-isolate'), '--key', `${key}.key`, '--publisher', 'x', '--json']],
      ['verify', ['verify', path.join(ws.plugins, 'talk-isolate'), '--trust', ws.trust, '--json']],
      ['lock', ['lock', ...host]],
      ['call', ['call', 'talk-isolate', 'say', ...host]],
      ['ls', ['ls', '--plugins', path.join(ws.root, 'missing'), '--json']],
    ];
    for (const [command, args] of runs) {
      const r = await runCli(args, { cwd: ws.root });
      const envelope = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.deepEqual(Object.keys(envelope), ['ok', 'command', 'data', 'error'], args.join(' '));
      assert.equal(envelope.command, command);
      assert.equal(envelope.ok, r.code === 0, `${args.join(' ')}: ${r.stderr}`);
    }
    // verify after re-signing with an untrusted key: ok false, the coded error, data null.
    const bad = JSON.parse((await runCli(['verify', path.join(ws.plugins, 'talk-isolate'), '--trust', ws.trust, '--json'], { cwd: ws.root })).stdout) as { ok: boolean; data: unknown; error: { code: string } };
    assert.deepEqual([bad.ok, bad.data, bad.error.code], [false, null, 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER']);
  });

  it('serve --json logs JSON lines as it runs and prints the envelope when stopped', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const serve = spawnServe(ws, ['--json']);
    try {
      await serve.waitFor(/watching the plugin directories for changes/, 30_000, 'serve to start');
      serve.signalGroup('SIGINT');
      assert.equal((await serve.exited).code, 0, serve.log());
      const recs = records(serve.log()); // throws on any line that is not JSON
      assert.ok(recs.some((r) => r.extension === 'talk-isolate' && r.state === 'active'));
      const envelope = JSON.parse(serve.stdout()) as { ok: boolean; command: string; data: { signal: string; extensions: Array<{ id: string; state: string }> } };
      assert.deepEqual([envelope.ok, envelope.command, envelope.data.signal], [true, 'serve', 'SIGINT']);
      assert.deepEqual(envelope.data.extensions.map((e) => [e.id, e.state]), [['talk-isolate', 'stopped']]);
    } finally {
      serve.kill();
    }
  });
});
