// Issue 7 §1, what runs is what was verified: the host copies each package into a content-addressed snapshot
// while hashing it, checks the signature against those hashes, reads the manifest from the copy, and loads,
// restarts and swaps only from it. Real signed fixtures, real worker threads and isolate processes killed with
// real signals, real files tampered with in the plugin folder.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { watch } from 'node:fs';
import { appendFile, chmod, cp, mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { IsolateSandbox } from '../../src/sandbox/isolate/index.ts';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { takeSnapshot, pruneSnapshots, snapshotsDir } from '../../src/snapshot/index.ts';
import { readPackageJson, validateExtensionPackage } from '../../src/manifest/index.ts';
import { MAX_SIGNATURE_BYTES, signExtension, verifyFiles } from '../../src/trust/index.ts';
import { fileListDigest } from '../../src/resolve/index.ts';
import { waitFor } from '../registry/helpers.ts';
import { rejectsWith, runCli, tempDir, trustStore } from '../helpers.ts';
import { assertBystanderServes, publisher, securityHost, stateOf, SECURITY_FIXTURES } from './snapshot-helpers.ts';

after(() => IsolateProcess.shutdownAll());

const TAMPERED = "export const CODE = 'tampered';\n";
const BYSTANDER_DIR = 'well-behaved';

async function snapshotFolders(dataDir: string): Promise<string[]> {
  return (await readdir(snapshotsDir(dataDir)).catch(() => [] as string[])).sort();
}

describe('a restarted sandbox runs the verified snapshot, never the plugin folder', () => {
  it('trusted worker: a file tampered with after start, then the thread crashes — the restart runs the verified code', async () => {
    const w = await securityHost({ fixtures: { 'snapshot-worker': 'snapshot-worker' } });
    try {
      await w.host.watch();
      const before = (await w.host.call('snapshot-worker', 'whoami', {})) as { code: string; url: string };
      assert.equal(before.code, 'verified');
      // Loaded from the snapshot under the data dir, not from the plugin folder.
      const loadedFrom = fileURLToPath(before.url);
      assert.ok(loadedFrom.startsWith(snapshotsDir(w.dataDir) + path.sep), loadedFrom);
      // The listing still names the plugin folder the user knows.
      assert.equal(w.host.list().find((e) => e.id === 'snapshot-worker')!.path, path.join(w.plugins, 'snapshot-worker'));

      await writeFile(path.join(w.plugins, 'snapshot-worker', 'code.js'), TAMPERED);
      // The watcher sees the change and refuses it: the old (verified) version keeps serving.
      await waitFor(() => w.host.list().find((e) => e.id === 'snapshot-worker')?.reloadError?.code === 'PLINTH_ERR_SIG_FILE_CHANGED', 'the tampered copy refused', 10_000);

      const restarts = w.host.get('snapshot-worker')!.info().restarts;
      await rejectsWith(w.host.call('snapshot-worker', 'crash', {}), 'PLINTH_ERR_SANDBOX_CRASHED');
      await waitFor(() => w.host.get('snapshot-worker')!.info().restarts > restarts && w.host.get('snapshot-worker')!.state === 'active', 'the worker restarted', 10_000);
      const afterRestart = (await w.host.call('snapshot-worker', 'whoami', {})) as { code: string; url: string };
      assert.equal(afterRestart.code, 'verified', 'the restarted thread runs the verified bytes');
      assert.equal(afterRestart.url, before.url);
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('isolate: a file tampered with after start, then its sandbox process is SIGKILLed — the restart runs the verified code', async () => {
    const w = await securityHost({ fixtures: { 'snapshot-isolate': 'snapshot-isolate' } });
    try {
      assert.deepEqual(await w.host.call('snapshot-isolate', 'whoami', {}), { code: 'verified' });
      await writeFile(path.join(w.plugins, 'snapshot-isolate', 'code.js'), TAMPERED);
      await writeFile(path.join(w.plugins, 'snapshot-isolate', 'index.js'), "export default { stages: { whoami: () => ({ code: 'tampered index' }) } };\n");

      const sandbox = w.sandboxes.get('snapshot-isolate')!.at(-1)!;
      assert.ok(sandbox instanceof IsolateSandbox);
      const pid = sandbox.process.pid!;
      assert.ok(pid > 0);
      process.kill(pid, 'SIGKILL');
      await waitFor(() => (w.sandboxes.get('snapshot-isolate')?.length ?? 0) > 1 && w.host.get('snapshot-isolate')!.state === 'active', 'the isolate restarted', 10_000);
      assert.deepEqual(await w.host.call('snapshot-isolate', 'whoami', {}), { code: 'verified' }, 'the restarted isolate runs the verified bytes');
      const restarted = w.sandboxes.get('snapshot-isolate')!.at(-1)!;
      assert.ok(restarted.spec.dir.startsWith(snapshotsDir(w.dataDir) + path.sep), restarted.spec.dir);
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('policy warn: an unsigned isolate runs what was hashed when it was copied, also after a restart', async () => {
    const w = await securityHost({ fixtures: { 'snapshot-isolate': 'snapshot-isolate' }, unsigned: ['snapshot-isolate'], policy: 'warn' });
    try {
      assert.equal(w.host.get('snapshot-isolate')!.pkg.dir.startsWith(snapshotsDir(w.dataDir) + path.sep), true);
      await writeFile(path.join(w.plugins, 'snapshot-isolate', 'code.js'), TAMPERED);
      const sandbox = w.sandboxes.get('snapshot-isolate')!.at(-1)! as IsolateSandbox;
      process.kill(sandbox.process.pid!, 'SIGKILL');
      await waitFor(() => (w.sandboxes.get('snapshot-isolate')?.length ?? 0) > 1 && w.host.get('snapshot-isolate')!.state === 'active', 'the isolate restarted', 10_000);
      assert.deepEqual(await w.host.call('snapshot-isolate', 'whoami', {}), { code: 'verified' });
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('the snapshot is read-only, named by its contents, and holds exactly the package', async () => {
    const w = await securityHost({ fixtures: { 'snapshot-isolate': 'snapshot-isolate' } });
    try {
      const pkg = w.host.get('snapshot-isolate')!.pkg;
      assert.equal(pkg.sourceDir, path.join(w.plugins, 'snapshot-isolate'));
      assert.equal(path.dirname(pkg.dir), snapshotsDir(w.dataDir));
      assert.match(path.basename(pkg.dir), /^[0-9a-f]{64}$/);
      assert.deepEqual((await readdir(pkg.dir)).sort(), (await readdir(pkg.sourceDir)).sort());
      assert.equal((await stat(pkg.dir)).mode & 0o222, 0, 'the snapshot folder is not writable');
      for (const f of await readdir(pkg.dir)) assert.equal((await stat(path.join(pkg.dir, f))).mode & 0o222, 0, `${f} is not writable`);
      assert.equal(w.host.get('snapshot-isolate')!.digest, fileListDigest((await takeSnapshot(pkg.sourceDir, snapshotsDir(w.dataDir))).files));
    } finally {
      await w.host.stop();
    }
  });
});

describe('the manifest is read from the verified snapshot (no check-then-use window)', () => {
  it('package.json escalated in the plugin folder while the package is being copied: the verified manifest is the one used', async () => {
    // A large signed file keeps the copy busy after package.json is in the snapshot.
    const w = await securityHost({
      fixtures: { 'snapshot-isolate': 'snapshot-isolate' },
      edit: async (folder, dir) => {
        if (folder === 'snapshot-isolate') await writeFile(path.join(dir, 'blob.bin'), Buffer.alloc(48 * 1024 * 1024, 7));
      },
      start: false,
    });
    const source = path.join(w.plugins, 'snapshot-isolate', 'package.json');
    const original = await readFile(source, 'utf8');
    const manifest = JSON.parse(original) as { plinth: Record<string, unknown> };
    const escalated = JSON.stringify({ ...manifest, plinth: { ...manifest.plinth, permissions: { env: ['PLINTH_TEST_SECRET'] } } });
    const root = snapshotsDir(w.dataDir);
    await mkdir(root, { recursive: true });
    let tamperedMidCopy = false;
    // As soon as the copy of package.json is complete in the temp folder, rewrite the original.
    const tamper = (async () => {
      await waitFor(async () => {
        for (const name of await readdir(root)) {
          if (!name.startsWith('.tmp-')) continue;
          const copied = await readFile(path.join(root, name, 'package.json'), 'utf8').catch(() => '');
          if (copied === original) {
            await writeFile(source, escalated);
            tamperedMidCopy = (await readdir(root)).includes(name); // the copy (and so the check) was not finished
            return true;
          }
        }
        return false;
      }, 'the copy of package.json', 20_000);
    })();
    try {
      await Promise.all([w.host.start(), tamper]);
      assert.ok(tamperedMidCopy, 'package.json was rewritten while the package was still being copied');
      assert.equal(stateOf(w.host, 'snapshot-isolate').state, 'active');
      assert.equal(w.host.get('snapshot-isolate')!.pkg.manifest.permissions.env, undefined, 'the manifest in use is the verified one');
      assert.deepEqual(await w.host.call('snapshot-isolate', 'env', {}), { denied: 'PLINTH_ERR_PERMISSION_DENIED' });
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('the snapshot, not the folder, is what verification and validation see', async () => {
    const root = await tempDir();
    const dir = path.join(root, 'ext');
    await cp(path.join(SECURITY_FIXTURES, 'snapshot-isolate'), dir, { recursive: true });
    await signExtension(dir, publisher.privateKey, publisher.id);
    const snap = await takeSnapshot(dir, path.join(root, 'snapshots'), 'snapshot-isolate');
    // The folder changes after the copy: nothing about the snapshot does.
    await writeFile(path.join(dir, 'package.json'), '{ "name": "snapshot-isolate", "plinth": { "runtime": "worker" } }');
    await appendFile(path.join(dir, 'index.js'), '\n// tampered\n');
    const v = await verifyFiles({ dir: snap.dir, files: snap.files, store: trustStore([publisher]), extension: 'snapshot-isolate', reportDir: dir });
    assert.equal(v.publisher, publisher.id);
    const pkg = await validateExtensionPackage(snap.dir, await readPackageJson(snap.dir, dir), { sourceDir: dir });
    assert.equal(pkg.manifest.runtime, 'isolate');
    assert.equal(pkg.mainPath, path.join(snap.dir, 'index.js'));
    assert.equal(pkg.sourceDir, dir);
  });
});

describe('snapshot store', () => {
  it('two scans taking the same snapshot at once both get it, whole; nothing is left in temp folders', async () => {
    const root = await tempDir();
    const dir = path.join(root, 'ext');
    await cp(path.join(SECURITY_FIXTURES, 'snapshot-worker'), dir, { recursive: true });
    await signExtension(dir, publisher.privateKey, publisher.id);
    const store = path.join(root, 'snapshots');
    const snaps = await Promise.all(Array.from({ length: 6 }, () => takeSnapshot(dir, store)));
    assert.equal(new Set(snaps.map((s) => s.dir)).size, 1);
    assert.deepEqual(await readdir(store), [path.basename(snaps[0]!.dir)]);
    await verifyFiles({ dir: snaps[0]!.dir, files: snaps[0]!.files, store: trustStore([publisher]) });
  });

  it('a damaged snapshot is not reused: it is replaced by a fresh copy', async () => {
    const root = await tempDir();
    const dir = path.join(root, 'ext');
    await cp(path.join(SECURITY_FIXTURES, 'snapshot-worker'), dir, { recursive: true });
    const store = path.join(root, 'snapshots');
    const first = await takeSnapshot(dir, store);
    await chmod(first.dir, 0o755);
    await chmod(path.join(first.dir, 'code.js'), 0o644);
    await writeFile(path.join(first.dir, 'code.js'), TAMPERED);
    const second = await takeSnapshot(dir, store);
    assert.equal(second.dir, first.dir);
    assert.equal(await readFile(path.join(second.dir, 'code.js'), 'utf8'), await readFile(path.join(dir, 'code.js'), 'utf8'));
  });

  it('snapshots nothing refers to are removed at start-up and after a hot swap; the running one stays', async () => {
    const w = await securityHost({ fixtures: { 'snapshot-isolate': 'snapshot-isolate' }, start: false });
    // A leftover from an earlier run, and a temp folder of a process that is gone.
    const stale = await takeSnapshot(path.join(w.plugins, BYSTANDER_DIR), snapshotsDir(w.dataDir));
    await mkdir(path.join(snapshotsDir(w.dataDir), '.tmp-999999999-dead'), { recursive: true });
    await writeFile(path.join(w.plugins, BYSTANDER_DIR, 'extra.js'), '// makes the earlier snapshot stale\n');
    await signExtension(path.join(w.plugins, BYSTANDER_DIR), publisher.privateKey, publisher.id);
    try {
      await w.host.start();
      const running = () => [w.host.get('snapshot-isolate')!.pkg.dir, w.host.get('well-behaved')!.pkg.dir].map((d) => path.basename(d)).sort();
      assert.deepEqual(await snapshotFolders(w.dataDir), running());
      assert.ok(!(await snapshotFolders(w.dataDir)).includes(path.basename(stale.dir)));
      // A new signed version is swapped in; the old snapshot goes once the old version has stopped.
      const old = w.host.get('snapshot-isolate')!.pkg.dir;
      await writeFile(path.join(w.plugins, 'snapshot-isolate', 'code.js'), "export const CODE = 'version 2';\n");
      await signExtension(path.join(w.plugins, 'snapshot-isolate'), publisher.privateKey, publisher.id);
      await w.host.reload();
      assert.deepEqual(await w.host.call('snapshot-isolate', 'whoami', {}), { code: 'version 2' });
      assert.notEqual(w.host.get('snapshot-isolate')!.pkg.dir, old);
      assert.deepEqual(await snapshotFolders(w.dataDir), running());
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('pruneSnapshots keeps what is referenced and the temp folders of live processes', async () => {
    const root = await tempDir();
    const dir = path.join(root, 'ext');
    await cp(path.join(SECURITY_FIXTURES, 'well-behaved'), dir, { recursive: true });
    const store = path.join(root, 'snapshots');
    const kept = await takeSnapshot(dir, store);
    await appendFile(path.join(dir, 'index.js'), '\n');
    const dropped = await takeSnapshot(dir, store);
    await mkdir(path.join(store, `.tmp-${process.ppid}-busy`));
    const removed = await pruneSnapshots(store, new Set([kept.dir]));
    assert.deepEqual(removed, [dropped.dir]);
    assert.deepEqual((await readdir(store)).sort(), [`.tmp-${process.ppid}-busy`, path.basename(kept.dir)].sort());
  });

  it('policy required: an unsigned package is refused before anything of it is copied', async () => {
    const w = await securityHost({
      fixtures: { junk: 'snapshot-isolate' },
      unsigned: ['junk'],
      edit: async (folder, dir) => {
        if (folder === 'junk') await writeFile(path.join(dir, 'junk.bin'), Buffer.alloc(8 * 1024 * 1024, 1));
      },
      start: false,
    });
    const root = snapshotsDir(w.dataDir);
    await mkdir(root, { recursive: true });
    const seen = new Set<string>();
    const watcher = watch(root, (_event, name) => void (name && seen.add(String(name))));
    try {
      await w.host.start();
      assert.deepEqual(stateOf(w.host, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_SIG_MISSING' });
      await assertBystanderServes(w.host);
      // One temp folder and one snapshot: the bystander's. Nothing of the unsigned package was written.
      const bystander = path.basename(w.host.get('well-behaved')!.pkg.dir);
      await waitFor(() => seen.has(bystander), 'the bystander snapshot event');
      assert.deepEqual([...seen].filter((n) => n.startsWith('.tmp-')).length, 1, [...seen].join(', '));
      assert.deepEqual([...seen].filter((n) => !n.startsWith('.tmp-')), [bystander]);
    } finally {
      watcher.close();
      await w.host.stop();
    }
  });

  for (const policy of ['required', 'off'] as const) {
    it(`policy ${policy}: a package past packages.maxFiles or packages.maxMb is refused while being read; nothing is left in the data dir`, async () => {
      const w = await securityHost({
        fixtures: { many: 'snapshot-isolate', big: 'snapshot-isolate' },
        policy,
        config: 'packages: { maxFiles: 40, maxMb: 2 }\n',
        edit: async (folder, dir) => {
          if (folder === 'many') {
            await mkdir(path.join(dir, 'many'));
            for (let i = 0; i < 40; i++) await writeFile(path.join(dir, 'many', `f${i}.js`), `// ${i}\n`);
          }
          if (folder === 'big') await writeFile(path.join(dir, 'big.bin'), Buffer.alloc(3 * 1024 * 1024, 2));
        },
      });
      try {
        const failures = w.host.list().filter((e) => e.state === 'failed' && e.path !== '').map((e) => [path.basename(e.path), e.reason!.code, /packages\.max(Files|Mb)/.exec(String(e.reason!.message))?.[0]]);
        assert.deepEqual(failures.sort(), [
          ['big', 'PLINTH_ERR_PACKAGE_TOO_LARGE', 'packages.maxMb'],
          ['many', 'PLINTH_ERR_PACKAGE_TOO_LARGE', 'packages.maxFiles'],
        ]);
        assert.deepEqual(await snapshotFolders(w.dataDir), [path.basename(w.host.get('well-behaved')!.pkg.dir)]);
        await assertBystanderServes(w.host);
      } finally {
        await w.host.stop();
      }
    });
  }

  it('a plinth.sig larger than a signature can be is refused unread', async () => {
    const w = await securityHost({ fixtures: { big: 'snapshot-isolate' }, start: false });
    await truncate(path.join(w.plugins, 'big', 'plinth.sig'), MAX_SIGNATURE_BYTES + 1);
    await w.host.start();
    try {
      assert.deepEqual(stateOf(w.host, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_SIG_MALFORMED' });
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('plinth ls snapshots into a temp folder it removes: the data dir is left untouched', async () => {
    const w = await securityHost({ fixtures: { 'snapshot-isolate': 'snapshot-isolate' }, start: false });
    const r = await runCli(['ls', '--plugins', w.plugins, '--trust', path.join(w.root, 'trust.json'), '--data-dir', w.dataDir, '--json'], { cwd: w.root });
    assert.equal(r.code, 0, r.stderr);
    const list = (JSON.parse(r.stdout) as { data: { extensions: Array<{ id: string; state: string; path: string }> } }).data.extensions;
    assert.deepEqual(list.map((e) => [e.id, e.state, e.path]), [
      ['snapshot-isolate', 'verified', path.join(w.plugins, 'snapshot-isolate')],
      ['well-behaved', 'verified', path.join(w.plugins, 'well-behaved')],
    ]);
    await assert.rejects(stat(w.dataDir), { code: 'ENOENT' });
  });
});

