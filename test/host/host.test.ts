// The embedded host end to end: real plugin folders in a temp dir, real signatures, real worker threads and
// isolates, supervision (restart, health, breaker, budget) observed through calls and bus events.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, mkdir, writeFile, readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { Json, PlinthEvent } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, rejectsWith, tempDir, waitFor, writeTrustStore } from '../helpers.ts';

const publisher = makePublisher('tests');
const silent = pino({ level: 'silent' });

async function setup(options: { config?: string; unsigned?: string[]; policy?: 'required' | 'warn' } = {}) {
  const root = await tempDir();
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  for (const name of ['csv-ingest', 'redact-fields', 'record-validate', 'audit-log']) await cp(path.join(ROOT, 'plugins', name), path.join(plugins, name), { recursive: true });
  for (const name of ['probe-worker', 'probe-isolate']) await cp(path.join(ROOT, 'test', 'fixtures', 'host', name), path.join(plugins, name), { recursive: true });
  for (const name of ['csv-ingest', 'redact-fields', 'record-validate', 'audit-log', 'probe-worker', 'probe-isolate']) {
    if (!options.unsigned?.includes(name)) await signExtension(path.join(plugins, name), publisher.privateKey, publisher.id);
  }
  await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
  await writeFile(
    path.join(root, 'plinth.config.yaml'),
    `plugins: [plugins]\ntrust: { store: trust.json, policy: ${options.policy ?? 'required'} }\ndataDir: data\n` +
      `defaults:\n  breaker: { minimumCalls: 4, failureRateThreshold: 50, recoveryTimeoutMs: 300, halfOpenMaxCalls: 2 }\n` +
      (options.config ?? ''),
  );
  const config = await loadHostConfig({ cwd: root, env: {} });
  const host = new Host(config, { logger: silent, env: { HOSTNAME: 'test-host' }, backoff: { baseMs: 50, maxMs: 200, resetAfterMs: 60_000 } });
  const events: PlinthEvent[] = [];
  host.bus.subscribe('#', (e) => void events.push(e));
  await host.start();
  return { host, events, root };
}


