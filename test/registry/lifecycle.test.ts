// Dependency-ordered start and stop, resolution failures with their explanations, the lockfile, all through a
// real host with real worker sandboxes over signed folders in a temp dir.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { Host } from '../../src/host/index.ts';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { rejectsWith, runCli, tempDir } from '../helpers.ts';
import { signExtension } from '../../src/trust/index.ts';
import { workspace, writeExt, states, publisher } from './helpers.ts';

type Started = { id: string; t0: number; t1: number };

describe('start and stop order', () => {
  it('starts dependencies first, independent extensions in parallel, and stops in reverse order', async () => {
    // a and d meet at a barrier inside start(): the run below fails unless both are starting at once.
    const barrier = await tempDir();
    const meet = JSON.stringify({ dir: barrier, with: ['a', 'd'] });
    const w = await workspace(
      [
        { id: 'a' },
        { id: 'b', dependencies: { a: '^1.0.0' } },
        { id: 'c', dependencies: { b: '~1.0.0', a: '*' } },
        { id: 'd' },
      ],
      { config: `extensions:\n  a:\n    config: { rendezvous: ${meet} }\n  d:\n    config: { rendezvous: ${meet} }\n` },
    );
    try {
      assert.deepEqual(states(w.host), { a: 'active', b: 'active', c: 'active', d: 'active' });
      const started = new Map(w.events.filter((e) => e.topic === 'test.started').map((e) => [(e.payload as Started).id, e.payload as Started]));
      const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((id) => started.get(id)!);
      assert.ok(a!.t1 <= b!.t0 && b!.t1 <= c!.t0, 'each dependency finished starting before its dependent began');
      assert.ok(a!.t0 < d!.t1 && d!.t0 < a!.t1, 'independent a and d started at the same time');
      const lifecycle = w.events.filter((e) => e.topic.startsWith('extension.a.')).map((e) => e.topic.split('.')[2]);
      assert.deepEqual(lifecycle, ['discovered', 'validated', 'verified', 'resolved', 'starting', 'active'], 'every transition is an event');
      const ordered = w.events.filter((e) => e.topic.startsWith('extension.') && e.topic.endsWith('.active')).map((e) => e.topic.split('.')[1]);
      assert.ok(ordered.indexOf('a') < ordered.indexOf('b') && ordered.indexOf('b') < ordered.indexOf('c'));
    } finally {
      await w.host.stop();
    }
    const stopped = w.events.filter((e) => e.topic === 'test.stopped').map((e) => (e.payload as { id: string }).id);
    assert.ok(stopped.indexOf('c') < stopped.indexOf('b') && stopped.indexOf('b') < stopped.indexOf('a'), `stop order ${stopped.join(',')}`);
  });
});

