// The control channel in process, where a subprocess adds nothing: the slow consumer (bounded send buffer,
// events.dropped, then a close), webhooks (token, HMAC, bad signature, replay, size), max connections, max
// requests in flight, the non-loopback refusal, PLINTH_TOKEN, and the typed client with cancellation.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createHmac } from 'node:crypto';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig, type ControlConfig, type HostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import { ControlServer, connectControl, webhookTargetFor } from '../../src/control/index.ts';
import type { PipelineDefinition, PipelineService, RunProgress, RunRecord } from '../../src/pipeline/types.ts';
import { makePublisher, rejectsWith, tempDir, waitFor, writeTrustStore } from '../helpers.ts';
import { CONTROL_FIXTURES, rawClient, upgradeStatus } from './helpers.ts';

const publisher = makePublisher('control-tests');
const log = pino({ level: 'silent' });

/**
 * The pipeline engine is another helper's part (issue 11) and not in this branch: the webhook tests drive the
 * receiver through this recording PipelineService, which starts nothing. The receiver's own rules are real.
 */
class RecordingPipelines implements PipelineService {
  readonly started: Array<{ source: unknown; options: unknown }> = [];
  readonly runs = new Map<string, RunRecord>();
  readonly #listeners = new Set<(p: RunProgress) => void>();
  readonly #waiters = new Map<string, Array<(r: RunRecord) => void>>();
  /** What the engine would report while a run goes; `end` settles waiters. */
  emit(p: RunProgress, end?: RunRecord['state']): void {
    for (const l of this.#listeners) l(p);
    const run = this.runs.get(p.runId);
    if (run && end) {
      run.state = end;
      for (const w of this.#waiters.get(p.runId) ?? []) w(run);
    }
  }
  validate(): Promise<{ issues: [] }> {
    return Promise.resolve({ issues: [] });
  }
  start(source: unknown, options?: unknown): Promise<{ runId: string }> {
    this.started.push({ source, options });
    const id = `run-${this.started.length}`;
    this.runs.set(id, { id, pipeline: 'p', version: '1.0.0', state: 'running', variables: {}, trigger: { type: 'manual' }, createdAt: new Date().toISOString(), stages: [] });
    return Promise.resolve({ runId: id });
  }
  wait(runId: string, signal?: AbortSignal): Promise<RunRecord> {
    return new Promise((resolve, reject) => {
      // As the engine's: a run that has ended resolves at once.
      const run = this.runs.get(runId);
      if (run && run.state !== 'running') return resolve(run);
      const list = this.#waiters.get(runId) ?? [];
      list.push(resolve);
      this.#waiters.set(runId, list);
      signal?.addEventListener('abort', () => reject(signal.reason as Error));
    });
  }
  get(runId: string): RunRecord | undefined {
    return this.runs.get(runId);
  }
  list(): RunRecord[] {
    return [...this.runs.values()];
  }
  cancel(): Promise<void> {
    return Promise.resolve();
  }
  resume(runId: string): Promise<{ runId: string }> {
    return Promise.resolve({ runId });
  }
  onProgress(listener: (p: RunProgress) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

describe('control server in process', () => {
  let host: Host;
  let config: HostConfig;
  const servers: ControlServer[] = [];
  const serve = async (control: Partial<ControlConfig>, extra: { pipelines?: PipelineService; webhooks?: ReturnType<typeof webhookTargetFor>; env?: NodeJS.ProcessEnv } = {}) => {
    const server = new ControlServer({ host, config: { ...config.control, port: 0, ...control }, dataDir: config.dataDir, log, version: '0.0.0', apiVersion: '1.0.0', ...extra });
    servers.push(server);
    const at = await server.listen();
    return { server, url: at.url, http: `http://127.0.0.1:${at.port}`, token: server.tokens.admin };
  };

  before(async () => {
    const root = await tempDir();
    const plugins = path.join(root, 'plugins');
    await mkdir(plugins);
    await cp(path.join(CONTROL_FIXTURES, 'slow-worker'), path.join(plugins, 'slow-worker'), { recursive: true });
    await signExtension(path.join(plugins, 'slow-worker'), publisher.privateKey, publisher.id);
    await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
    await writeFile(path.join(root, 'plinth.config.yaml'), 'plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\n');
    config = await loadHostConfig({ cwd: root, env: {} });
    host = new Host(config, { logger: log });
    await host.start();
  });
  after(async () => {
    for (const s of servers) await s.close();
    await host.stop();
  });

  it('a slow consumer: its send buffer stays bounded, notifications past it are dropped and counted (events.dropped), the host is not slowed', async () => {
    const { url, token } = await serve({ maxBufferedBytes: 64 * 1024, maxDroppedNotifications: 1_000_000 });
    const c = await rawClient(url, { token });
    await c.call('events.subscribe', { pattern: 'flood.#' });
    const tcp = (c.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    tcp.pause();
    const payload = 'x'.repeat(16 * 1024);
    const started = performance.now();
    for (let i = 0; i < 2000; i++) await host.bus.publish('flood.data', { i, payload });
    await host.bus.idle();
    const publishMs = performance.now() - started;
    tcp.resume();
    // Once it reads again: the count of what it missed, then events as before.
    const dropped = (await c.waitNotification('events.dropped', () => true, 20_000)) as { count: number };
    assert.ok(dropped.count > 0, 'some were dropped');
    await host.bus.publish('flood.last', { last: true });
    await c.waitNotification('events.event', (p: { event: { topic: string } }) => p.event.topic === 'flood.last', 20_000);
    const received = c.notifications('events.event').length;
    const counted = (c.notifications('events.dropped') as Array<{ count: number }>).reduce((n, d) => n + d.count, 0);
    assert.equal(received + counted, 2001, 'every event either arrived or was counted as dropped');
    assert.ok(publishMs < 60_000);
    c.close();
  });

  it('a consumer that stays behind past control.maxDroppedNotifications is closed (1008)', async () => {
    const { url, token } = await serve({ maxBufferedBytes: 16 * 1024, maxDroppedNotifications: 20 });
    const c = await rawClient(url, { token });
    await c.call('events.subscribe', { pattern: 'flood2.#' });
    (c.socket as unknown as { _socket: { pause(): void } })._socket.pause();
    const payload = 'y'.repeat(16 * 1024);
    for (let i = 0; i < 1000 && c.socket.readyState === c.socket.OPEN; i++) await host.bus.publish('flood2.data', { i, payload });
    (c.socket as unknown as { _socket: { resume(): void } })._socket.resume();
    assert.equal((await c.closed).code, 1008);
  });

  it('control.maxConnections: one more is refused with HTTP 503', async () => {
    const { url, token } = await serve({ maxConnections: 2 });
    const a = await rawClient(url, { token });
    const b = await rawClient(url, { token });
    assert.equal(await upgradeStatus(url, { headers: { authorization: `Bearer ${token}` } }), 503);
    a.close();
    await a.closed;
    await waitFor(() => servers.at(-1)!.connections === 1, 'the closed connection to be counted out');
    const c = await rawClient(url, { token });
    c.close();
    b.close();
  });

  it('control.maxConcurrentRequests: the next request is PLINTH_ERR_RPC_TOO_MANY_REQUESTS; cancelled ones free their slots', async () => {
    const { url, token } = await serve({ maxConcurrentRequests: 2 });
    const c = await rawClient(url, { token });
    const first = c.call('stages.call', { extension: 'slow-worker', stage: 'wait', input: {} }, 'w1');
    const second = c.call('stages.call', { extension: 'slow-worker', stage: 'wait', input: {} }, 'w2');
    await waitFor(() => host.get('slow-worker')!.info().state === 'active' && servers.at(-1)!.metrics.registry.getSingleMetric('plinth_stage_calls_in_flight') !== undefined, 'the calls to start');
    const third = await c.call('host.info', undefined, 'w3');
    assert.equal(third.error?.data?.code, 'PLINTH_ERR_RPC_TOO_MANY_REQUESTS');
    c.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 'w1' } });
    c.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 'w2' } });
    assert.equal((await first).error?.data?.code, 'PLINTH_ERR_CANCELLED');
    assert.equal((await second).error?.data?.code, 'PLINTH_ERR_CANCELLED');
    assert.ok((await c.call('host.info')).result);
    c.close();
  });

