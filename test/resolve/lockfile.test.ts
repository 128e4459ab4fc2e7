import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  buildLockfile,
  checkFrozen,
  fileListDigest,
  readLockfile,
  writeLockfile,
  LOCKFILE_NAME,
  type Candidate,
  type Lockfile,
} from '../../src/resolve/index.ts';
import { hashPackageFiles } from '../../src/trust/index.ts';
import { PlinthError } from '../../src/errors.ts';
import { tempDir } from '../helpers.ts';

function candidate(id: string, version: string, dir: string): Candidate {
  return { id, version, dir, dependencies: {}, order: 0 };
}

/** A real extension folder with a couple of files; returns its dir and the digest of its file list. */
async function extension(root: string, rel: string, files: Record<string, string>): Promise<{ dir: string; digest: string }> {
  const dir = path.join(root, rel);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
  return { dir, digest: fileListDigest(await hashPackageFiles(dir)) };
}

/** A project with two installed extensions, the resolution and digests for them. */
async function project(): Promise<{ root: string; resolved: Map<string, Candidate>; digests: Map<string, string> }> {
  const root = await tempDir('plinth-lock-');
  const audit = await extension(root, 'plugins/audit-log', { 'package.json': '{"name":"audit-log"}', 'index.js': 'export default {};\n' });
  const report = await extension(root, 'plugins/@acme/report-gen', { 'package.json': '{"name":"@acme/report-gen"}', 'dist/index.js': 'export default {};\n' });
  // Inserted out of order on purpose: the lockfile sorts.
  const resolved = new Map([
    ['audit-log', candidate('audit-log', '2.4.1', audit.dir)],
    ['@acme/report-gen', candidate('@acme/report-gen', '1.2.0', report.dir)],
  ]);
  const digests = new Map([
    ['audit-log', audit.digest],
    ['@acme/report-gen', report.digest],
  ]);
  return { root, resolved, digests };
}

function driftOf(errors: PlinthError[], id: string): PlinthError {
  const e = errors.find((x) => x.extension === id);
  assert.ok(e, `expected drift for ${id}; got ${errors.map((x) => x.message).join(' | ')}`);
  assert.equal(e.code, 'PLINTH_ERR_LOCKFILE_DRIFT');
  return e;
}

describe('fileListDigest', () => {
  it('is the SHA-256 of sorted "<path>\\t<hash>\\n" lines, whatever the key order', () => {
    const h1 = 'a'.repeat(64);
    const h2 = 'b'.repeat(64);
    const expected = `sha256-${createHash('sha256').update(`index.js\t${h2}\npackage.json\t${h1}\n`).digest('hex')}`;
    assert.equal(fileListDigest({ 'package.json': h1, 'index.js': h2 }), expected);
    assert.equal(fileListDigest({ 'index.js': h2, 'package.json': h1 }), expected);
    assert.notEqual(fileListDigest({ 'index.js': h2 }), expected, 'a removed file changes it');
    assert.notEqual(fileListDigest({ 'index.js': h2, 'package.json': 'c'.repeat(64) }), expected, 'a changed file changes it');
  });
});