describe('resolution failures explain themselves; unrelated extensions start', () => {
  it('missing, unsatisfied, cycle, host version, and a dependency that failed to start', async () => {
    const w = await workspace(
      [
        { id: 'audit-log', version: '2.4.1' },
        { id: 'report-gen', version: '1.2.0', dependencies: { 'audit-log': '^3.0.0' } },
        { id: 'needs-ghost', dependencies: { ghost: '^1.0.0' } },
        { id: 'opt-ghost', dependencies: { ghost: { version: '^1.0.0', optional: true } } },
        { id: 'cyc-a', dependencies: { 'cyc-b': '*' } },
        { id: 'cyc-b', dependencies: { 'cyc-a': '*' } },
        { id: 'future', hostRange: '^9.0.0' },
        { id: 'flaky' },
        { id: 'on-flaky', dependencies: { flaky: '^1.0.0' } },
        { id: 'on-on-flaky', dependencies: { 'on-flaky': '^1.0.0' } },
      ],
      { config: 'extensions:\n  flaky:\n    config: { failStart: true }\n' },
    );
    try {
      const byId = Object.fromEntries(w.host.list().map((e) => [e.id, e]));
      const code = (id: string) => byId[id]!.reason?.code;
      const message = (id: string) => String(byId[id]!.reason?.message);
      assert.equal(byId['audit-log']!.state, 'active');
      assert.equal(byId['opt-ghost']!.state, 'active', 'a missing optional dependency is fine');
      assert.equal(code('report-gen'), 'PLINTH_ERR_DEPENDENCY_UNSATISFIED');
      assert.match(message('report-gen'), /report-gen 1\.2\.0 needs audit-log \^3\.0\.0; installed: 2\.4\.1 at .*audit-log/);
      assert.equal(code('needs-ghost'), 'PLINTH_ERR_DEPENDENCY_MISSING');
      assert.equal(code('cyc-a'), 'PLINTH_ERR_DEPENDENCY_CYCLE');
      assert.match(message('cyc-a'), /cyc-a → cyc-b → cyc-a|cyc-b → cyc-a → cyc-b/);
      assert.equal(code('future'), 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
      assert.equal(code('flaky'), 'PLINTH_ERR_EXTENSION_LOAD_FAILED');
      assert.equal(code('on-flaky'), 'PLINTH_ERR_DEPENDENCY_FAILED');
      assert.match(message('on-flaky'), /flaky/);
      assert.equal(code('on-on-flaky'), 'PLINTH_ERR_DEPENDENCY_FAILED');
      assert.match(message('on-on-flaky'), /on-flaky/);
      await rejectsWith(w.host.call('report-gen', 'whoami', {}), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
    } finally {
      await w.host.stop();
    }
  });

  it('of several installed versions, the one that satisfies every dependent is chosen', async () => {
    const w = await workspace([{ id: 'lib', version: '2.5.0' }, { id: 'app', dependencies: { lib: '^2.0.0' } }], { start: false });
    await writeExt(w.plugins, { id: 'lib', version: '3.1.0' }, 'lib-v3');
    await w.host.start();
    try {
      assert.deepEqual(await w.host.call('lib', 'whoami', {}), { id: 'lib', version: '2.5.0' });
      const shadowed = w.host.list().find((e) => e.id === 'lib' && e.version === '3.1.0');
      assert.equal(shadowed?.reason?.code, 'PLINTH_ERR_DUPLICATE_EXTENSION');
    } finally {
      await w.host.stop();
    }
  });
});

describe('manifest breaker settings', () => {
  it("override the host's defaults: two slow calls open this extension's breaker, not its neighbour's", async () => {
    const breaker = { minimumCalls: 2, slowCallDurationMs: 50, slowCallRateThreshold: 50, recoveryTimeoutMs: 60_000 };
    const withBreaker = async (dir: string) => {
      const file = path.join(dir, 'package.json');
      const pkg = JSON.parse(await readFile(file, 'utf8')) as { plinth: Record<string, unknown> };
      pkg.plinth.breaker = breaker;
      await writeFile(file, JSON.stringify(pkg, null, 2));
    };
    const w = await workspace([{ id: 'touchy', edit: withBreaker }, { id: 'calm' }]);
    try {
      for (const id of ['touchy', 'calm']) {
        await w.host.call(id, 'slow', { ms: 100 });
        await w.host.call(id, 'slow', { ms: 100 });
      }
      await rejectsWith(w.host.call('touchy', 'whoami', {}), 'PLINTH_ERR_CIRCUIT_OPEN');
      assert.deepEqual(await w.host.call('calm', 'whoami', {}), { id: 'calm', version: '1.0.0' }, 'host defaults: 10 calls before the rate counts');
      assert.ok(w.events.some((e) => e.topic === 'extension.touchy.breaker' && (e.payload as { state: string }).state === 'open'));
    } finally {
      await w.host.stop();
    }
  });
});

describe('lockfile', () => {
  it('`plinth lock` writes id → version, path, digest; --frozen-lockfile refuses drift and names it', async () => {
    const w = await workspace([{ id: 'a' }, { id: 'b', dependencies: { a: '^1.0.0' } }, { id: 'c' }], { start: false });
    const r = await runCli(['lock', '--json'], { cwd: w.root });
    assert.equal(r.code, 0, r.stderr);
    const lockFile = path.join(w.root, 'plinth.lock.json');
    const lock = JSON.parse(await readFile(lockFile, 'utf8')) as { extensions: Record<string, { version: string; path: string; digest: string }> };
    assert.deepEqual(Object.keys(lock.extensions), ['a', 'b', 'c']);
    assert.equal(lock.extensions.a!.path, 'plugins/a');
    assert.match(lock.extensions.a!.digest, /^sha256-[0-9a-f]{64}$/);

    // c changes version on disk; a's contents change and it is re-signed (valid, so only the lockfile can tell).
    await writeExt(w.plugins, { id: 'c', version: '1.1.0' });
    await writeFile(path.join(w.plugins, 'a', 'NOTES.md'), 'rebuilt\n');
    await signExtension(path.join(w.plugins, 'a'), publisher.privateKey, publisher.id);
    const host = new Host(w.host.config, { frozenLockfile: lockFile, stopSandboxProcesses: false, logger: pino({ level: 'silent' }) });
    await host.start();
    try {
      const byId = Object.fromEntries(host.list().map((e) => [e.id, e]));
      assert.equal(byId.c!.reason?.code, 'PLINTH_ERR_LOCKFILE_DRIFT');
      assert.match(String(byId.c!.reason?.message), /1\.0\.0.*1\.1\.0|1\.1\.0.*1\.0\.0/);
      assert.equal(byId.a!.reason?.code, 'PLINTH_ERR_LOCKFILE_DRIFT');
      assert.match(String(byId.a!.reason?.message), /digest|contents/);
      assert.equal(byId.b!.reason?.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    } finally {
      await host.stop();
      await IsolateProcess.shutdownAll();
    }
  });
});