  it('a non-loopback address is refused without TLS or with the generated token, unless allowInsecure', () => {
    const make = (control: Partial<ControlConfig>, env: NodeJS.ProcessEnv = {}) => new ControlServer({ host, config: { ...config.control, ...control }, dataDir: config.dataDir, log, version: '0', apiVersion: '1', env });
    assert.throws(() => make({ host: '0.0.0.0' }), { code: 'PLINTH_ERR_CONTROL_BIND_REFUSED' });
    assert.throws(() => make({ host: '0.0.0.0', tls: { cert: 'c.pem', key: 'k.pem' } }), { code: 'PLINTH_ERR_CONTROL_BIND_REFUSED' }, 'TLS but the generated token');
    assert.ok(make({ host: '0.0.0.0', allowInsecure: true }));
  });

  it('PLINTH_TOKEN is the admin token when set; the typed client calls, listens and cancels', async () => {
    const { url } = await serve({}, { env: { PLINTH_TOKEN: 'env-token-0123456789abcdef' } });
    await rejectsWith(connectControl({ url, token: 'wrong-token-0123456789' }), 'PLINTH_ERR_CONTROL_AUTH');
    const client = await connectControl({ url, token: 'env-token-0123456789abcdef' });
    assert.equal((await client.request('host.info')).role, 'admin');
    const got = new Promise<string>((resolve) => client.on('events.event', ({ event }) => resolve(event.topic)));
    await client.request('events.subscribe', { pattern: 'typed.*' });
    await client.request('events.publish', { topic: 'typed.one', payload: null });
    assert.equal(await got, 'typed.one');
    const abort = new AbortController();
    const waiting = client.request('stages.call', { extension: 'slow-worker', stage: 'wait', input: {} }, { signal: abort.signal });
    setImmediate(() => abort.abort());
    await rejectsWith(waiting, 'PLINTH_ERR_CANCELLED');
    await client.close();
  });

