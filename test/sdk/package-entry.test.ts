// The SDK as a package entry (issue 13): `import { defineExtension } from 'plinth/sdk'` resolves and type-checks
// from an extension's own folder the way npm users expect (plinth in its node_modules; types from `exports`),
// the exports are the only way in, and `plinth-node` resolves the SDK for a folder with no node_modules at all,
// started by the shell's older Node.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { cp, mkdir, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { ROOT, tempDir } from '../helpers.ts';

const exec = promisify(execFile);
const CONSUMER = path.join(ROOT, 'test', 'fixtures', 'sdk-consumer');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

async function consumerWithPlinthInstalled(): Promise<string> {
  const dir = path.join(await tempDir('plinth-consumer-'), 'my-ext');
  await cp(CONSUMER, dir, { recursive: true });
  // (Written here, not in the fixture: in place, the fixture is checked by `npm run typecheck` as part of this
  // package, through its self-reference.)
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'my-ext', version: '1.0.0', type: 'module', private: true }));
  await mkdir(path.join(dir, 'node_modules'));
  // What `npm install <clone>` / `npm link plinth` leaves: a link to the package root.
  await symlink(ROOT, path.join(dir, 'node_modules', 'plinth'), 'dir');
  // And Node's types, as any TypeScript author of Node code has them (`npm i -D @types/node`): ctx.signal is an AbortSignal.
  await mkdir(path.join(dir, 'node_modules', '@types'));
  await symlink(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'), 'dir');
  return dir;
}

describe('plinth/sdk as a package entry', () => {
  it('type-checks in an extension folder with plinth in node_modules (a wrong input refused), and runs on Node 24', async () => {
    const dir = await consumerWithPlinthInstalled();
    // (The fixture's @ts-expect-error lines are live: `npm run typecheck` checks the same file in place.)
    const tsc = await exec(process.execPath, [TSC, '-p', dir], { cwd: dir }).catch((err: { stdout: string; stderr: string }) => ({ ...err, failed: true }));
    assert.ok(!('failed' in tsc), `${tsc.stdout}${tsc.stderr}`);
    const run = await exec(process.execPath, [path.join(dir, 'consumer.ts')], { cwd: dir });
    assert.deepEqual(JSON.parse(run.stdout), { defineExtension: 'function', same: true, out: { n: 42 } });
  });

  it('only the exports are reachable: plinth/sdk, plinth/sdk/testing, plinth/register, plinth/package.json', async () => {
    const dir = await consumerWithPlinthInstalled();
    const probe = `for (const s of ['plinth/sdk', 'plinth/sdk/testing', 'plinth/register', 'plinth/package.json', 'plinth/src/host/index.ts', 'plinth']) { try { import.meta.resolve(s); console.log(s, 'ok'); } catch (e) { console.log(s, e.code); } }`;
    const r = await exec(process.execPath, ['--input-type=module', '-e', probe], { cwd: dir });
    assert.deepEqual(r.stdout.trim().split('\n'), ['plinth/sdk ok', 'plinth/sdk/testing ok', 'plinth/register ok', 'plinth/package.json ok', 'plinth/src/host/index.ts ERR_PACKAGE_PATH_NOT_EXPORTED', 'plinth ERR_PACKAGE_PATH_NOT_EXPORTED']);
  });

  it('plinth-node: a folder with no node_modules imports plinth/sdk, started by the shell’s node, run on Node 24', async () => {
    const dir = await tempDir('plinth-plain-');
    await cp(path.join(CONSUMER, 'plain.mjs'), path.join(dir, 'plain.mjs'));
    const shellPath = (process.env.PATH ?? '').split(path.delimiter).filter((p) => !p.includes(`node_modules${path.sep}.bin`)).join(path.delimiter);
    const r = await exec('node', [path.join(ROOT, 'bin', 'plinth-node.js'), 'plain.mjs'], { cwd: dir, env: { ...process.env, PATH: shellPath } });
    assert.deepEqual(JSON.parse(r.stdout), { defineExtension: 'function', runStage: 'function', node: '24' });
    // The plinth launcher too: `node <clone>/bin/plinth.js` from such a shell runs, on Node 24, with its exit code.
    const version = await exec('node', [path.join(ROOT, 'bin', 'plinth.js'), '--version'], { cwd: dir, env: { ...process.env, PATH: shellPath } });
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
    const usage = await exec('node', [path.join(ROOT, 'bin', 'plinth.js'), 'new'], { cwd: dir, env: { ...process.env, PATH: shellPath } }).catch((err: { code: number }) => err);
    assert.equal((usage as { code: number }).code, 2);
  });
});
