// `plinth dev` sessions in-process (issue 13): a real host, real isolates and workers, real files edited in temp
// folders and a real watcher. Every wait is on the session's events, bounded; no fixed sleeps.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { pino } from 'pino';
import { DevSession, type RejectedEvent, type ServingEvent, type DevSessionOptions } from '../../src/dev/index.ts';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { devConfig, fixture } from './helpers.ts';

after(() => IsolateProcess.shutdownAll());

async function session(name: string, options: Partial<DevSessionOptions> = {}): Promise<{ s: DevSession; dir: string; root: string }> {
  const { root, dir } = await fixture(name);
  const s = new DevSession({ dir, config: await devConfig(root), logger: pino({ level: 'silent' }), control: false, ...options });
  return { s, dir, root };
}

/** The next `serving` or `rejected` event, whichever comes first, within `ms`. */
async function next(s: DevSession, ms = 20_000): Promise<{ serving?: ServingEvent; rejected?: RejectedEvent }> {
  const signal = AbortSignal.timeout(ms);
  const ac = new AbortController();
  const both = AbortSignal.any([signal, ac.signal]);
  try {
    return await Promise.race([
      once(s, 'serving', { signal: both }).then(([e]) => ({ serving: e as ServingEvent })),
      once(s, 'rejected', { signal: both }).then(([e]) => ({ rejected: e as RejectedEvent })),
    ]);
  } catch (err) {
    if (signal.aborted) throw new Error(`no serving/rejected event within ${ms} ms`, { cause: err });
    throw err;
  } finally {
    ac.abort();
  }
}

/** Writes `file` and waits for the session's verdict on the save. */
async function save(s: DevSession, file: string, text: string): Promise<{ serving?: ServingEvent; rejected?: RejectedEvent }> {
  const verdict = next(s);
  await writeFile(file, text);
  return verdict;
}