  it('pipelines.run → runs.progress to that connection only; pipelines.status {wait} answers at the end, or PLINTH_ERR_CANCELLED on $/cancelRequest', async () => {
    const pipelines = new RecordingPipelines();
    const { url, token } = await serve({}, { pipelines });
    const a = await rawClient(url, { token });
    const b = await rawClient(url, { token });
    const { runId } = (await a.call('pipelines.run', { file: 'pipelines/quick-start.yaml', variables: { n: 1 } })).result as { runId: string };
    assert.deepEqual(pipelines.started[0]!.source, { file: 'pipelines/quick-start.yaml' });
    const waiting = a.call('pipelines.status', { runId, wait: true });
    pipelines.emit({ runId, pipeline: 'p', stage: 'ingest', state: 'succeeded', attempt: 1, durationMs: 12 });
    const p = (await a.waitNotification('runs.progress', (x: { stage?: string }) => x.stage === 'ingest')) as RunProgress;
    assert.deepEqual([p.state, p.attempt, p.durationMs], ['succeeded', 1, 12]);
    pipelines.emit({ runId, pipeline: 'p', state: 'succeeded' }, 'succeeded');
    assert.equal(((await waiting).result as { run: { state: string } }).run.state, 'succeeded');
    await b.call('host.info');
    assert.equal(b.notifications('runs.progress').length, 0, 'another connection does not get them');
    assert.equal((await a.call('runs.list', {})).error, undefined);
    assert.equal((await a.call('runs.get', { runId: 'nope' })).error?.data?.code, 'PLINTH_ERR_RUN_NOT_FOUND');
    const second = (await a.call('pipelines.run', { definition: { name: 'x' } })).result as { runId: string };
    const w2 = a.call('pipelines.status', { runId: second.runId, wait: true }, 'wait-2');
    a.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 'wait-2' } });
    assert.equal((await w2).error?.data?.code, 'PLINTH_ERR_CANCELLED');
    a.close();
    b.close();
  });

  describe('POST /hooks/<name>', () => {
    const SECRET = 'hook-secret';
    const def = { name: 'deploy', version: '1.0.0', triggers: [{ type: 'webhook', name: 'deploy', secretEnv: 'DEPLOY_SECRET' }], stages: [] } as unknown as PipelineDefinition;
    const pipelines = new RecordingPipelines();
    let http: string;
    let token: string;
    before(async () => ({ http, token } = await serve({ hooks: { maxBodyBytes: 1024, rememberDeliveries: 100 } }, { pipelines, webhooks: webhookTargetFor(() => [def], pipelines, { DEPLOY_SECRET: SECRET }) })));
    const sign = (body: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    const post = (name: string, body: string, headers: Record<string, string>) => fetch(`${http}/hooks/${name}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

    it('a valid X-Hub-Signature-256 → 202 with the run id; the run gets the body and the trigger', async () => {
      const body = '{"ref":"main"}';
      const res = await post('deploy', body, { 'x-hub-signature-256': sign(body), 'x-github-delivery': 'd-1' });
      assert.equal(res.status, 202);
      assert.deepEqual(await res.json(), { runId: `run-${pipelines.started.length}` });
      const last = pipelines.started.at(-1)!.options as { variables: { webhook: { body: unknown; delivery: string } }; trigger: { type: string } };
      assert.deepEqual([last.variables.webhook.body, last.variables.webhook.delivery, last.trigger.type], [{ ref: 'main' }, 'd-1', 'webhook']);
    });

    it('the bearer token is accepted instead of a signature', async () => {
      assert.equal((await post('deploy', '{}', { authorization: `Bearer ${token}` })).status, 202);
    });

    it('a bad signature, none at all, or another secret → 401, nothing started', async () => {
      const before = pipelines.started.length;
      const body = '{"ref":"main"}';
      for (const headers of [{ 'x-hub-signature-256': sign(body + ' ') }, {} as Record<string, string>, { 'x-hub-signature-256': sign(body, 'other') }, { 'x-hub-signature-256': 'sha256=zz' }]) {
        const res = await post('deploy', body, headers);
        assert.equal(res.status, 401);
        assert.equal(((await res.json()) as { code: string }).code, 'PLINTH_ERR_WEBHOOK_REFUSED');
      }
      assert.equal(pipelines.started.length, before);
    });

    it('a replayed delivery id → 409; a body over the limit → 413; an unknown hook → 404', async () => {
      const body = '{"n":1}';
      assert.equal((await post('deploy', body, { 'x-hub-signature-256': sign(body), 'x-github-delivery': 'd-2' })).status, 202);
      const before = pipelines.started.length;
      assert.equal((await post('deploy', body, { 'x-hub-signature-256': sign(body), 'x-github-delivery': 'd-2' })).status, 409);
      assert.equal(pipelines.started.length, before);
      const big = JSON.stringify({ x: 'z'.repeat(2000) });
      assert.equal((await post('deploy', big, { 'x-hub-signature-256': sign(big) })).status, 413);
      assert.equal((await post('nope', '{}', { authorization: `Bearer ${token}` })).status, 404);
      assert.equal((await fetch(`${http}/hooks/deploy`)).status, 405);
    });
  });
});
