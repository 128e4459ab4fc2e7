import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { scanExtensions } from '../../src/registry/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import { makePublisher, pluginDir, tempDir, trustStore } from '../helpers.ts';

const alice = makePublisher('alice');

/** plain (signed by alice), scoped (unsigned). */
async function mixedDir(): Promise<string> {
  const dir = await pluginDir(await tempDir(), { plain: 'plain', '@acme/scoped': 'scoped' });
  await signExtension(path.join(dir, 'plain'), alice.privateKey, 'alice');
  return dir;
}

describe('scan with trust policy', () => {
  it('required: unsigned extensions fail with their code and keep no package to start', async () => {
    const dir = await mixedDir();
    const { extensions } = await scanExtensions([dir], trustStore([alice]), 'required');
    const byId = Object.fromEntries(extensions.map((e) => [e.id, e]));
    assert.equal(byId['plain-ext']!.state, 'verified');
    assert.deepEqual(byId['plain-ext']!.trust, { status: 'trusted', publisher: 'alice', keyId: alice.keyId });
    assert.equal(byId['@acme/scoped-ext']!.state, 'failed');
    assert.equal(byId['@acme/scoped-ext']!.error!.code, 'PLINTH_ERR_SIG_MISSING');
    assert.equal(byId['@acme/scoped-ext']!.pkg, undefined);
  });

  it('warn: verification failures load as untrusted with the reason; an untrusted worker is not "verified" (it could not start)', async () => {
    const dir = await mixedDir();
    await writeFile(path.join(dir, 'plain', 'index.js'), 'tampered');
    const { extensions } = await scanExtensions([dir], trustStore([alice]), 'warn');
    for (const e of extensions) assert.equal(e.trust!.status, 'untrusted');
    const codes = extensions.map((e) => (e.trust!.status === 'untrusted' ? e.trust!.error.code : '')).sort();
    assert.deepEqual(codes, ['PLINTH_ERR_SIG_FILE_CHANGED', 'PLINTH_ERR_SIG_MISSING']);
    const byId = Object.fromEntries(extensions.map((e) => [e.id, e]));
    assert.equal(byId['@acme/scoped-ext']!.state, 'verified'); // an isolate: untrusted code may run as one
    assert.deepEqual([byId['plain-ext']!.state, byId['plain-ext']!.error?.code], ['failed', 'PLINTH_ERR_RUNTIME_NOT_ALLOWED']);
  });

  it('off: nothing is checked, and a worker that is not trusted is refused as starting would refuse it', async () => {
    const dir = await mixedDir();
    const { extensions } = await scanExtensions([dir], trustStore([]), 'off');
    assert.deepEqual(
      extensions.map((e) => [e.id, e.state, e.trust!.status, e.error?.code]),
      [
        ['@acme/scoped-ext', 'verified', 'unchecked', undefined],
        ['plain-ext', 'failed', 'unchecked', 'PLINTH_ERR_RUNTIME_NOT_ALLOWED'],
      ],
    );
  });

  it('manifest failures, shadowed copies and dependency failures appear as failed records beside the good ones', async () => {
    const dir = await pluginDir(await tempDir(), { plain: 'plain', bad: 'bad-manifest', dup: 'plain', basic: 'basic' });
    for (const d of ['plain', 'bad', 'dup', 'basic']) await signExtension(path.join(dir, d), alice.privateKey, 'alice');
    const { extensions } = await scanExtensions([dir], trustStore([alice]), 'required');
    assert.deepEqual(extensions.map((e) => [e.id, path.basename(e.dir), e.state, e.error?.code ?? null]), [
      ['bad-manifest', 'bad', 'failed', 'PLINTH_ERR_MANIFEST_INVALID'],
      // basic-ext needs other-ext ^2.1.0, which is not installed.
      ['basic-ext', 'basic', 'failed', 'PLINTH_ERR_DEPENDENCY_MISSING'],
      // Two copies of plain-ext 1.0.0: the folder that sorts first wins.
      ['plain-ext', 'dup', 'verified', null],
      ['plain-ext', 'plain', 'failed', 'PLINTH_ERR_DUPLICATE_EXTENSION'],
    ]);
  });

  it('each broken manifest is reported with its own code (read from the snapshot) and never stops the others', async () => {
    const dir = await pluginDir(await tempDir(), { a: 'basic', c: 'bad-manifest', d: 'no-main', e: 'main-missing', f: 'bad-stage-schema', '@acme/g': 'scoped' });
    const { extensions } = await scanExtensions([dir], trustStore([]), 'off');
    const codes = Object.fromEntries(extensions.map((e) => [path.basename(e.dir), e.error?.code ?? e.state]));
    assert.deepEqual(codes, {
      a: 'PLINTH_ERR_DEPENDENCY_MISSING',
      c: 'PLINTH_ERR_MANIFEST_INVALID',
      d: 'PLINTH_ERR_MAIN_NOT_SET',
      e: 'PLINTH_ERR_MAIN_NOT_FOUND',
      f: 'PLINTH_ERR_STAGE_SCHEMA_INVALID',
      g: 'verified',
    });
    // Messages and files name the plugin folder the user knows, not the snapshot.
    const bad = extensions.find((e) => path.basename(e.dir) === 'c')!;
    assert.equal(bad.error!.file, path.join(dir, 'c', 'package.json'));
    assert.ok(bad.error!.message.includes(path.join(dir, 'c')), bad.error!.message);
  });

  it('a broken copy is reported beside a working copy of the same id', async () => {
    const root = await tempDir();
    const first = await pluginDir(path.join(root, 'first'), { basic: 'plain' });
    const pkgFile = path.join(first, 'basic', 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as { plinth: { runtime: string } };
    pkg.plinth.runtime = 'nope';
    await writeFile(pkgFile, JSON.stringify(pkg));
    const second = await pluginDir(path.join(root, 'second'), { basic: 'plain' });
    // Policy off checks no signature, so the working copy must be an isolate: ls refuses an unverified worker as
    // starting would (PLINTH_ERR_RUNTIME_NOT_ALLOWED).
    const secondFile = path.join(second, 'basic', 'package.json');
    const secondPkg = JSON.parse(await readFile(secondFile, 'utf8')) as { plinth: { runtime: string } };
    secondPkg.plinth.runtime = 'isolate';
    await writeFile(secondFile, JSON.stringify(secondPkg));
    const { extensions } = await scanExtensions([first, second], trustStore([]), 'off');
    assert.deepEqual(extensions.map((e) => [e.dir, e.state, e.error?.code ?? null]), [
      [path.join(first, 'basic'), 'failed', 'PLINTH_ERR_MANIFEST_INVALID'],
      [path.join(second, 'basic'), 'verified', null],
    ]);
  });
});
