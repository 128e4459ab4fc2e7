// Every refusal is logged by `plinth serve` — at start and on every reload — at warn/error with its code, the
// extension folder and the file or path concerned; start-up prints one readable summary (issue 9).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { appendFile, cp, mkdir, rename, writeFile } from 'node:fs/promises';
import { signExtension } from '../../src/trust/index.ts';
import { FIXTURES, runCli } from '../helpers.ts';
import { writeExt } from '../registry/helpers.ts';
import { CLI_FIXTURES, cliWorkspace, publisher, records, spawnServe } from './helpers.ts';

type Rec = Record<string, unknown>;

function refusal(recs: Rec[], extension: string, code: string): Rec | undefined {
  return recs.find((r) => r.extension === extension && r.code === code && (r.level === 40 || r.level === 50));
}

describe('plinth serve logs every refusal', () => {
  it('at start: tampered, unsigned, invalid manifest, package.json not JSON, bad extensions.<id>.config — with code, folder and file', async () => {
    const ws = await cliWorkspace(['talk-worker', 'slow-stop', 'talk-isolate'], { unsigned: ['slow-stop'] });
    await appendFile(path.join(ws.plugins, 'talk-worker', 'index.js'), '\n// tampered\n');
    await cp(path.join(FIXTURES, 'bad-manifest'), path.join(ws.plugins, 'bad-manifest'), { recursive: true });
    // Signed, so the manifest is what is refused (the signature is checked first, on the verified snapshot).
    await signExtension(path.join(ws.plugins, 'bad-manifest'), publisher.privateKey, publisher.id);
    await cp(path.join(FIXTURES, 'bad-json'), path.join(ws.plugins, 'bad-json'), { recursive: true });
    await writeExt(ws.plugins, { id: 'configured' });
    await writeFile(path.join(ws.root, 'plinth.config.yaml'), 'extensions:\n  configured:\n    config: { failStart: "yes" }\n');
    const serve = spawnServe(ws, ['--no-watch', '--json']);
    try {
      await serve.waitFor(/serving 1 extension/, 30_000, 'the start-up summary');
      const recs = records(serve.log());
      const tampered = refusal(recs, 'talk-worker', 'PLINTH_ERR_SIG_FILE_CHANGED');
      assert.ok(tampered, serve.log());
      assert.equal(tampered.folder, path.join(ws.plugins, 'talk-worker'));
      assert.equal(tampered.file, path.join(ws.plugins, 'talk-worker', 'index.js'));
      const unsigned = refusal(recs, 'slow-stop', 'PLINTH_ERR_SIG_MISSING');
      assert.ok(unsigned, serve.log());
      assert.equal(unsigned.folder, path.join(ws.plugins, 'slow-stop'));
      const manifest = refusal(recs, 'bad-manifest', 'PLINTH_ERR_MANIFEST_INVALID');
      assert.ok(manifest, serve.log());
      assert.equal(manifest.file, path.join(ws.plugins, 'bad-manifest', 'package.json'));
      assert.ok((manifest.problems as Array<{ path: string }>).some((p) => p.path === '/plinth/runtme'));
      const json = refusal(recs, 'bad-json', 'PLINTH_ERR_PACKAGE_JSON_INVALID');
      assert.ok(json, serve.log());
      assert.equal(json.file, path.join(ws.plugins, 'bad-json', 'package.json'));
      const config = refusal(recs, 'configured', 'PLINTH_ERR_EXTENSION_CONFIG_INVALID');
      assert.ok(config, serve.log());
      assert.equal(config.folder, path.join(ws.plugins, 'configured'));
      assert.equal(config.file, path.join(ws.root, 'plinth.config.yaml'));
      assert.ok((config.problems as Array<{ path: string }>).some((p) => p.path === '/extensions/configured/config/failStart'), JSON.stringify(config));
      // One summary: what is active, what failed and why.
      const summary = recs.find((r) => typeof r.msg === 'string' && r.msg.startsWith('serving '))!;
      assert.equal(summary.msg, 'serving 1 extension(s), 5 failed');
      const lines = (summary.lines as string[]).join('\n');
      assert.match(lines, /^active {3}talk-isolate 1\.0\.0 \(isolate\)$/m);
      for (const [id, code] of [['talk-worker', 'SIG_FILE_CHANGED'], ['slow-stop', 'SIG_MISSING'], ['bad-manifest', 'MANIFEST_INVALID'], ['bad-json', 'PACKAGE_JSON_INVALID'], ['configured', 'EXTENSION_CONFIG_INVALID']]) {
        assert.match(lines, new RegExp(`^FAILED {3}${id}\\b.*PLINTH_ERR_${code}: `, 'm'), lines);
      }
      assert.equal((summary.lines as string[]).length, 6, lines);
    } finally {
      serve.kill();
    }
  });

  it('at start under --frozen-lockfile: drift is logged with the extension, its folder and what drifted', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const locked = await runCli(['lock', '--plugins', ws.plugins, '--trust', ws.trust], { cwd: ws.root });
    assert.equal(locked.code, 0, locked.stderr);
    await appendFile(path.join(ws.plugins, 'talk-isolate', 'lib', 'shout.js'), '\n// a new build\n');
    await signExtension(path.join(ws.plugins, 'talk-isolate'), publisher.privateKey, publisher.id);
    const serve = spawnServe(ws, ['--no-watch', '--json', '--frozen-lockfile']);
    try {
      await serve.waitFor(/serving 0 extension/, 30_000, 'the start-up summary');
      const drift = refusal(records(serve.log()), 'talk-isolate', 'PLINTH_ERR_LOCKFILE_DRIFT');
      assert.ok(drift, serve.log());
      assert.equal(drift.folder, path.join(ws.plugins, 'talk-isolate'));
      assert.match(String(drift.msg), /talk-isolate/);
    } finally {
      serve.kill();
    }
  });

  it('on reload: a tampered change (the old version keeps serving), an unsigned new folder, package.json that is not JSON — readable lines', async () => {
    const ws = await cliWorkspace(['talk-isolate']);
    const serve = spawnServe(ws, ['--log-format', 'text']);
    try {
      await serve.waitFor(/watching the plugin directories for changes/, 30_000, 'serve to start watching');
      assert.match(serve.log(), /INFO {2}serving 1 extension\(s\)/);
      assert.match(serve.log(), /^ {4}active {3}talk-isolate 1\.0\.0 \(isolate\)$/m);

      const shout = path.join(ws.plugins, 'talk-isolate', 'lib', 'shout.js');
      await appendFile(shout, '\n// tampered\n');
      await serve.waitFor(/ERROR talk-isolate: refused: .*PLINTH_ERR_SIG_FILE_CHANGED|ERROR talk-isolate: refused: .*changed since signing.*code=PLINTH_ERR_SIG_FILE_CHANGED/, 10_000, 'the tampered change refused');
      const line = serve.log().split('\n').find((l) => l.includes('talk-isolate: refused:'))!;
      assert.ok(line.includes(`folder=${path.join(ws.plugins, 'talk-isolate')}`), line);
      assert.ok(line.includes(`file=${shout}`), line);
      assert.doesNotMatch(serve.log(), /talk-isolate: .*→ stopping/);

      const staging = path.join(ws.root, 'staging');
      await mkdir(staging);
      await cp(path.join(CLI_FIXTURES, 'slow-stop'), path.join(staging, 'slow-stop'), { recursive: true });
      await rename(path.join(staging, 'slow-stop'), path.join(ws.plugins, 'slow-stop'));
      await serve.waitFor(/ERROR slow-stop: refused: .*code=PLINTH_ERR_SIG_MISSING/, 10_000, 'the unsigned folder refused');

      await mkdir(path.join(staging, 'broken'));
      await writeFile(path.join(staging, 'broken', 'package.json'), '{ "name": "broken", "plinth": { } ');
      await rename(path.join(staging, 'broken'), path.join(ws.plugins, 'broken'));
      await serve.waitFor(/ERROR broken: refused: .*code=PLINTH_ERR_PACKAGE_JSON_INVALID/, 10_000, 'the broken package.json refused');
      assert.ok(serve.log().includes(`file=${path.join(ws.plugins, 'broken', 'package.json')}`));
    } finally {
      serve.kill();
    }
  });
});
