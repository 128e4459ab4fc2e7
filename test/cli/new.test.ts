// `plinth new` (issue 13): each runtime scaffolds a signed extension whose own `npm test` passes as it is — run
// here as a real child process from a temp folder outside the clone, with the shell's older Node first on PATH
// (the fresh-clone case: Node 24 only in this repo's node_modules) — plus bad names, an existing folder, the
// author key made on first use and reused, and the scaffold verifying under the trust policy.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { ROOT, runCli, tempDir } from '../helpers.ts';
import { main } from '../../src/cli/index.ts';

const exec = promisify(execFile);

/** PATH as a fresh shell has it: without any node_modules/.bin, so `node` is the system's (20 on these machines). */
const shellPath = (process.env.PATH ?? '').split(path.delimiter).filter((p) => !p.includes(`node_modules${path.sep}.bin`)).join(path.delimiter);

interface NewData {
  dir: string;
  runtime: string;
  lang: string;
  files: string[];
  publisher: string;
  keyId: string;
  key: { file: string; publicKey: string; created: boolean };
  trustStore: string;
}

async function scaffold(args: string[], cwd: string, home: string): Promise<NewData> {
  const r = await runCli(['new', ...args, '--json'], { cwd, env: { PLINTH_HOME: home } });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { data: NewData }).data;
}

/** `plinth new …` in this process (a CLI start costs ~1 s of CPU; the child-process runs are above). */
async function plinthNew(args: string[], home: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return inProcess(['new', ...args], home);
}

async function inProcess(argv: string[], home?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const before = process.env.PLINTH_HOME;
  if (home !== undefined) process.env.PLINTH_HOME = home;
  try {
    const code = await main(argv, { out: (t) => (stdout += t + '\n'), err: (t) => (stderr += t + '\n') });
    return { code, stdout, stderr };
  } finally {
    if (before === undefined) delete process.env.PLINTH_HOME;
    else process.env.PLINTH_HOME = before;
  }
}

async function npmTest(dir: string): Promise<{ stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: shellPath };
  // npm's own variables of the outer `npm test` would leak its node and config into the scaffold's run.
  for (const k of Object.keys(env)) if (k.startsWith('npm_') || k === 'NODE_OPTIONS' || k === 'NODE_TEST_CONTEXT') delete env[k];
  return exec('npm', ['test'], { cwd: dir, env, timeout: 120_000 });
}

