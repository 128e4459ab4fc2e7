// The author's test harness, `plinth/sdk/testing` (issue 13): a stage runs in a real sandbox of the extension's
// own runtime (a `remote` one in a worker), behind a host that validates inputs and outputs, and failures are the
// host's coded errors. Imported here by the package name, as an author's test does (package self-reference).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, readdir, writeFile } from 'node:fs/promises';
import { loadExtension, runStage } from 'plinth/sdk/testing';
import { ROOT, makePublisher, tempDir, writeTrustStore } from '../helpers.ts';
import { signExtension } from '../../src/trust/index.ts';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'testing');
const fixture = (name: string) => path.join(FIXTURES, name);

describe('loadExtension / runStage', () => {
  it('runs an isolate extension in an isolate: config, granted env, validated output, its logs', async () => {
    await using ext = await loadExtension(fixture('where-isolate'), { config: { factor: 3 }, env: { GREETING: 'hi', SECRET: 'no' } });
    assert.deepEqual([ext.id, ext.version, ext.runtime, ext.sandbox], ['where-isolate', '1.2.3', 'isolate', 'isolate']);
    assert.deepEqual(await ext.call('where', {}), { process: 'undefined', greeting: 'hi' });
    assert.deepEqual(await ext.call('scale', { n: 2 }), { n: 6 });
    assert.deepEqual(ext.logs.map((l) => [l.level, l.message]), [['info', 'scaling 2']]);
  });

  it("throws the host's coded errors: input and output schemas, a throwing stage, an unknown stage", async () => {
    await using ext = await loadExtension(fixture('where-isolate'));
    await assert.rejects(ext.call('scale', { n: 'two' }), { code: 'PLINTH_ERR_STAGE_INPUT_INVALID' });
    await assert.rejects(ext.call('wrong-output', {}), { code: 'PLINTH_ERR_STAGE_OUTPUT_INVALID' });
    await assert.rejects(ext.call('fails', {}), (err: { code: string; extensionStack?: string }) => err.code === 'PLINTH_ERR_STAGE_FAILED' && /broken on purpose/.test(err.extensionStack ?? ''));
    await assert.rejects(ext.call('nope', {}), { code: 'PLINTH_ERR_STAGE_UNKNOWN' });
    await ext.stop();
    await assert.rejects(ext.call('scale', { n: 1 }), { code: 'PLINTH_ERR_SHUTDOWN' });
  });

  it('stop() removes everything it made (read-only snapshots included) and is idempotent', async () => {
    const tmp = await tempDir();
    const before = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      const ext = await loadExtension(fixture('where-isolate'));
      assert.equal((await readdir(tmp)).length, 1);
      assert.deepEqual(await ext.call('scale', { n: 1 }), { n: 2 });
      await Promise.all([ext.stop(), ext.stop()]);
      await ext.stop();
      assert.deepEqual(await readdir(tmp), []);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
  });

  it('runs a worker extension in a worker, and a remote one in a worker too', async () => {
    assert.deepEqual(await runStage(path.join(ROOT, 'test', 'fixtures', 'cli', 'talk-worker'), 'say', { a: 1 }, { config: { greeting: 'hey' } }).then((o) => typeof o), 'object');
    await using remote = await loadExtension(fixture('where-remote'));
    assert.deepEqual([remote.runtime, remote.sandbox], ['remote', 'worker']);
    assert.deepEqual(await remote.call('where', {}), { process: 'object', threadId: 'worker' });
  });

  it('refuses what a host refuses, with its code: a module that throws on load, an invalid manifest, a bad config', async () => {
    await assert.rejects(loadExtension(fixture('throws-on-load')), (err: { code: string; message: string }) => err.code === 'PLINTH_ERR_EXTENSION_LOAD_FAILED' && /cannot load on purpose/.test(err.message));
    const badManifest = path.join(ROOT, 'test', 'fixtures', 'extensions', 'bad-manifest');
    // Named by the author's folder, not the harness's staged copy.
    await assert.rejects(loadExtension(badManifest), (err: { code: string; message: string; problems: Array<{ path: string }> }) => err.code === 'PLINTH_ERR_MANIFEST_INVALID' && err.message.includes(badManifest) && !err.message.includes('plinth-test-') && err.problems.some((p) => p.path === '/plinth/runtme'));
    await assert.rejects(runStage(fixture('where-isolate'), 'scale', { n: 1 }, { config: { factor: 'x' } }), { code: 'PLINTH_ERR_EXTENSION_CONFIG_INVALID' });
    await assert.rejects(loadExtension(path.join(ROOT, 'test', 'fixtures', 'extensions')), { code: 'PLINTH_ERR_MANIFEST_INVALID' });
  });

  it('with `trust`, checks the folder’s own signature first; the folder itself is never written to', async () => {
    const root = await tempDir();
    const dir = path.join(root, 'where-isolate');
    await cp(fixture('where-isolate'), dir, { recursive: true });
    const me = makePublisher('me');
    const trust = await writeTrustStore(path.join(root, 'trust.json'), [me]);
    await assert.rejects(runStage(dir, 'scale', { n: 1 }, { trust }), { code: 'PLINTH_ERR_SIG_MISSING' });
    await signExtension(dir, me.privateKey, 'me');
    assert.deepEqual(await runStage(dir, 'scale', { n: 1 }, { trust }), { n: 2 });
    await writeFile(path.join(dir, 'index.js'), '// edited after signing\nexport default { stages: {} };\n');
    await assert.rejects(runStage(dir, 'scale', { n: 1 }, { trust }), { code: 'PLINTH_ERR_SIG_FILE_CHANGED' });
    // Without `trust` the edited code runs (from a copy signed with a test key); the folder is as it was.
    await assert.rejects(runStage(dir, 'scale', { n: 1 }), { code: 'PLINTH_ERR_STAGE_UNKNOWN' });
    assert.deepEqual((await readdir(dir)).sort(), ['index.js', 'package.json', 'plinth.sig']);
  });
});
