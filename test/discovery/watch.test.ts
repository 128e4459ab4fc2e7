// The plugin-directory watcher on real files in a temp dir: one settled callback per burst of writes, what it
// ignores (dot-entries and node_modules inside a plugin directory), and plugin directories under a dot-folder.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { watchPluginDirs } from '../../src/discovery/index.ts';
import { isIgnored } from '../../src/discovery/watch.ts';
import { tempDir } from '../helpers.ts';

/** Watches `dir`; `next()` resolves with the paths of the next settled change, or rejects after `ms`. */
async function watching(dir: string) {
  const batches: string[][] = [];
  let wake: (() => void) | undefined;
  const watcher = watchPluginDirs([dir], (paths) => {
    batches.push(paths);
    wake?.();
  }, { debounceMs: 30, stabilityMs: 20 });
  await watcher.ready;
  const next = (ms = 5000): Promise<string[]> =>
    new Promise((resolve, reject) => {
      if (batches.length > 0) return resolve(batches.shift()!);
      const timer = setTimeout(() => reject(new Error(`no change reported within ${ms} ms`)), ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve(batches.shift()!);
      };
    });
  return { watcher, next };
}

describe('plugin directory watcher', () => {
  // Regression (seen): nothing was hot-reloaded when the plugin directory lay under a dot-folder (~/.plinth/plugins):
  // the dot-file rule was matched against the absolute path.
  it('reports changes in a plugin directory that lies under a dot-folder', async () => {
    const plugins = path.join(await tempDir(), '.plinth', 'plugins');
    await mkdir(path.join(plugins, 'ext'), { recursive: true });
    const { watcher, next } = await watching(plugins);
    try {
      await writeFile(path.join(plugins, 'ext', 'index.js'), 'export default {};\n');
      const paths = await next();
      assert.ok(paths.some((p) => p.endsWith(path.join('ext', 'index.js'))), paths.join(', '));
    } finally {
      await watcher.close();
    }
  });

  it('ignores dot-entries and node_modules inside the plugin directory', async () => {
    const plugins = path.join(await tempDir(), 'plugins');
    await mkdir(path.join(plugins, 'ext', 'node_modules', 'dep'), { recursive: true });
    const { watcher, next } = await watching(plugins);
    try {
      await writeFile(path.join(plugins, 'ext', '.index.js.swp'), 'x');
      await writeFile(path.join(plugins, 'ext', 'node_modules', 'dep', 'index.js'), 'x');
      await writeFile(path.join(plugins, 'ext', 'a.js'), 'a');
      await writeFile(path.join(plugins, 'ext', 'b.js'), 'b');
      // Settled batches until the last write is reported (one batch unless the machine is slow).
      const paths: string[] = [];
      while (!paths.includes(path.join('ext', 'b.js'))) paths.push(...(await next()).map((p) => path.relative(plugins, p)));
      assert.deepEqual(paths.filter((p) => p.includes('.swp') || p.includes('node_modules')), []);
    } finally {
      await watcher.close();
    }
  });

  it('the ignore rule looks only at the path inside a plugin directory', () => {
    const roots = ['/home/u/.plinth/plugins', '/srv/plugins'];
    assert.equal(isIgnored(roots, '/home/u/.plinth/plugins'), false);
    assert.equal(isIgnored(roots, '/home/u/.plinth/plugins/ext/index.js'), false);
    assert.equal(isIgnored(roots, '/home/u/.plinth/plugins/ext/.git/HEAD'), true);
    assert.equal(isIgnored(roots, '/srv/plugins/ext/node_modules/x/index.js'), true);
    assert.equal(isIgnored(roots, '/srv/plugins/.hidden-ext/index.js'), true);
  });
});
