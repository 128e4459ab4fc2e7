// Installing the CLI for use outside the clone, as README "Installing the CLI" says: `npm install -g <clone>`
// (what `npm link` does) into a temp prefix, offline, then `plinth` from another directory (issue 9). The packed
// tarball needs its dependencies from the registry, so .ci/run checks that way, not this test.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { ROOT, tempDir } from '../helpers.ts';

const run = promisify(execFile);

describe('installing the CLI', () => {
  it('npm install -g <clone> into a prefix gives a working `plinth` anywhere', async () => {
    const prefix = await tempDir('plinth-prefix-');
    const elsewhere = await tempDir('plinth-elsewhere-');
    // npm on PATH runs on the Node 24 of node_modules/.bin under `npm test`; --offline: a link needs no registry.
    await run('npm', ['install', '-g', '--prefix', prefix, ROOT, '--offline', '--no-audit', '--no-fund'], { cwd: elsewhere, timeout: 60_000 });
    const bin = path.join(prefix, 'bin', 'plinth');
    const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = await run(bin, ['--version'], { cwd: elsewhere });
    assert.equal(v.stdout.trim(), version);
    const ls = await run(bin, ['ls', '--plugins', path.join(ROOT, 'plugins'), '--trust', path.join(ROOT, 'keys', 'dev-trust.json'), '--json'], { cwd: elsewhere });
    const envelope = JSON.parse(ls.stdout) as { ok: boolean; data: { extensions: Array<{ state: string }> } };
    assert.equal(envelope.ok, true);
    assert.equal(envelope.data.extensions.length, 8);
  });
});
