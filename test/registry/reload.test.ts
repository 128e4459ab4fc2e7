// Hot reload with the real chokidar watcher over a temp plugin directory: add, change (blue/green, in-flight
// calls finish on the old version, no call fails), remove (dependents stop with the reason), a broken update
// keeps the old version serving, and rapid writes settle on the last version.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { rm, writeFile, readFile } from 'node:fs/promises';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { after } from 'node:test';
import { dropExt, waitFor, workspace, writeExt, states, type Workspace } from './helpers.ts';

after(() => IsolateProcess.shutdownAll());

async function version(w: Workspace, id: string): Promise<string | undefined> {
  try {
    return ((await w.host.call(id, 'whoami', {})) as { version: string }).version;
  } catch {
    return undefined;
  }
}

describe('hot reload', () => {
  it('an extension folder copied in becomes active', async () => {
    const w = await workspace([{ id: 'base' }]);
    await w.host.watch();
    try {
      const t0 = Date.now();
      await dropExt(w.plugins, { id: 'newcomer', dependencies: { base: '^1.0.0' } });
      await waitFor(async () => (await version(w, 'newcomer')) === '1.0.0', 'newcomer active', 5000);
      assert.ok(Date.now() - t0 < 2000, `active within 2 s (took ${Date.now() - t0} ms)`);
      assert.equal(states(w.host).newcomer, 'active');
    } finally {
      await w.host.stop();
    }
  });

  it('a higher version replacing the folder is swapped in without a failed call; an in-flight call finishes on the old one', async () => {
    const w = await workspace([{ id: 'svc', version: '1.0.0' }]);
    await w.host.watch();
    try {
      const inflight = w.host.call('svc', 'slow', { ms: 1500 }) as Promise<{ version: string }>;
      let stop = false;
      const failures: unknown[] = [];
      const seen = new Set<string>();
      const hammer = (async () => {
        while (!stop) {
          try {
            seen.add(((await w.host.call('svc', 'whoami', {})) as { version: string }).version);
          } catch (err) {
            failures.push(err);
          }
        }
      })();
      await dropExt(w.plugins, { id: 'svc', version: '1.1.0' });
      await waitFor(async () => (await version(w, 'svc')) === '1.1.0', 'new version serving', 5000);
      assert.equal((await inflight).version, '1.0.0', 'the call in flight finished on the old version');
      stop = true;
      await hammer;
      assert.deepEqual(failures, [], 'no call failed during the swap');
      assert.deepEqual([...seen].sort(), ['1.0.0', '1.1.0']);
      const listed = w.host.list().filter((e) => e.id === 'svc');
      assert.deepEqual(listed.map((e) => [e.version, e.state]), [['1.1.0', 'active']]);
    } finally {
      await w.host.stop();
    }
  });

  it('a removed extension stops and is dropped; its dependents stop with the reason', async () => {
    const w = await workspace([{ id: 'core' }, { id: 'plugin-a', dependencies: { core: '^1.0.0' } }, { id: 'solo' }]);
    await w.host.watch();
    try {
      await rm(path.join(w.plugins, 'core'), { recursive: true });
      await waitFor(() => !w.host.list().some((e) => e.id === 'core'), 'core dropped');
      await waitFor(() => states(w.host)['plugin-a'] === 'failed', 'dependent stopped');
      const dependent = w.host.list().find((e) => e.id === 'plugin-a')!;
      assert.equal(dependent.reason?.code, 'PLINTH_ERR_DEPENDENCY_MISSING');
      assert.match(String(dependent.reason?.message), /core/);
      assert.equal(states(w.host).solo, 'active');
      assert.ok(w.events.some((e) => e.topic === 'test.stopped' && (e.payload as { id: string }).id === 'core'), 'core was stopped, not abandoned');
    } finally {
      await w.host.stop();
    }
  });

  it('a broken new version never replaces a working old one', async () => {
    const w = await workspace([{ id: 'steady' }]);
    await w.host.watch();
    try {
      // 1. A bad signature: a file changed after signing.
      await writeFile(path.join(w.plugins, 'steady', 'index.js'), (await readFile(path.join(w.plugins, 'steady', 'index.js'), 'utf8')) + '\n// tampered\n');
      await waitFor(() => w.host.list().find((e) => e.id === 'steady')?.reloadError !== undefined, 'reload error reported');
      assert.equal(w.host.list().find((e) => e.id === 'steady')!.reloadError!.code, 'PLINTH_ERR_SIG_FILE_CHANGED');
      assert.equal(await version(w, 'steady'), '1.0.0');
      // 2. A properly signed new version whose module throws when loaded.
      await dropExt(w.plugins, { id: 'steady', version: '2.0.0', edit: (dir) => writeFile(path.join(dir, 'version.js'), "throw new Error('broken build');\n") });
      await waitFor(() => w.host.list().find((e) => e.id === 'steady')?.reloadError?.code === 'PLINTH_ERR_EXTENSION_LOAD_FAILED', 'load failure reported');
      assert.equal(await version(w, 'steady'), '1.0.0', 'v1 keeps serving');
      // A good v2 then replaces it.
      await dropExt(w.plugins, { id: 'steady', version: '2.0.0' });
      await waitFor(async () => (await version(w, 'steady')) === '2.0.0', 'v2 swapped in');
      assert.equal(w.host.list().find((e) => e.id === 'steady')!.reloadError, undefined);
      // 3. A signed manifest that is not valid (unsigned, it would be refused for its signature first).
      const badManifest = async (dir: string) => {
        const pkgFile = path.join(dir, 'package.json');
        await writeFile(pkgFile, (await readFile(pkgFile, 'utf8')).replace('"runtime": "worker"', '"runtime": "thread"'));
      };
      await dropExt(w.plugins, { id: 'steady', version: '3.0.0', edit: badManifest });
      await waitFor(() => w.host.list().find((e) => e.id === 'steady')?.reloadError?.code === 'PLINTH_ERR_MANIFEST_INVALID', 'manifest error reported');
      assert.equal(await version(w, 'steady'), '2.0.0', 'v2 keeps serving');
    } finally {
      await w.host.stop();
    }
  });

  it('rapid successive writes settle on the last version', async () => {
    const w = await workspace([{ id: 'busy', version: '1.0.0' }]);
    await w.host.watch();
    try {
      for (const v of ['1.0.1', '1.0.2', '1.0.3', '1.0.4']) await writeExt(w.plugins, { id: 'busy', version: v });
      await waitFor(async () => (await version(w, 'busy')) === '1.0.4', 'last version serving', 8000);
      // One more reconcile round (it coalesces with any reload the watcher still has queued) instead of a fixed wait.
      await w.host.reload();
      assert.equal(await version(w, 'busy'), '1.0.4');
      assert.deepEqual(w.host.list().filter((e) => e.id === 'busy').map((e) => e.state), ['active']);
    } finally {
      await w.host.stop();
    }
  });
});