describe('lockfile', () => {
  it('round trip: build, write (sorted, stable, trailing newline, atomic), read back equal', async () => {
    const { root, resolved, digests } = await project();
    const lock = buildLockfile(resolved, digests, root, '1.0.0');
    assert.deepEqual(Object.keys(lock.extensions), ['@acme/report-gen', 'audit-log']);
    assert.deepEqual(lock.extensions['audit-log'], { version: '2.4.1', path: 'plugins/audit-log', digest: digests.get('audit-log') });
    assert.equal(lock.extensions['@acme/report-gen']!.path, 'plugins/@acme/report-gen');

    const file = path.join(root, LOCKFILE_NAME);
    await writeLockfile(file, lock);
    const text = await readFile(file, 'utf8');
    assert.ok(text.endsWith('}\n'));
    assert.ok(text.indexOf('"@acme/report-gen"') < text.indexOf('"audit-log"'));
    assert.deepEqual(Object.keys(JSON.parse(text) as object), ['lockfileVersion', 'hostVersion', 'extensions']);
    assert.deepEqual(await readLockfile(file), lock);
    assert.deepEqual(checkFrozen(lock, resolved, digests, root), []);

    // Same input, same bytes; no temp files left behind.
    await writeLockfile(file, buildLockfile(new Map([...resolved].reverse()), digests, root, '1.0.0'));
    assert.equal(await readFile(file, 'utf8'), text);
    assert.deepEqual(await readdir(root), [LOCKFILE_NAME, 'plugins']);
  });

  it('paths are relative to the lockfile folder with forward slashes, ".." included when the plugins live elsewhere', async () => {
    const { root, resolved, digests } = await project();
    const lockDir = path.join(root, 'app');
    const lock = buildLockfile(resolved, digests, lockDir, '1.0.0');
    assert.equal(lock.extensions['audit-log']!.path, '../plugins/audit-log');
    await mkdir(lockDir);
    await writeLockfile(path.join(lockDir, LOCKFILE_NAME), lock);
    assert.deepEqual(await readLockfile(path.join(lockDir, LOCKFILE_NAME)), lock);
  });

  it('a missing file reads as undefined', async () => {
    assert.equal(await readLockfile(path.join(await tempDir(), LOCKFILE_NAME)), undefined);
  });

  it('bad JSON: LOCKFILE_INVALID naming the file', async () => {
    const file = path.join(await tempDir(), LOCKFILE_NAME);
    await writeFile(file, '{ "lockfileVersion": 1, ');
    const err = await readLockfile(file).then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PlinthError);
    assert.equal(err.code, 'PLINTH_ERR_LOCKFILE_INVALID');
    assert.equal(err.file, file);
    assert.equal(err.problems.length, 1);
  });

  it('schema violations: LOCKFILE_INVALID with a problem per place', async () => {
    const file = path.join(await tempDir(), LOCKFILE_NAME);
    await writeFile(
      file,
      JSON.stringify({
        lockfileVersion: 2,
        hostVersion: '1.0',
        extensions: {
          good: { version: '1.0.0', path: 'plugins/good', digest: `sha256-${'0'.repeat(64)}` },
          'Bad Name': { version: '1.0.0', path: 'x', digest: `sha256-${'0'.repeat(64)}` },
          abs: { version: '1.0.0', path: '/etc/abs', digest: 'md5-123' },
          extra: { version: '1.0.0', path: 'x', digest: `sha256-${'0'.repeat(64)}`, integrity: 'x' },
        },
      }),
    );
    const err = await readLockfile(file).then(
      () => assert.fail('expected a rejection'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PlinthError);
    assert.equal(err.code, 'PLINTH_ERR_LOCKFILE_INVALID');
    const paths = err.problems.map((p) => p.path).sort();
    for (const p of ['/lockfileVersion', '/hostVersion', '/extensions/Bad Name', '/extensions/abs/path', '/extensions/abs/digest', '/extensions/extra/integrity']) {
      assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
    }
    assert.ok(!paths.some((p) => p.startsWith('/extensions/good')));
  });

  it('buildLockfile without a digest for a resolved extension refuses, naming it', async () => {
    const { root, resolved } = await project();
    assert.throws(
      () => buildLockfile(resolved, new Map(), root, '1.0.0'),
      (e: unknown) => e instanceof PlinthError && e.code === 'PLINTH_ERR_LOCKFILE_INVALID' && e.extension === '@acme/report-gen',
    );
  });

  it('writeLockfile refuses a lock that does not match the schema and writes nothing', async () => {
    const root = await tempDir();
    const file = path.join(root, LOCKFILE_NAME);
    const bad = { lockfileVersion: 1, hostVersion: '1.0.0', extensions: { x: { version: 'nope', path: 'x', digest: 'sha256-0' } } } as Lockfile;
    await assert.rejects(writeLockfile(file, bad), (e: unknown) => e instanceof PlinthError && e.code === 'PLINTH_ERR_LOCKFILE_INVALID');
    assert.deepEqual(await readdir(root), []);
  });
});

