// The CLI as users run it: a real subprocess of bin/plinth.js on the tests' Node.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, readFile, stat, writeFile } from 'node:fs/promises';
import { listPackageFiles, readPrivateKey, signExtension } from '../../src/trust/index.ts';
import { ROOT, runCli, tempDir, pluginDir } from '../helpers.ts';

const BUNDLED = ['analytics', 'audit-log', 'csv-ingest', 'policy-check', 'record-validate', 'redact-fields', 'report', 'storage-writer'];

describe('plinth ls', () => {
  it('--json lists every bundled extension as verified (repository config supplies the trust store)', async () => {
    const r = await runCli(['ls', '--plugins', 'plugins', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const envelope = JSON.parse(r.stdout) as { ok: boolean; command: string; error: null; data: { extensions: Array<{ id: string; state: string; runtime: string; trust: { status: string; publisher: string } }> } };
    assert.deepEqual([envelope.ok, envelope.command, envelope.error], [true, 'ls', null]);
    const list = envelope.data.extensions;
    assert.deepEqual(list.map((e) => e.id), BUNDLED);
    for (const e of list) {
      assert.equal(e.state, 'verified', e.id);
      assert.deepEqual([e.trust.status, e.trust.publisher], ['trusted', 'plinth-dev']);
    }
    assert.ok(list.some((e) => e.runtime === 'worker') && list.some((e) => e.runtime === 'isolate'));
  });

  it('prints a readable table, and for a failed extension its code and reason; exit 1', async () => {
    const dir = await pluginDir(await tempDir(), { bad: 'bad-manifest' });
    // Signed: the manifest is validated only once the package is verified (issue 7 §1, §3).
    await signExtension(path.join(dir, 'bad'), await readPrivateKey(path.join(ROOT, 'keys', 'dev-publisher.key')), 'plinth-dev');
    await cp(path.join(ROOT, 'plugins', 'csv-ingest'), path.join(dir, 'csv-ingest'), { recursive: true });
    const r = await runCli(['ls', '--plugins', dir, '--trust', path.join(ROOT, 'keys', 'dev-trust.json')], { cwd: dir });
    assert.equal(r.code, 1);
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, /^ID\s+VERSION\s+RUNTIME\s+STATE\s+TRUST\s+PATH$/);
    assert.match(r.stdout, /csv-ingest\s+1\.0\.0\s+worker\s+verified\s+signed by plinth-dev/);
    assert.match(r.stdout, /bad-manifest\s+-\s+-\s+failed\s+PLINTH_ERR_MANIFEST_INVALID/);
    assert.match(r.stdout, /\/plinth\/runtme: unknown property "runtme" \(did you mean "runtime"\?\)/);
  });

  it('with no trust store, signed extensions are refused as untrusted and the hint says how to fix it', async () => {
    const cwd = await tempDir();
    const r = await runCli(['ls', '--plugins', path.join(ROOT, 'plugins'), '--json'], { cwd });
    assert.equal(r.code, 1);
    const list = (JSON.parse(r.stdout) as { data: { extensions: Array<{ state: string; reason: { code: string; hint: string } }> } }).data.extensions;
    for (const e of list) {
      assert.equal(e.reason.code, 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER');
      assert.match(e.reason.hint, /--trust/);
    }
  });

  it('no plugin directories at all is a usage error (exit 2) that says how to give them', async () => {
    const r = await runCli(['ls'], { cwd: await tempDir(), env: { PLINTH_PLUGINS: '' } });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PLINTH_ERR_USAGE: no plugin directories given/);
  });

  it('an invalid config file is exit 2 with the path of each problem', async () => {
    const cwd = await tempDir();
    await writeFile(path.join(cwd, 'plinth.config.yaml'), 'plugins: plugins\n');
    const r = await runCli(['ls'], { cwd });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /PLINTH_ERR_CONFIG_INVALID/);
    assert.match(r.stderr, /\/plugins: must be array/);
  });
});

describe('plinth keygen, sign, verify', () => {
  it('keygen → sign → verify round trip; a one-byte change fails verify naming the file', async () => {
    const root = await tempDir();
    const prefix = path.join(root, 'me');
    const kg = await runCli(['keygen', '--out', prefix, '--json']);
    assert.equal(kg.code, 0, kg.stderr);
    const { keyId, publicKeyPem } = (JSON.parse(kg.stdout) as { data: { keyId: string; publicKeyPem: string } }).data;
    assert.equal((await stat(`${prefix}.key`)).mode & 0o777, 0o600);
    const again = await runCli(['keygen', '--out', prefix]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /PLINTH_ERR_FILE_EXISTS/);

    const dir = path.join(await pluginDir(root, { ext: 'basic' }), 'ext');
    const signed = await runCli(['sign', dir, '--key', `${prefix}.key`, '--publisher', 'me']);
    assert.equal(signed.code, 0, signed.stderr);
    assert.match(signed.stdout, /signed basic-ext: 3 file\(s\), publisher me/);

    const trust = path.join(root, 'trust.json');
    await writeFile(trust, JSON.stringify({ publishers: { me: { keys: [publicKeyPem] } } }));
    const ok = await runCli(['verify', dir, '--trust', trust, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), { ok: true, command: 'verify', data: { dir, extension: 'basic-ext', publisher: 'me', keyId, files: 3 }, error: null });

    const file = path.join(dir, 'lib', 'helper.js');
    const bytes = await readFile(file);
    bytes[0] = bytes[0]! ^ 1;
    await writeFile(file, bytes);
    const bad = await runCli(['verify', dir, '--trust', trust]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^PLINTH_ERR_SIG_FILE_CHANGED: .*lib\/helper\.js was changed since signing/);
    assert.ok(bad.stderr.includes(file), bad.stderr);
    const badJson = await runCli(['verify', dir, '--trust', trust, '--json']);
    assert.equal((JSON.parse(badJson.stdout) as { error: { code: string; file: string } }).error.file, file);
  });

  it('sign without --key or --publisher is a usage error; verify with no trust store says how to give one', async () => {
    const root = await tempDir();
    const noKey = await runCli(['sign', root, '--publisher', 'me']);
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /PLINTH_ERR_USAGE: missing --key/);
    const noTrust = await runCli(['verify', root], { cwd: root });
    assert.equal(noTrust.code, 2);
    assert.match(noTrust.stderr, /--trust/);
    const unknown = await runCli(['frobnicate']);
    assert.equal(unknown.code, 2);
  });

  it('changing one byte of any file of any bundled extension makes verify fail naming that file', async () => {
    const root = await tempDir();
    await cp(path.join(ROOT, 'plugins'), path.join(root, 'plugins'), { recursive: true });
    const trust = path.join(ROOT, 'keys', 'dev-trust.json');
    for (const ext of BUNDLED) {
      const dir = path.join(root, 'plugins', ext);
      for (const rel of await listPackageFiles(dir)) {
        const file = path.join(dir, rel);
        const original = await readFile(file);
        const changed = Buffer.from(original);
        changed[changed.length - 1] = changed[changed.length - 1]! ^ 0x20;
        await writeFile(file, changed);
        const r = await runCli(['verify', dir, '--trust', trust, '--json']);
        assert.equal(r.code, 1, `${ext}/${rel}`);
        const { error } = JSON.parse(r.stdout) as { error: { code: string; file: string } };
        assert.deepEqual([error.code, error.file], ['PLINTH_ERR_SIG_FILE_CHANGED', file], `${ext}/${rel}`);
        await writeFile(file, original);
      }
      assert.equal((await runCli(['verify', dir, '--trust', trust])).code, 0, `${ext} restored`);
    }
  });
});