describe('host with the bundled extensions', () => {
  let ctx: Awaited<ReturnType<typeof setup>>;
  before(async () => {
    ctx = await setup({ config: 'extensions:\n  redact-fields:\n    config: { fields: [ssn] }\n  record-validate:\n    config: { rules: { id: { type: integer, required: true } } }\n' });
  });
  after(() => ctx.host.stop());

  it('starts every extension in its declared runtime', () => {
    const states = Object.fromEntries(ctx.host.list().map((e) => [e.id, [e.state, e.runtime]]));
    assert.deepEqual(states, {
      'audit-log': ['active', 'worker'],
      'csv-ingest': ['active', 'worker'],
      'probe-isolate': ['active', 'isolate'],
      'probe-worker': ['active', 'worker'],
      'record-validate': ['active', 'isolate'],
      'redact-fields': ['active', 'isolate'],
    });
    assert.deepEqual(ctx.host.findByCapability('probe').map((e) => e.id).sort(), ['probe-isolate', 'probe-worker']);
  });

  it('runs csv-ingest (worker) → redact-fields (isolate) → record-validate (isolate, kv) → audit-log (worker, fs)', async () => {
    const parsed = (await ctx.host.call('csv-ingest', 'parse', { text: 'id,ssn,note\n1,123-45-6789,mail a@b.co\nx,000,ok\n' })) as { records: Json[] };
    assert.equal(parsed.records.length, 2);
    const redacted = (await ctx.host.call('redact-fields', 'redact', { records: parsed.records })) as { records: Json[]; redactedCount: number };
    assert.deepEqual(redacted.records[0], { id: 1, ssn: '***', note: 'mail ***' });
    const validated = (await ctx.host.call('record-validate', 'validate', { records: redacted.records })) as { validCount: number; invalidCount: number };
    assert.deepEqual([validated.validCount, validated.invalidCount], [1, 1]);
    const entry = (await ctx.host.call('audit-log', 'record', { action: 'import', actor: 'test' })) as { seq: number };
    assert.equal(entry.seq, 1);
    const tail = (await ctx.host.call('audit-log', 'tail', {})) as { entries: Array<{ action: string; host: string }> };
    assert.deepEqual(tail.entries.map((e) => [e.action, e.host]), [['import', 'test-host']]);
    const file = await readFile(path.join(ctx.root, 'data', 'extensions', 'audit-log', 'audit', 'audit.jsonl'), 'utf8');
    assert.match(file, /"action":"import"/);
    // Events the extensions emitted through their granted topics reached the bus, tagged with their source.
    const emitted = ctx.events.filter((e) => e.source === 'redact-fields' || e.source === 'record-validate').map((e) => e.topic);
    assert.deepEqual(emitted.sort(), ['privacy.redacted', 'quality.rejected']);
  });

  it('validates input and output against the stage schemas, naming the stage and path', async () => {
    const bad = await rejectsWith(ctx.host.call('probe-worker', 'echo', { text: 42 }), 'PLINTH_ERR_STAGE_INPUT_INVALID');
    assert.deepEqual(bad.problems.map((p) => p.path), ['/text']);
    assert.match(bad.message, /stage echo/);
    const out = await rejectsWith(ctx.host.call('probe-isolate', 'bad_output', {}), 'PLINTH_ERR_STAGE_OUTPUT_INVALID');
    assert.deepEqual(out.problems.map((p) => p.path), ['/count']);
    await rejectsWith(ctx.host.call('probe-worker', 'nope', {}), 'PLINTH_ERR_STAGE_UNKNOWN');
    await rejectsWith(ctx.host.call('nope', 'echo', {}), 'PLINTH_ERR_EXTENSION_NOT_FOUND');
  });

  it('gives initialize() the config from the host config with schema defaults applied', async () => {
    assert.deepEqual(await ctx.host.call('probe-worker', 'config', {}), { greeting: 'hello' });
  });

  it('a thrown error is PLINTH_ERR_STAGE_FAILED carrying the extension\'s own stack', async () => {
    for (const id of ['probe-worker', 'probe-isolate']) {
      const err = await rejectsWith(ctx.host.call(id, 'fail', {}), 'PLINTH_ERR_STAGE_FAILED');
      assert.match(err.message, /probe failure/);
      assert.match(err.extensionStack ?? '', /index\.js/, id);
    }
  });

  it('a call past its timeout is PLINTH_ERR_STAGE_TIMEOUT, and the extension serves again afterwards', async () => {
    for (const id of ['probe-worker', 'probe-isolate']) {
      const restarts = ctx.host.get(id)!.info().restarts;
      await rejectsWith(ctx.host.call(id, 'sleep', { ms: 3000 }, { timeoutMs: 200 }), 'PLINTH_ERR_STAGE_TIMEOUT');
      // The runaway code was stopped with its sandbox: wait for the restart itself, not just for "active" (which
      // held before the sandbox was even gone).
      await waitFor(() => ctx.host.get(id)!.info().restarts === restarts + 1 && ctx.host.get(id)!.state === 'active', `${id} restarted and active again`);
      assert.deepEqual(await ctx.host.call(id, 'echo', { text: 'back' }), { text: 'back' });
    }
  });
});

