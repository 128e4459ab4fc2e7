// The event bus end to end: extension subscribers (manifest `subscribes` within `permissions.events.subscribe`),
// handleEvent in worker and isolate sandboxes, the bundled audit-log, and durability across a real SIGKILL of a
// child host process (nothing lost, counted), with `plinth dlq` on the store the killed host left.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { cp, mkdir, writeFile, readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { DeliveredEvent } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, runCli, tempDir, waitFor, writeTrustStore } from '../helpers.ts';

const publisher = makePublisher('tests');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'events');

interface Entry {
  id: string;
  n: number | null;
  topic: string;
  attempt: number;
  redelivered: boolean;
}

async function workspace(extensions: Array<[string, string]>, config = ''): Promise<string> {
  const root = await tempDir();
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  for (const [from, name] of extensions) {
    await cp(from, path.join(plugins, name), { recursive: true });
    await signExtension(path.join(plugins, name), publisher.privateKey, publisher.id);
  }
  await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
  await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\n${config}`);
  return root;
}

async function hostIn(root: string, env: NodeJS.ProcessEnv = {}): Promise<Host> {
  return new Host(await loadHostConfig({ cwd: root, env: {} }), { logger: pino({ level: 'silent' }), env, stopSandboxProcesses: false });
}


const seen = async (host: Host, id: string) => ((await host.call(id, "seen", {})) as unknown as { entries: Entry[] }).entries;

describe('extension subscribers', () => {
  it('a subscribes pattern not covered by permissions.events.subscribe fails that extension\'s start, naming both', async () => {
    const root = await workspace([[path.join(FIXTURES, 'ungranted'), 'ungranted'], [path.join(FIXTURES, 'recorder-isolate'), 'recorder-isolate']]);
    const host = await hostIn(root);
    await host.start();
    try {
      const byId = Object.fromEntries(host.list().map((e) => [e.id, e]));
      assert.equal(byId['ungranted']!.state, 'failed');
      assert.equal(byId['ungranted']!.reason!.code, 'PLINTH_ERR_SUBSCRIBE_NOT_GRANTED');
      const message = String(byId['ungranted']!.reason!.message);
      assert.match(message, /"orders\.#"/);
      assert.match(message, /"orders\.created", "users\.\*"/);
      assert.equal(byId['ungranted']!.reason!.file, path.join(root, 'plugins', 'ungranted', 'package.json'), 'names the manifest to edit, not its snapshot');
      assert.equal(byId['recorder-isolate']!.state, 'active', 'the others start');
    } finally {
      await host.stop();
    }
  });

  it('an isolate extension gets its events in handleEvent with attempt and redelivered; failures are retried; a not-running one dead-letters', async () => {
    const root = await workspace([[path.join(FIXTURES, 'recorder-isolate'), 'recorder-isolate']], 'events:\n  retry: { baseMs: 10, maxMs: 20, maxAttempts: 3 }\n');
    const host = await hostIn(root);
    await host.start();
    try {
      await host.bus.publish('work.a', { n: 1 }, 'test', { correlationId: 'c1' });
      await host.bus.publish('work.a', { n: 2, failUntil: 2 }, 'test');
      await host.bus.publish('work.a', { n: 3 }, 'test');
      await host.bus.publish('other.topic', { n: 99 }, 'test');
      await waitFor(async () => (await seen(host, 'recorder-isolate')).filter((e) => e.n === 3).length === 1, 'event 3 recorded');
      const entries = await seen(host, 'recorder-isolate');
      assert.deepEqual(entries.map((e) => [e.n, e.attempt, e.redelivered]), [[1, 1, false], [2, 1, false], [2, 2, true], [2, 3, true], [3, 1, false]], 'in order, 3 only after 2 succeeded');
      assert.deepEqual(host.bus.listDeadLetters(), []);
      // Disabled by a failing sandbox: every attempt fails, and the event ends in the dead letters, not lost.
      await host.get('recorder-isolate')!.stop(1000);
      await host.bus.publish('work.b', { n: 4 }, 'test');
      await waitFor(() => host.bus.listDeadLetters().length === 1, 'dead-lettered');
      const [letter] = host.bus.listDeadLetters({ subscriber: 'recorder-isolate' });
      assert.equal(letter!.attempts.length, 3);
      assert.equal(letter!.attempts[0]!.error.code, 'PLINTH_ERR_SHUTDOWN', JSON.stringify(letter!.attempts));
      assert.equal((letter!.event.payload as { n: number }).n, 4);
    } finally {
      await host.stop();
    }
  });

  it('the bundled audit-log receives events end to end', async () => {
    const root = await workspace([[path.join(ROOT, 'plugins', 'audit-log'), 'audit-log']]);
    const host = await hostIn(root, { HOSTNAME: 'h' });
    await host.start();
    try {
      const published = await host.bus.publish('security.login.failed', { user: 'ada' }, 'test');
      const file = path.join(root, 'data', 'extensions', 'audit-log', 'audit', 'audit.jsonl');
      await waitFor(async () => (await readFile(file, 'utf8').catch(() => '')).includes(published.id), 'audit entry');
      const line = (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.eventId === published.id)!;
      assert.equal(line.topic, 'security.login.failed');
      assert.deepEqual(line.details, { user: 'ada' });
    } finally {
      await host.stop();
    }
  });

  it('ctx.kv survives a restart, within the kv quotas', async () => {
    const root = await workspace([[path.join(FIXTURES, 'recorder-isolate'), 'recorder-isolate']], 'quotas:\n  kv: { maxKeys: 2 }\n');
    let host = await hostIn(root);
    await host.start();
    try {
      await host.call('recorder-isolate', 'remember', { key: 'a', value: { deep: [1, 2] } });
      await host.call('recorder-isolate', 'remember', { key: 'b', value: 'two' });
    } finally {
      await host.stop();
    }
    host = await hostIn(root);
    await host.start();
    try {
      assert.deepEqual(await host.call('recorder-isolate', 'remember', { key: 'a' }), { value: { deep: [1, 2] } });
      // The keys loaded from the store count against quotas.kv.maxKeys from the start.
      await assert.rejects(host.call('recorder-isolate', 'remember', { key: 'c', value: 3 }), (err: { message?: string }) => /quotas\.kv\.maxKeys = 2/.test(err.message ?? ''));
      assert.deepEqual(await host.call('recorder-isolate', 'remember', { key: 'c' }), { value: null }, 'nothing stored past the quota');
    } finally {
      await host.stop();
    }
  });
});

describe('bus bounds from host config', () => {
  it('events.maxPayloadBytes, events.maxQueuedPerSubscriber and events.deliveryTimeout reach the host bus, each with its coded error naming the key', async () => {
    const root = await workspace([], 'events:\n  maxPayloadBytes: 256\n  maxQueuedPerSubscriber: 2\n  deliveryTimeout: 300ms\n  retry: { maxAttempts: 1 }\n');
    const host = await hostIn(root);
    await host.start();
    try {
      await assert.rejects(host.bus.publish('big.one', { text: 'x'.repeat(300) }), (err: { code?: string; message?: string }) => err.code === 'PLINTH_ERR_EVENT_TOO_LARGE' && /events\.maxPayloadBytes/.test(err.message ?? ''));
      // A subscriber that never returns: its own long timeout here, so the queue bound is what is met.
      host.bus.subscribe('stuck.#', () => new Promise<void>(() => {}), { name: 'stuck', deliveryTimeoutMs: 600_000 });
      await host.bus.publish('stuck.a', 1);
      await host.bus.publish('stuck.a', 2);
      await assert.rejects(host.bus.publish('stuck.a', 3), (err: { code?: string; message?: string }) => err.code === 'PLINTH_ERR_EVENT_QUEUE_FULL' && /events\.maxQueuedPerSubscriber/.test(err.message ?? ''));
      // One that never returns under the host's deliveryTimeout: timed out, then dead-lettered (maxAttempts 1).
      host.bus.subscribe('hang.#', () => new Promise<void>(() => {}), { name: 'hanger' });
      const event = await host.bus.publish('hang.a', 1);
      await waitFor(() => host.bus.listDeadLetters({ subscriber: 'hanger' }).length === 1, 'the hung delivery dead-lettered', 10_000);
      const [letter] = host.bus.listDeadLetters({ subscriber: 'hanger' });
      assert.equal(letter!.event.id, event.id);
      assert.equal(letter!.attempts[0]!.error.code, 'PLINTH_ERR_EVENT_DELIVERY_TIMEOUT');
      assert.equal(host.store.pending('hanger').length, 0, 'no pending row pinned');
    } finally {
      await host.stop();
    }
  });
});

describe('a refused store', () => {
  it('a host over a data dir whose plinth.db is not a Plinth store does not start, and leaves the file as it was', async () => {
    const root = await workspace([]);
    await mkdir(path.join(root, 'data'));
    const file = path.join(root, 'data', 'plinth.db');
    await writeFile(file, 'SQLite format 3\0'.padEnd(4096, 'x'));
    const before = await readFile(file);
    const host = await hostIn(root);
    await assert.rejects(host.start(), (err: { code?: string; message?: string }) => err.code === 'PLINTH_ERR_STORE_INVALID' && (err.message ?? '').includes(file));
    assert.deepEqual(await readFile(file), before);
  });
});

describe('durability across SIGKILL', () => {
  it('a host killed with SIGKILL delivers every acknowledged-to-publisher event to every durable subscriber that had not acknowledged it; dead letters persist', async () => {
    const root = await workspace([[path.join(FIXTURES, 'recorder-worker'), 'recorder-worker']], 'events:\n  retry: { baseMs: 10, maxMs: 50 }\n');
    const child = spawn(process.execPath, ['--no-node-snapshot', path.join(ROOT, 'test', 'integration', 'child-host.ts'), root], { stdio: ['ignore', 'pipe', 'pipe'] });
    const published = new Map<number, string>();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let ready = false;
    let buffer = '';
    child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop()!;
      for (const line of lines) {
        const m = /^published (\d+) (\S+)$/.exec(line);
        if (m) published.set(Number(m[1]), m[2]!);
        if (line === 'ready') ready = true;
      }
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    try {
      await waitFor(() => ready || child.exitCode !== null, 'the child host to be ready', 60_000);
      assert.ok(ready, `child ended early: ${stderr}`);
    } finally {
      child.kill('SIGKILL');
    }
    assert.equal(await exited, 'SIGKILL');
    assert.equal(published.size, 50, 'every publish resolved before the kill');

    // The dead letters are in the store the killed host left: `plinth dlq` reads them without a host.
    const ls = await runCli(['dlq', 'ls', '--json'], { cwd: root });
    assert.equal(ls.code, 0, ls.stderr);
    const letters = (JSON.parse(ls.stdout) as { data: { deadLetters: Array<{ id: number; subscriber: string; event: { id: string; payload: { n: number } }; attempts: unknown[] }> } }).data.deadLetters;
    assert.deepEqual(letters.map((l) => l.event.payload.n).sort((a, b) => a - b), [...published.keys()].filter((n) => n % 2 === 1).sort((a, b) => a - b));
    assert.ok(letters.every((l) => l.subscriber === 'failing' && l.attempts.length === 1 && l.event.id === published.get(l.event.payload.n)));
    const show = await runCli(['dlq', 'show', String(letters[0]!.id)], { cwd: root });
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /odd event/);
    // Replay them to `failing` (delivered at the next start), and purge none.
    const replay = await runCli(['dlq', 'replay', '--subscriber', 'failing', '--json'], { cwd: root });
    assert.equal(replay.code, 0, replay.stderr);
    assert.equal((JSON.parse(replay.stdout) as { data: { replayed: unknown[] } }).data.replayed.length, 25);

    // Restart on the same data dir: the same durable subscribers get what they had not acknowledged.
    const host = await hostIn(root);
    const inproc: DeliveredEvent[] = [];
    const failing: DeliveredEvent[] = [];
    host.bus.subscribe('work.#', (e) => void inproc.push(e), { name: 'inproc' });
    host.bus.subscribe('work.#', (e) => void failing.push(e), { name: 'failing' });
    await host.start();
    try {
      const inprocN = () => new Set(inproc.map((e) => (e.payload as { n: number }).n));
      await waitFor(() => [...published.keys()].filter((n) => n >= 20).every((n) => inprocN().has(n)), 'inproc got 20..50');
      assert.ok(inproc.every((e) => e.redelivered && published.get((e.payload as { n: number }).n) === e.id), 'redelivered, same ids');
      await waitFor(() => failing.length === 25, 'the 25 replayed dead letters');
      assert.deepEqual(failing.map((e) => (e.payload as { n: number }).n).sort((a, b) => a - b), letters.map((l) => l.event.payload.n).sort((a, b) => a - b));
      await waitFor(async () => {
        const ns = new Set((await seen(host, 'recorder-worker')).map((e) => e.n));
        return [...published.keys()].every((n) => ns.has(n));
      }, 'the extension subscriber recorded every event');
      const entries = await seen(host, 'recorder-worker');
      const tenth = entries.filter((e) => e.n === 10);
      assert.ok(tenth.length >= 2 && tenth.at(-1)!.redelivered, 'event 10 again, flagged redelivered');
      const counts = host.store.pendingCounts();
      await host.bus.idle();
      assert.deepEqual([...host.store.pendingCounts()].filter(([, n]) => n > 0), [], `nothing left pending (was ${JSON.stringify([...counts])})`);
    } finally {
      await host.stop();
    }
  });
});