describe('plinth dev: an isolate extension', () => {
  it('serves the folder, and a save that works serves the new version (every module evaluated again)', async () => {
    const { s, dir } = await session('greeter');
    try {
      const first = next(s);
      await s.start();
      const started = await first;
      assert.equal(started.serving?.generation, 1);
      assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hello ada' });
      const r = await save(s, path.join(dir, 'lib.js'), "export const salutation = 'hi';\n");
      assert.equal(r.serving?.generation, 2, JSON.stringify(r.rejected?.problems));
      assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hi ada' });
    } finally {
      await s.stop();
    }
  });

  it('a save with a syntax error, a module that throws on load, or an invalid manifest keeps the last good version serving and names file:line:column', async () => {
    const { s, dir } = await session('greeter');
    try {
      await s.start();
      const serves = async () => assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hello ada' });

      // A syntax error: found before the host is asked to reload.
      let r = await save(s, path.join(dir, 'lib.js'), "// a comment\nexport const salutation = ;\n");
      assert.ok(r.rejected, 'rejected');
      const syntax = r.rejected.problems[0]!;
      assert.equal(syntax.file, path.join(dir, 'lib.js'));
      assert.equal(syntax.line, 2);
      assert.equal(syntax.column, 27);
      assert.equal(r.rejected.serving?.generation, 1);
      await serves();

      // A module that throws while loading: only the sandbox finds it; its stack names the line.
      await writeFile(path.join(dir, 'lib.js'), "export const salutation = 'hello';\n");
      const index = await readFile(path.join(dir, 'index.js'), 'utf8');
      r = await save(s, path.join(dir, 'index.js'), index.replace("import { salutation } from './lib.js';", "import { salutation } from './lib.js';\nthrow new Error('broken on load');"));
      assert.ok(r.rejected, `rejected, got ${JSON.stringify(r)}`);
      const thrown = r.rejected.problems[0]!;
      assert.equal(thrown.code, 'PLINTH_ERR_EXTENSION_LOAD_FAILED');
      assert.match(thrown.message, /broken on load/);
      assert.equal(thrown.file, path.join(dir, 'index.js'));
      assert.equal(thrown.line, 3);
      assert.equal(thrown.column, 7);
      await serves();

      // An invalid manifest: the problem is at its key in package.json.
      await writeFile(path.join(dir, 'index.js'), index);
      const manifest = await readFile(path.join(dir, 'package.json'), 'utf8');
      r = await save(s, path.join(dir, 'package.json'), manifest.replace('"runtime": "isolate"', '"runtime": "isolat"'));
      assert.ok(r.rejected, 'rejected');
      const bad = r.rejected.problems[0]!;
      assert.equal(bad.code, 'PLINTH_ERR_MANIFEST_INVALID');
      assert.equal(bad.file, path.join(dir, 'package.json'));
      const runtimeLine = manifest.split('\n').findIndex((l) => l.includes('"runtime"')) + 1;
      assert.equal(bad.line, runtimeLine, JSON.stringify(bad));
      await serves();

      // package.json that is not JSON.
      r = await save(s, path.join(dir, 'package.json'), manifest.replace('"version": "1.0.0",', '"version": "1.0.0"'));
      const notJson = r.rejected?.problems[0];
      assert.equal(notJson?.code, 'PLINTH_ERR_PACKAGE_JSON_INVALID');
      assert.ok(notJson.line !== undefined && notJson.line > 1, JSON.stringify(notJson));
      await serves();

      // Fixed: the next good save serves.
      r = await save(s, path.join(dir, 'package.json'), manifest.replace('"version": "1.0.0"', '"version": "1.0.1"'));
      assert.equal(r.serving?.version, '1.0.1', JSON.stringify(r.rejected?.problems));
      assert.equal(s.host!.get('greeter')?.version, '1.0.1');
    } finally {
      await s.stop();
    }
  });

  it('a folder that is broken when the session starts is not started at all; its first good save serves', async () => {
    const { s, dir } = await session('greeter');
    await writeFile(path.join(dir, 'lib.js'), 'export const salutation = ;\n');
    try {
      const first = next(s);
      await s.start();
      const r = await first;
      assert.ok(r.rejected, 'rejected');
      assert.equal(r.rejected.serving, undefined);
      assert.equal(r.rejected.problems[0]?.file, path.join(dir, 'lib.js'));
      assert.equal(s.host!.get('greeter'), undefined, 'nothing of it runs');
      const fixed = await save(s, path.join(dir, 'lib.js'), "export const salutation = 'hello';\n");
      assert.equal(fixed.serving?.generation, 1, JSON.stringify(fixed.rejected?.problems));
      assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hello ada' });
    } finally {
      await s.stop();
    }
  });

  it('a save that changes nothing the host runs is reported as unchanged, not as a new version', async () => {
    const { s, dir } = await session('greeter');
    try {
      await s.start();
      const unchanged = once(s, 'unchanged', { signal: AbortSignal.timeout(20_000) });
      await writeFile(path.join(dir, 'lib.js'), await readFile(path.join(dir, 'lib.js')));
      await unchanged;
      assert.equal(s.serving?.generation, 1);
    } finally {
      await s.stop();
    }
  });
});

describe('plinth dev: an extension with a build script', () => {
  it('runs npm run build before each reload; a failing build keeps the last built version serving; its own outputs never trigger another build', async () => {
    const { s, dir } = await session('greeter-build');
    let builds = 0;
    const countServing = () => builds++;
    s.on('serving', countServing);
    try {
      const first = next(s, 60_000);
      await s.start();
      assert.ok((await first).serving, 'built and served');
      assert.deepEqual(await s.host!.call('greeter-build', 'greet', { name: 'ada' }), { message: 'hello ada' });

      let r = await save(s, path.join(dir, 'src', 'greeting.txt'), 'hey\n');
      assert.equal(r.serving?.generation, 2, JSON.stringify(r.rejected?.problems));
      assert.deepEqual(await s.host!.call('greeter-build', 'greet', { name: 'ada' }), { message: 'hey ada' });

      r = await save(s, path.join(dir, 'src', 'greeting.txt'), 'please fail\n');
      assert.ok(r.rejected, 'rejected');
      const failed = r.rejected.problems.at(-1);
      assert.equal(failed?.code, 'PLINTH_ERR_DEV_BUILD_FAILED', JSON.stringify(r.rejected.problems));
      assert.match(failed.message, /npm run build exited with 1/);
      const located = r.rejected.problems[0]!;
      assert.equal(located.file, path.join(dir, 'src', 'greeting.txt'));
      assert.equal(located.line, 1);
      assert.deepEqual(await s.host!.call('greeter-build', 'greet', { name: 'ada' }), { message: 'hey ada' });

      // The build rewrote lib.js each time; had that started cycles of its own, more versions would have served.
      r = await save(s, path.join(dir, 'src', 'greeting.txt'), 'yo\n');
      assert.equal(r.serving?.generation, 3, JSON.stringify(r.rejected?.problems));
      assert.equal(builds, 3);
      await s.settled();
      assert.equal(s.serving?.generation, 3);
    } finally {
      s.off('serving', countServing);
      await s.stop();
    }
  });
});