describe('host supervision', () => {
  it('a crashed worker is restarted with backoff while other extensions keep serving', async () => {
    const { host, events } = await setup();
    try {
      await rejectsWith(host.call('probe-worker', 'exit', {}), 'PLINTH_ERR_SANDBOX_CRASHED');
      assert.deepEqual(await host.call('probe-isolate', 'echo', { text: 'still here' }), { text: 'still here' });
      await waitFor(() => host.get('probe-worker')!.info().restarts === 1 && host.get('probe-worker')!.state === 'active', 'restart');
      assert.deepEqual(await host.call('probe-worker', 'echo', { text: 'again' }), { text: 'again' });
      const topics = events.filter((e) => e.topic.startsWith('extension.probe-worker.')).map((e) => e.topic);
      assert.deepEqual(topics.slice(-2), ['extension.probe-worker.starting', 'extension.probe-worker.active']);
    } finally {
      await host.stop();
    }
  });

  it('failed health probes make it degraded, restart it, and successes make it active again', async () => {
    const { host, events } = await setup();
    try {
      await host.call('probe-worker', 'set_health', { healthy: false });
      await waitFor(() => events.some((e) => e.topic === 'extension.probe-worker.degraded'), 'degraded');
      await waitFor(() => host.get('probe-worker')!.state === 'active', 'active again');
      assert.equal(host.get('probe-worker')!.info().restarts, 1);
    } finally {
      await host.stop();
    }
  });

  it('repeated failures open the breaker (CIRCUIT_OPEN, fail fast); after recovery N probes close it', async () => {
    const { host, events } = await setup();
    try {
      for (let i = 0; i < 4; i++) await rejectsWith(host.call('probe-isolate', 'fail', {}), 'PLINTH_ERR_STAGE_FAILED');
      await rejectsWith(host.call('probe-isolate', 'echo', { text: 'x' }), 'PLINTH_ERR_CIRCUIT_OPEN');
      assert.equal(host.get('probe-isolate')!.info().breaker, 'open');
      await waitFor(() => host.get('probe-isolate')!.breaker.state === 'half-open', 'half-open');
      await host.call('probe-isolate', 'echo', { text: 'probe 1' });
      await host.call('probe-isolate', 'echo', { text: 'probe 2' });
      assert.equal(host.get('probe-isolate')!.breaker.state, 'closed');
      // Events reach listeners after their commit (issue 10): wait for the last one, bounded.
      const states = () => events.filter((e) => e.topic === 'extension.probe-isolate.breaker').map((e) => (e.payload as { state: string }).state);
      await waitFor(() => states().length >= 3, 'the breaker events');
      assert.deepEqual(states(), ['open', 'half-open', 'closed']);
    } finally {
      await host.stop();
    }
  });

  it('refuses what trust, config or the budget do not allow — only that extension fails', async () => {
    const { host } = await setup({
      unsigned: ['probe-worker', 'probe-isolate'],
      policy: 'warn',
      config: 'extensions:\n  csv-ingest:\n    config: { delimiter: ";;" }\n',
    });
    try {
      const byId = Object.fromEntries(host.list().map((e) => [e.id, e]));
      assert.equal(byId['probe-worker']!.state, 'failed');
      assert.equal(byId['probe-worker']!.reason!.code, 'PLINTH_ERR_RUNTIME_NOT_ALLOWED');
      assert.equal(byId['probe-isolate']!.state, 'active', 'an untrusted isolate extension may run');
      assert.equal(byId['csv-ingest']!.reason!.code, 'PLINTH_ERR_EXTENSION_CONFIG_INVALID');
      assert.deepEqual((byId['csv-ingest']!.reason!.problems as Array<{ path: string }>).map((p) => p.path), ['/extensions/csv-ingest/config/delimiter']);
      await rejectsWith(host.call('probe-worker', 'echo', { text: 'x' }), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
    } finally {
      await host.stop();
    }
  });

  it('sandbox.isolateProcess: per-extension gives each isolate extension a sandbox process of its own', async () => {
    const sandboxProcesses = () =>
      execFileSync('ps', ['-o', 'args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('isolate/process.ts')).length;
    const shared = await setup();
    try {
      assert.equal(sandboxProcesses(), 1, 'three isolate extensions, one shared process');
    } finally {
      await shared.host.stop();
    }
    const separate = await setup({ config: 'sandbox: { isolateProcess: per-extension }\n' });
    try {
      assert.equal(sandboxProcesses(), 3, 'redact-fields, record-validate, probe-isolate: a process each');
      assert.deepEqual(await separate.host.call('probe-isolate', 'echo', { text: 'own process' }), { text: 'own process' });
    } finally {
      await separate.host.stop();
    }
    assert.equal(sandboxProcesses(), 0, 'stop() ends them all');
  });

  it('an extension whose declared limits exceed the remaining budget is not started', async () => {
    const { host } = await setup({ config: 'budget: { memoryMb: 200 }\n' });
    try {
      // Reserved in id order: audit-log 128 MB fits, csv-ingest 256 does not, probe-isolate 64 fits (192), the rest do not.
      const outcome = Object.fromEntries(host.list().map((e) => [e.id, e.state === 'active' ? 'active' : e.reason!.code]));
      assert.deepEqual(outcome, {
        'audit-log': 'active',
        'csv-ingest': 'PLINTH_ERR_BUDGET_EXCEEDED',
        'probe-isolate': 'active',
        'probe-worker': 'PLINTH_ERR_BUDGET_EXCEEDED',
        'record-validate': 'PLINTH_ERR_BUDGET_EXCEEDED',
        'redact-fields': 'PLINTH_ERR_BUDGET_EXCEEDED',
      });
    } finally {
      await host.stop();
    }
  });
});
