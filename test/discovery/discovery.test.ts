import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, writeFile, symlink } from 'node:fs/promises';
import { discoverExtensions } from '../../src/discovery/index.ts';
import { pluginDir, tempDir } from '../helpers.ts';

describe('discovery', () => {
  it('finds extension folders and @scope/name folders; ignores other folders, files and dot-folders silently', async () => {
    const dir = await pluginDir(await tempDir(), { basic: 'basic', 'some-lib': 'not-an-extension', '@acme/scoped': 'scoped', '.hidden': 'basic' });
    await mkdir(path.join(dir, 'empty-folder'));
    await writeFile(path.join(dir, 'README.md'), 'notes');
    const result = await discoverExtensions([dir]);
    assert.deepEqual(result.extensions.map((e) => e.id).sort(), ['@acme/scoped-ext', 'basic-ext']);
    assert.deepEqual(result.failures, []);
    assert.deepEqual(result.directoryErrors, []);
    const scoped = result.extensions.find((e) => e.id === '@acme/scoped-ext')!;
    assert.equal(scoped.dir, path.join(dir, '@acme', 'scoped'));
    assert.equal(scoped.pluginDir, dir);
  });

  it('finds every folder with a plinth block, broken manifests included: only an unreadable package.json fails here', async () => {
    const dir = await pluginDir(await tempDir(), {
      a: 'basic',
      b: 'bad-json',
      c: 'bad-manifest',
      d: 'no-main',
      '@acme/g': 'scoped',
    });
    const result = await discoverExtensions([dir]);
    // The manifest is validated later, from the verified snapshot (test/registry/scan.test.ts).
    assert.deepEqual(result.extensions.map((e) => e.id).sort(), ['@acme/scoped-ext', 'bad-manifest', 'basic-ext', 'no-main']);
    assert.deepEqual(result.failures.map((f) => [f.id, f.error.code]), [['b', 'PLINTH_ERR_PACKAGE_JSON_INVALID']]);
  });

  it('every copy of one id is returned, in discovery order: plugin directories as listed, then folder names', async () => {
    const first = await pluginDir(path.join(await tempDir(), 'first'), { 'zz-basic': 'basic', 'aa-basic': 'basic' });
    const second = await pluginDir(path.join(path.dirname(first), 'second'), { basic: 'basic' });
    for (const order of [[first, second], [second, first]]) {
      const result = await discoverExtensions(order);
      assert.deepEqual(result.failures, []);
      const expected = order[0] === first ? [path.join(first, 'aa-basic'), path.join(first, 'zz-basic'), path.join(second, 'basic')] : [path.join(second, 'basic'), path.join(first, 'aa-basic'), path.join(first, 'zz-basic')];
      assert.deepEqual(result.extensions.map((e) => e.dir), expected);
      assert.deepEqual(result.extensions.map((e) => e.order), [0, 1, 2]);
    }
  });

  it('a missing plugin directory is reported, and the others still load', async () => {
    const root = await tempDir();
    const dir = await pluginDir(path.join(root, 'ok'), { basic: 'basic' });
    const result = await discoverExtensions([path.join(root, 'nope'), dir]);
    assert.equal(result.extensions.length, 1);
    assert.equal(result.directoryErrors[0]!.code, 'PLINTH_ERR_PLUGIN_DIR_MISSING');
    assert.equal(result.directoryErrors[0]!.file, path.join(root, 'nope'));
  });

  it('a plugin "directory" that is a file, and a dangling link inside one, are reported as unreadable', async () => {
    const root = await tempDir();
    await writeFile(path.join(root, 'file'), 'x');
    const dir = await pluginDir(path.join(root, 'ok'), { basic: 'basic' });
    await symlink(path.join(root, 'gone'), path.join(dir, 'dangling'));
    const result = await discoverExtensions([path.join(root, 'file'), dir]);
    assert.deepEqual(result.directoryErrors.map((e) => [e.code, e.file]), [
      ['PLINTH_ERR_PLUGIN_DIR_UNREADABLE', path.join(root, 'file')],
      ['PLINTH_ERR_PLUGIN_DIR_UNREADABLE', path.join(dir, 'dangling')],
    ]);
    assert.equal(result.extensions.length, 1);
  });

  it('an empty plugin directory yields nothing and no error', async () => {
    const result = await discoverExtensions([await tempDir()]);
    assert.deepEqual(result, { extensions: [], failures: [], directoryErrors: [] });
  });
});