describe('plinth new, then npm test inside the new folder', () => {
  const cases: Array<{ runtime: string; lang: string; main: string; test: string }> = [
    { runtime: 'isolate', lang: 'js', main: 'index.js', test: 'test/greet.test.js' },
    { runtime: 'worker', lang: 'js', main: 'index.js', test: 'test/greet.test.js' },
    { runtime: 'remote', lang: 'js', main: 'index.js', test: 'test/greet.test.js' },
    { runtime: 'worker', lang: 'ts', main: 'index.ts', test: 'test/greet.test.ts' },
  ];
  for (const c of cases) {
    it(`--runtime ${c.runtime} --lang ${c.lang}: a complete, signed scaffold whose npm test passes out of the box`, async () => {
      const root = await tempDir('plinth-new-');
      const home = path.join(root, 'home');
      const data = await scaffold([`hello-${c.runtime}`, '--runtime', c.runtime, '--lang', c.lang], root, home);
      assert.equal(data.dir, path.join(root, `hello-${c.runtime}`));
      const expected = ['.gitignore', 'README.md', c.main, `plinth-sdk.${c.main.split('.')[1]}`, 'package.json', 'plinth.sig', c.test];
      if (c.lang === 'ts') expected.push('tsconfig.json');
      if (c.runtime === 'remote') expected.push('start.js');
      assert.deepEqual(data.files, expected.sort());
      const pkg = JSON.parse(await readFile(path.join(data.dir, 'package.json'), 'utf8')) as { name: string; main: string; scripts: Record<string, string>; plinth: { runtime: string; stages: Record<string, { input: unknown; output: unknown }>; permissions: unknown; limits: unknown } };
      assert.equal(pkg.name, `hello-${c.runtime}`);
      assert.equal(pkg.main, c.main);
      assert.equal(pkg.plinth.runtime, c.runtime);
      assert.ok(pkg.plinth.stages.greet?.input && pkg.plinth.stages.greet.output, 'a stage with input and output schemas');
      assert.ok(pkg.plinth.permissions && pkg.plinth.limits);
      if (c.runtime === 'remote') assert.match(pkg.scripts.start ?? '', /plinth-node\.js' start\.js$/);
      assert.match(await readFile(path.join(data.dir, c.main), 'utf8'), /defineExtension\(/);
      for (const f of data.files) assert.doesNotMatch(await readFile(path.join(data.dir, f), 'utf8'), /\{\{\w+\}\}/, `${f} has a template placeholder left`);
      // Nothing of Plinth in the package: the folder signs and verifies as it is.
      assert.deepEqual((await readdir(data.dir)).filter((f) => f === 'node_modules'), []);

      const { stdout } = await npmTest(data.dir);
      assert.match(stdout, /^ℹ pass 3$/m, stdout);
      assert.match(stdout, /^ℹ fail 0$/m, stdout);
      // The tests ran from a copy: the folder is as plinth new left it, and still verifies.
      const verify = await inProcess(['verify', data.dir, '--trust', data.trustStore, '--json']);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);

      if (c.lang === 'ts') {
        // `import … from 'plinth/sdk'` type-checks in the scaffold (tsconfig paths to this Plinth's types).
        const tsc = await exec(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', data.dir], { cwd: data.dir }).catch((err: { stdout: string }) => ({ stdout: err.stdout, failed: true }));
        assert.ok(!('failed' in tsc), tsc.stdout);
      }
    });
  }
});

describe('plinth new --runtime isolate --lang ts', () => {
  it('writes the isolate code as JSDoc-typed JavaScript (an isolate runs JavaScript only) that tsc checks, and the tests in TypeScript', async () => {
    const root = await tempDir('plinth-new-');
    const r = await plinthNew(['typed', '--dir', path.join(root, 'typed'), '--runtime', 'isolate', '--lang', 'ts', '--json'], path.join(root, 'home'));
    assert.equal(r.code, 0, r.stderr);
    const data = (JSON.parse(r.stdout) as { data: NewData }).data;
    assert.deepEqual(data.files, ['.gitignore', 'README.md', 'index.js', 'package.json', 'plinth-sdk.js', 'plinth.sig', 'test/greet.test.ts', 'tsconfig.json']);
    assert.match(await readFile(path.join(data.dir, 'index.js'), 'utf8'), /^\/\/ @ts-check/);
    const tsc = await exec(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', data.dir], { cwd: data.dir }).catch((err: { stdout: string }) => ({ stdout: err.stdout, failed: true }));
    assert.ok(!('failed' in tsc), tsc.stdout);
  });
});

describe('plinth new refuses', () => {
  it('a name that is not a valid npm package name or extension id, writing nothing', async () => {
    const root = await tempDir('plinth-new-');
    for (const name of ['Hello', '.hidden', '_under', 'has space', 'fs', 'node_modules', 'a/b', '@scope/', 'x'.repeat(215), 'héllo']) {
      const r = await plinthNew([name, '--dir', path.join(root, 'x'), '--json'], path.join(root, 'home'));
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      const envelope = JSON.parse(r.stdout) as { error: { code: string; hint: string } };
      assert.equal(envelope.error.code, 'PLINTH_ERR_EXTENSION_NAME_INVALID', name);
      assert.match(envelope.error.hint, /@me\/hello/);
    }
    assert.deepEqual(await readdir(root), []);
  });

  it('an existing folder that is not empty, leaving it as it was; an empty one is used', async () => {
    const root = await tempDir('plinth-new-');
    const home = path.join(root, 'home');
    await mkdir(path.join(root, 'taken'));
    await writeFile(path.join(root, 'taken', 'notes.txt'), 'mine');
    const r = await plinthNew(['taken', '--dir', path.join(root, 'taken')], home);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^PLINTH_ERR_TARGET_NOT_EMPTY: .*taken already exists and is not empty/m);
    assert.match(r.stderr, /pick another name or --dir <folder>, or remove or empty that folder first/);
    assert.deepEqual(await readdir(path.join(root, 'taken')), ['notes.txt']);
    assert.equal(await readFile(path.join(root, 'taken', 'notes.txt'), 'utf8'), 'mine');
    // A file where the folder would go is refused the same way.
    await writeFile(path.join(root, 'afile'), 'x');
    assert.equal((await plinthNew(['afile', '--dir', path.join(root, 'afile')], home)).code, 1);

    await mkdir(path.join(root, 'empty'));
    const ok = await plinthNew(['empty', '--dir', path.join(root, 'empty')], home);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok((await readdir(path.join(root, 'empty'))).includes('plinth.sig'));
  });

  it('an unknown --runtime or --lang (usage, exit 2)', async () => {
    const root = await tempDir('plinth-new-');
    for (const args of [['--runtime', 'thread'], ['--lang', 'py']]) {
      const r = await plinthNew(['x', '--dir', path.join(root, 'x'), ...args], path.join(root, 'home'));
      assert.equal(r.code, 2, r.stderr);
    }
    assert.deepEqual(await readdir(root), []);
  });
});

describe("plinth new and the author's key", () => {
  it('creates the key on first use under PLINTH_HOME (path printed, 0600) and reuses it on the second', async () => {
    const root = await tempDir('plinth-new-');
    const home = path.join(root, 'home');
    const first = await plinthNew(['@acme/one', '--dir', path.join(root, 'one')], home);
    assert.equal(first.code, 0, first.stderr);
    const keyFile = path.join(home, 'author.key');
    assert.match(first.stdout, new RegExp(`created your author key: ${keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.match(first.stdout, /signed by publisher acme/);
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    const keyBefore = await readFile(keyFile, 'utf8');

    const r2 = await plinthNew(['two', '--dir', path.join(root, 'elsewhere', 'two'), '--json'], home);
    assert.equal(r2.code, 0, r2.stderr);
    const second = (JSON.parse(r2.stdout) as { data: NewData }).data;
    assert.equal(second.key.created, false);
    assert.equal(second.key.file, keyFile);
    assert.equal(second.publisher, 'acme', 'the publisher is remembered');
    assert.equal(await readFile(keyFile, 'utf8'), keyBefore);
    assert.doesNotMatch((await plinthNew(['three', '--dir', path.join(root, 'three')], home)).stdout, /created your author key/);
    // Both scaffolds carry the same key id, and verify against a trust store that lists that key.
    const sigs = await Promise.all([path.join(root, 'one'), second.dir].map(async (d) => (JSON.parse(await readFile(path.join(d, 'plinth.sig'), 'utf8')) as { keyId: string; publisher: string }).keyId));
    assert.equal(sigs[0], sigs[1]);
  });

  it('the scaffold verifies under the trust policy with that key trusted, and not without it', async () => {
    const root = await tempDir('plinth-new-');
    const home = path.join(root, 'home');
    const r = await plinthNew(['hello', '--dir', path.join(root, 'hello'), '--publisher', 'me', '--json'], home);
    assert.equal(r.code, 0, r.stderr);
    const data = (JSON.parse(r.stdout) as { data: NewData }).data;
    const trust = path.join(root, 'trust.json');
    await writeFile(trust, JSON.stringify({ publishers: { me: { keys: [await readFile(data.key.publicKey, 'utf8')], scopes: ['hello'] } } }));
    const ok = await inProcess(['verify', data.dir, '--trust', trust]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /verified hello: 6 file\(s\) signed by me/);
    // A host under policy `required` lists it as verified.
    const ls = await inProcess(['ls', '--plugins', root, '--trust', trust, '--trust-policy', 'required', '--data-dir', path.join(root, 'data'), '--json']);
    const listed = (JSON.parse(ls.stdout) as { data: { extensions: Array<{ id: string; state: string; trust: { status: string } }> } }).data.extensions.find((e) => e.id === 'hello');
    assert.equal(listed?.state, 'verified', ls.stdout);
    // Not trusted without the key.
    await writeFile(trust, JSON.stringify({ publishers: {} }));
    const refused = await inProcess(['verify', data.dir, '--trust', trust, '--json']);
    assert.equal(refused.code, 1);
    assert.equal((JSON.parse(refused.stdout) as { error: { code: string } }).error.code, 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER');
  });
});