describe('checkFrozen', () => {
  it('a changed file in an extension: contents drift, found from the real files', async () => {
    const { root, resolved, digests } = await project();
    const lock = buildLockfile(resolved, digests, root, '1.0.0');
    await writeFile(path.join(root, 'plugins/audit-log/index.js'), 'export default { changed: true };\n');
    const now = new Map(digests).set('audit-log', fileListDigest(await hashPackageFiles(resolved.get('audit-log')!.dir)));
    const errors = checkFrozen(lock, resolved, now, root);
    assert.equal(errors.length, 1);
    assert.match(driftOf(errors, 'audit-log').message, /^audit-log differs from plinth\.lock\.json: contents digest locked sha256-[0-9a-f]{12}…, now sha256-[0-9a-f]{12}…$/);
  });

  it('a file added to an extension: contents drift', async () => {
    const { root, resolved, digests } = await project();
    const lock = buildLockfile(resolved, digests, root, '1.0.0');
    await writeFile(path.join(root, 'plugins/@acme/report-gen/extra.js'), '');
    const now = new Map(digests).set('@acme/report-gen', fileListDigest(await hashPackageFiles(resolved.get('@acme/report-gen')!.dir)));
    assert.match(driftOf(checkFrozen(lock, resolved, now, root), '@acme/report-gen').message, /contents digest/);
  });

  it('version, path, added and missing extensions: one drift error each, naming what drifted', async () => {
    const { root, resolved, digests } = await project();
    const lock = buildLockfile(resolved, digests, root, '1.0.0');
    const now = new Map(resolved);
    now.set('audit-log', candidate('audit-log', '3.1.0', path.join(root, 'other/audit-log')));
    now.delete('@acme/report-gen');
    now.set('newcomer', candidate('newcomer', '0.1.0', path.join(root, 'plugins/newcomer')));
    const nowDigests = new Map(digests).set('newcomer', `sha256-${'1'.repeat(64)}`);
    const errors = checkFrozen(lock, now, nowDigests, root);
    assert.deepEqual(
      errors.map((e) => e.extension),
      ['@acme/report-gen', 'audit-log', 'newcomer'],
    );
    assert.ok(errors.every((e) => e.code === 'PLINTH_ERR_LOCKFILE_DRIFT'));
    assert.equal(driftOf(errors, 'audit-log').message, 'audit-log differs from plinth.lock.json: version locked 2.4.1, now 3.1.0; path locked plugins/audit-log, now other/audit-log');
    assert.match(driftOf(errors, '@acme/report-gen').message, /^@acme\/report-gen is locked \(1\.2\.0 at plugins\/@acme\/report-gen\) but is no longer installed/);
    assert.match(driftOf(errors, 'newcomer').message, /^newcomer 0\.1\.0 at .*plugins\/newcomer is not in plinth\.lock\.json$/);
  });

  it('only the path drifted: the same version moved to another plugin dir', async () => {
    const { root, resolved, digests } = await project();
    const lock = buildLockfile(resolved, digests, root, '1.0.0');
    const now = new Map(resolved).set('audit-log', candidate('audit-log', '2.4.1', path.join(root, 'vendor/audit-log')));
    const errors = checkFrozen(lock, now, digests, root);
    assert.equal(errors.length, 1);
    assert.equal(driftOf(errors, 'audit-log').message, 'audit-log differs from plinth.lock.json: path locked plugins/audit-log, now vendor/audit-log');
  });

  it('a digest that was not computed counts as drift, never as a match', async () => {
    const { root, resolved, digests } = await project();
    const lock = buildLockfile(resolved, digests, root, '1.0.0');
    const errors = checkFrozen(lock, resolved, new Map([...digests].filter(([id]) => id !== 'audit-log')), root);
    assert.match(driftOf(errors, 'audit-log').message, /now not computed/);
  });
});