describe('plinth dev: a "remote" extension', () => {
  it('is run as the runner of its own embedded host: it serves there, a save re-registers the new version, a broken one keeps the old', async () => {
    const { s, dir } = await session('greeter', { control: true });
    const manifest = path.join(dir, 'package.json');
    await writeFile(manifest, (await readFile(manifest, 'utf8')).replace('"runtime": "isolate"', '"runtime": "remote"'));
    try {
      const first = next(s, 60_000);
      await s.start();
      const started = await first;
      assert.equal(started.serving?.generation, 1, JSON.stringify(started.rejected?.problems));
      assert.equal(s.host!.list().find((e) => e.id === 'greeter')?.runtime, 'remote');
      assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hello ada' });
      const r = await save(s, path.join(dir, 'lib.js'), "export const salutation = 'hi';\n");
      assert.equal(r.serving?.generation, 2, JSON.stringify(r.rejected?.problems));
      assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hi ada' });
      const broken = await save(s, path.join(dir, 'lib.js'), "export const salutation = 'oops;\n");
      assert.equal(broken.rejected?.problems[0]?.file, path.join(dir, 'lib.js'));
      assert.deepEqual(await s.host!.call('greeter', 'greet', { name: 'ada' }), { message: 'hi ada' }, 'the last good version serves');
    } finally {
      await s.stop();
    }
  });
});

describe('plinth dev: a TypeScript worker extension', () => {
  it('a type error or a TypeScript syntax error keeps the last good version serving, named at file:line:column', async () => {
    const { s, dir } = await session('greeter-ts');
    try {
      const first = next(s, 60_000);
      await s.start();
      assert.ok((await first).serving, 'the unsigned TypeScript worker serves under plinth dev');
      assert.deepEqual(await s.host!.call('greeter-ts', 'greet', { name: 'ada' }), { message: 'hello ada' });
      const source = await readFile(path.join(dir, 'index.ts'), 'utf8');

      let r = await save(s, path.join(dir, 'index.ts'), source.replace('const message: string =', 'const message: number ='));
      assert.ok(r.rejected, 'rejected');
      const typeError = r.rejected.problems[0]!;
      assert.equal(typeError.code, 'TS2322');
      assert.equal(typeError.file, path.join(dir, 'index.ts'));
      assert.equal(typeError.line, 7);
      assert.equal(typeError.column, 9);
      assert.deepEqual(await s.host!.call('greeter-ts', 'greet', { name: 'ada' }), { message: 'hello ada' });

      r = await save(s, path.join(dir, 'index.ts'), source.replace('return { message };', 'return { message ;'));
      assert.ok(r.rejected, 'rejected');
      const syntax = r.rejected.problems[0]!;
      assert.equal(syntax.file, path.join(dir, 'index.ts'));
      assert.equal(syntax.line, 8, JSON.stringify(syntax));
      assert.ok(syntax.column !== undefined && syntax.column > 1, JSON.stringify(syntax));
      assert.deepEqual(await s.host!.call('greeter-ts', 'greet', { name: 'ada' }), { message: 'hello ada' });

      r = await save(s, path.join(dir, 'index.ts'), source.replace('`hello ${input.name}`', '`hi ${input.name}`'));
      assert.ok(r.serving, JSON.stringify(r.rejected?.problems));
      assert.deepEqual(await s.host!.call('greeter-ts', 'greet', { name: 'ada' }), { message: 'hi ada' });
    } finally {
      await s.stop();
    }
  });
});
