import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { readPackageJson, validateExtensionPackage } from '../../src/manifest/index.ts';
import { pluginDir, tempDir, rejectsWith } from '../helpers.ts';

async function load(dir: string) {
  return validateExtensionPackage(dir, await readPackageJson(dir));
}

describe('manifest', () => {
  it('reads a valid extension, normalising dependencies and compiling every schema once', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { basic: 'basic' }), 'basic');
    const pkg = await load(dir);
    assert.equal(pkg.id, 'basic-ext');
    assert.equal(pkg.version, '1.2.3');
    assert.equal(pkg.hostRange, '^1.0.0');
    assert.equal(pkg.mainPath, path.join(dir, 'index.js'));
    assert.equal(pkg.manifest.runtime, 'worker');
    assert.deepEqual(pkg.manifest.dependencies, { 'other-ext': { range: '^2.1.0', optional: false }, 'maybe-ext': { range: '~1.0.0', optional: true } });
    assert.deepEqual(pkg.manifest.subscribes, ['orders.*', 'audit.#']);
    // Schema defaults are applied to declared sections.
    assert.deepEqual(pkg.manifest.health, { intervalMs: 1000, timeoutMs: 2000, unhealthyThreshold: 3, recoveryThreshold: 2 });
    assert.equal(pkg.schemas.stages.echo!.input({ text: 'a' }), true);
    assert.equal(pkg.schemas.stages.echo!.input({ text: 1 }), false);
    const config: Record<string, unknown> = {};
    assert.equal(pkg.schemas.config!(config), true);
    assert.equal(config.greeting, 'hi');
    assert.ok(Object.isFrozen(pkg.manifest) && Object.isFrozen(pkg.manifest.stages), 'manifest is frozen');
  });

  it('package.json that is not JSON: PLINTH_ERR_PACKAGE_JSON_INVALID naming the file', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { x: 'bad-json' }), 'x');
    const err = await rejectsWith(readPackageJson(dir), 'PLINTH_ERR_PACKAGE_JSON_INVALID');
    assert.equal(err.file, path.join(dir, 'package.json'));
  });

  it('package.json that is a folder: PLINTH_ERR_PACKAGE_JSON_INVALID', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, 'package.json'));
    await rejectsWith(readPackageJson(dir), 'PLINTH_ERR_PACKAGE_JSON_INVALID');
  });

  it('an invalid manifest lists every problem with its JSON path and a hint', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { 'bad-manifest': 'bad-manifest' }), 'bad-manifest');
    const err = await rejectsWith(load(dir), 'PLINTH_ERR_MANIFEST_INVALID');
    assert.equal(err.extension, 'bad-manifest');
    assert.match(err.message, new RegExp(dir.replace(/[/\\]/g, '.')));
    const byPath = new Map(err.problems.map((p) => [p.path, p]));
    assert.deepEqual([...byPath.keys()].sort(), ['/plinth/dependencies/audit-log', '/plinth/limits/memoryMb', '/plinth/runtime', '/plinth/runtme', '/plinth/subscribes/0', '/version'].sort());
    assert.equal(byPath.get('/plinth/runtme')!.hint, 'did you mean "runtime"?');
    assert.match(byPath.get('/plinth/runtime')!.hint!, /"worker", "isolate", "remote"/);
    assert.match(byPath.get('/plinth/dependencies/audit-log')!.hint!, /semver range/);
    assert.match(byPath.get('/plinth/subscribes/0')!.hint!, /dot-separated/);
    assert.match(byPath.get('/version')!.hint!, /semantic version/);
  });

  it('no "main": PLINTH_ERR_MAIN_NOT_SET', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { x: 'no-main' }), 'x');
    const err = await rejectsWith(load(dir), 'PLINTH_ERR_MAIN_NOT_SET');
    assert.equal(err.extension, 'no-main');
  });

  it('a "main" that does not exist: PLINTH_ERR_MAIN_NOT_FOUND naming the file', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { x: 'main-missing' }), 'x');
    const err = await rejectsWith(load(dir), 'PLINTH_ERR_MAIN_NOT_FOUND');
    assert.equal(err.file, path.join(dir, 'dist', 'index.js'));
  });

  it('a "main" that links outside the extension folder: PLINTH_ERR_MAIN_NOT_FOUND', async () => {
    const root = await tempDir();
    const dir = path.join(await pluginDir(root, { x: 'main-missing' }), 'x');
    await writeFile(path.join(root, 'outside.js'), 'export default {}');
    await mkdir(path.join(dir, 'dist'));
    await symlink(path.join(root, 'outside.js'), path.join(dir, 'dist', 'index.js'));
    const err = await rejectsWith(load(dir), 'PLINTH_ERR_MAIN_NOT_FOUND');
    assert.match(err.message, /outside the extension folder/);
  });

  it('a "main" that is a folder: PLINTH_ERR_MAIN_NOT_FOUND', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { x: 'main-missing' }), 'x');
    await mkdir(path.join(dir, 'dist', 'index.js'), { recursive: true });
    await rejectsWith(load(dir), 'PLINTH_ERR_MAIN_NOT_FOUND');
  });

  it('a stage schema that is not a valid JSON Schema: PLINTH_ERR_STAGE_SCHEMA_INVALID naming each bad schema', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { x: 'bad-stage-schema' }), 'x');
    const err = await rejectsWith(load(dir), 'PLINTH_ERR_STAGE_SCHEMA_INVALID');
    assert.deepEqual(err.problems.map((p) => p.path), ['/plinth/stages/broken/input', '/plinth/stages/broken/output']);
  });

  it('a configSchema with a $ref that does not resolve is refused', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { x: 'basic' }), 'x');
    const pkg = JSON.parse(JSON.stringify(await readPackageJson(dir))) as { plinth: { configSchema: unknown } };
    pkg.plinth.configSchema = { $ref: '#/$defs/nowhere' };
    const err = await rejectsWith(validateExtensionPackage(dir, pkg), 'PLINTH_ERR_STAGE_SCHEMA_INVALID');
    assert.equal(err.problems[0]!.path, '/plinth/configSchema');
  });
});
