// `plinth serve` as operators run it: a subprocess over a temp plugin directory, hot reload, graceful stop.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { BIN, ROOT, tempDir, writeTrustStore } from '../helpers.ts';
import { dropExt, publisher } from '../registry/helpers.ts';

describe('plinth serve', () => {
  it('serves, hot-loads a folder copied in within 2 s, and stops gracefully on SIGTERM', async () => {
    const root = await tempDir();
    const plugins = path.join(root, 'plugins');
    await mkdir(plugins);
    await cp(path.join(ROOT, 'plugins', 'csv-ingest'), path.join(plugins, 'csv-ingest'), { recursive: true });
    const trust = path.join(root, 'trust.json');
    await writeTrustStore(trust, [publisher]);
    // The bundled plugin is signed by the development key: trust both stores' publishers.
    const devTrust = JSON.parse(await readFile(path.join(ROOT, 'keys', 'dev-trust.json'), 'utf8')) as { publishers: object };
    const mine = JSON.parse(await readFile(trust, 'utf8')) as { publishers: object };
    await writeFile(trust, JSON.stringify({ publishers: { ...devTrust.publishers, ...mine.publishers } }));

    const child = spawn(process.execPath, [BIN, 'serve', '--plugins', plugins, '--trust', trust, '--data-dir', path.join(root, 'data')], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Woken by the child's own output, bounded by `ms`: no polling interval.
    const waitLog = (re: RegExp, ms: number, what: string) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(log)) return resolve();
        const onData = () => {
          if (!re.test(log)) return;
          clearTimeout(timer);
          child.stderr.off('data', onData);
          resolve();
        };
        const timer = setTimeout(() => {
          child.stderr.off('data', onData);
          reject(new Error(`timed out waiting for ${what}; log:\n${log}`));
        }, ms);
        child.stderr.on('data', onData);
      });
    try {
      await waitLog(/watching the plugin directories/, 15_000, 'serve to start watching');
      assert.match(log, /"extension":"csv-ingest".*"state":"active"/);
      const t0 = Date.now();
      await dropExt(plugins, { id: 'newcomer' });
      await waitLog(/"extension":"newcomer".*"state":"active"/, 5000, 'newcomer active');
      assert.ok(Date.now() - t0 < 2000, `active within 2 s (took ${Date.now() - t0} ms)`);
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.match(log, /SIGTERM: stopping/);
      assert.match(log, /"extension":"newcomer".*"state":"stopped"/);
      assert.match(log, /"msg":"stopped"/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
