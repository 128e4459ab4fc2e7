// The control channel against a real `plinth serve` subprocess, with a real ws client (issue 12): the JSON-RPC
// §7 cases and batches over the wire, 401s, roles, origins, the size and rate limits with another client
// unaffected, the heartbeat dropping a dead peer, every method, notifications, cancel, /health /ready /metrics
// (parsed, and checked by promtool when it is installed), and the CLI commands as clients.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import path from 'node:path';
import { ROOT, runCli } from '../helpers.ts';
import { rawClient, startServe, stopServe, upgradeStatus, type RawClient, type RunningServe } from './helpers.ts';

const CLIENT_TOKEN = 'client-token-0123456789abcdef';
const RUNNER_TOKEN = 'runner-token-0123456789abcdef';
const ORIGIN = 'https://console.example.com';

describe('plinth serve: the control channel', () => {
  let s: RunningServe;
  let admin: RawClient;
  before(async () => {
    s = await startServe({
      tokens: [
        { token: CLIENT_TOKEN, role: 'client' },
        { token: RUNNER_TOKEN, role: 'runner' },
      ],
      allowedOrigins: [ORIGIN],
      requiredExtensions: ['redact-fields', 'not-installed'],
      maxMessageBytes: 65536,
      rateLimit: { perSecond: 50, burst: 100, closeAfter: 20 },
      heartbeatMs: 300,
    });
    admin = await rawClient(s.url, { token: s.token });
  });
  after(async () => {
    admin?.close();
    await stopServe(s);
  });

  it('listens on 127.0.0.1 at the port in serve.json, with the pid; the token file is 0600', async () => {
    assert.match(s.url, /^ws:\/\/127\.0\.0\.1:\d+\/rpc$/);
    const info = (await admin.call('host.info')).result as { pid: number; role: string };
    assert.equal(info.pid, s.serve.child.pid);
    assert.equal(info.role, 'admin');
    const { statSync } = await import('node:fs');
    assert.equal(statSync(`${s.ws.data}/token`).mode & 0o777, 0o600);
  });

  describe('JSON-RPC 2.0 on the wire (§7)', () => {
    it('invalid JSON → -32700 with id null; an invalid request → -32600 with id null', async () => {
      admin.send('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]');
      assert.deepEqual(await admin.next(), { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
      admin.send('{"jsonrpc": "2.0", "method": 1, "params": "bar"}');
      const r = (await admin.next()) as { id: unknown; error: { code: number } };
      assert.deepEqual([r.id, r.error.code], [null, -32600]);
    });

    it('unknown method → -32601; bad params → -32602 with the path', async () => {
      const r = await admin.call('foobar', {}, '1');
      assert.deepEqual([r.id, r.error?.code], ['1', -32601]);
      const bad = await admin.call('stages.call', { extension: 'redact-fields', stage: 7, input: {} });
      assert.equal(bad.error?.code, -32602);
      assert.equal(bad.error?.data?.code, 'PLINTH_ERR_RPC_PARAMS_INVALID');
      assert.deepEqual(bad.error?.data?.problems?.map((p) => p.path), ['/stage']);
      const extra = await admin.call('host.info', { nope: 1 });
      assert.equal(extra.error?.code, -32602);
      const positional = await admin.call('extensions.get', ['redact-fields']);
      assert.equal(positional.error?.code, -32602);
    });

    it('batches: mixed, empty (-32600), invalid elements, and only notifications (no reply)', async () => {
      admin.send(
        JSON.stringify([
          { jsonrpc: '2.0', method: 'host.info', id: 'b1' },
          { jsonrpc: '2.0', method: 'events.publish', params: { topic: 'demo.batch', payload: 1 } },
          { foo: 'boo' },
          { jsonrpc: '2.0', method: 'foo.get', id: 'b5' },
        ]),
      );
      const batch = (await admin.next()) as Array<{ id: unknown; result?: unknown; error?: { code: number } }>;
      assert.ok(Array.isArray(batch));
      assert.deepEqual(batch.map((r) => [r.id, r.error?.code ?? 'ok']).sort((a, b) => String(a[0]).localeCompare(String(b[0]))), [['b1', 'ok'], ['b5', -32601], [null, -32600]].sort((a, b) => String(a[0]).localeCompare(String(b[0]))));
      admin.send('[]');
      const empty = (await admin.next()) as { id: unknown; error: { code: number } };
      assert.deepEqual([Array.isArray(empty), empty.id, empty.error.code], [false, null, -32600]);
      admin.send('[1,2,3]');
      assert.deepEqual(((await admin.next()) as Array<{ error: { code: number } }>).map((e) => e.error.code), [-32600, -32600, -32600]);
      // Only notifications: nothing comes back — the next thing received is the reply to the request after it.
      admin.send(JSON.stringify([{ jsonrpc: '2.0', method: 'events.publish', params: { topic: 'demo.n', payload: 1 } }, { jsonrpc: '2.0', method: 'host.info' }]));
      const after = await admin.call('host.info', undefined, 'after-notifications');
      assert.equal(after.id, 'after-notifications');
    });
  });

  describe('auth', () => {
    it('no token, a wrong token, a token of another length: HTTP 401, no socket', async () => {
      assert.equal(await upgradeStatus(s.url), 401);
      assert.equal(await upgradeStatus(s.url, { headers: { authorization: `Bearer ${s.token.slice(0, -1)}x` } }), 401);
      assert.equal(await upgradeStatus(s.url, { headers: { authorization: 'Bearer short' } }), 401);
      assert.equal(await upgradeStatus(s.url, { headers: { authorization: `Basic ${s.token}` } }), 401);
    });

    it('the Sec-WebSocket-Protocol form browsers can send; the token is never echoed back', async () => {
      const c = await rawClient(s.url, { protocols: ['plinth.jsonrpc', `plinth.token.${s.token}`] });
      assert.equal(c.socket.protocol, 'plinth.jsonrpc');
      assert.equal(((await c.call('host.info')).result as { role: string }).role, 'admin');
      c.close();
    });

    it('Origin: a listed one is let in, any other is refused with 403', async () => {
      assert.equal(await upgradeStatus(s.url, { origin: 'https://evil.example', headers: { authorization: `Bearer ${s.token}` } }), 403);
      const c = await rawClient(s.url, { token: s.token, origin: ORIGIN });
      assert.ok((await c.call('host.info')).result);
      c.close();
    });

    it('roles: a client token may not reload, enable, disable or purge (coded error, connection stays); a runner token only runner methods', async () => {
      const c = await rawClient(s.url, { token: CLIENT_TOKEN });
      for (const [method, params] of [['extensions.reload', {}], ['extensions.disable', { id: 'audit-log' }], ['extensions.enable', { id: 'audit-log' }], ['dlq.purge', { all: true }]] as const) {
        const r = await c.call(method, params);
        assert.equal(r.error?.data?.code, 'PLINTH_ERR_RPC_FORBIDDEN', method);
      }
      assert.equal(((await c.call('host.info')).result as { role: string }).role, 'client');
      assert.ok(((await c.call('extensions.list')).result as { extensions: unknown[] }).extensions.length > 0);
      c.close();
      const r = await rawClient(s.url, { token: RUNNER_TOKEN });
      assert.equal((await r.call('extensions.list')).error?.data?.code, 'PLINTH_ERR_RPC_FORBIDDEN');
      assert.equal(((await r.call('host.info')).result as { role: string }).role, 'runner');
      r.close();
    });
  });

  describe('limits', () => {
    it('a message over control.maxMessageBytes closes that connection with 1009; another client is unaffected', async () => {
      const big = await rawClient(s.url, { token: s.token });
      big.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'events.publish', params: { topic: 'demo.big', payload: 'x'.repeat(70_000) } }));
      assert.equal((await big.closed).code, 1009);
      assert.ok((await admin.call('host.info')).result, 'the other connection still answers');
    });

    it('over the rate: coded errors, then the connection is closed (1008); another client is unaffected', async () => {
      const c = await rawClient(s.url, { token: s.token });
      const replies: Array<{ error?: { data?: { code: string } } }> = [];
      c.socket.on('message', (d) => replies.push(JSON.parse((d as Buffer).toString()) as (typeof replies)[0]));
      for (let i = 0; i < 200 && c.socket.readyState === c.socket.OPEN; i++) c.send({ jsonrpc: '2.0', id: i, method: 'host.info' });
      const closed = await c.closed;
      assert.equal(closed.code, 1008);
      assert.ok(replies.some((r) => r.error?.data?.code === 'PLINTH_ERR_RPC_RATE_LIMITED'), 'refused with the code before the close');
      assert.ok((await admin.call('host.info')).result);
    });

    it('the heartbeat drops a peer that stops answering pings', async () => {
      const dead = await rawClient(s.url, { token: s.token, autoPong: false });
      const closed = await Promise.race([dead.closed, new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('not dropped within 10 s')), 10_000))]);
      assert.equal(closed.code, 1006, 'terminated, not closed politely');
      assert.ok((await admin.call('host.info')).result);
    });
  });

  describe('methods and notifications', () => {
    it('extensions.list / get; stages.call; an unknown extension is its coded error', async () => {
      const list = (await admin.call('extensions.list')).result as { extensions: Array<{ id: string; state: string }> };
      assert.ok(list.extensions.some((e) => e.id === 'slow-worker' && e.state === 'active'));
      const one = (await admin.call('extensions.get', { id: 'slow-worker' })).result as { extension: { id: string; runtime: string } };
      assert.equal(one.extension.runtime, 'worker');
      assert.equal((await admin.call('extensions.get', { id: 'nope' })).error?.data?.code, 'PLINTH_ERR_EXTENSION_NOT_FOUND');
      const r = (await admin.call('stages.call', { extension: 'slow-worker', stage: 'echo', input: { a: [1, 'b'] } })).result as { output: unknown; durationMs: number };
      assert.deepEqual(r.output, { a: [1, 'b'] });
      assert.equal(typeof r.durationMs, 'number');
      const bad = await admin.call('stages.call', { extension: 'slow-worker', stage: 'shout', input: { word: 3 } });
      assert.equal(bad.error?.code, -32000);
      assert.equal(bad.error?.data?.code, 'PLINTH_ERR_STAGE_INPUT_INVALID');
    });

    it('$/cancelRequest cancels an in-flight stages.call: it is answered PLINTH_ERR_CANCELLED', async () => {
      const id = 'to-cancel';
      const reply = admin.call('stages.call', { extension: 'slow-worker', stage: 'wait', input: {} }, id);
      // The call has reached the extension once the host counts it in flight (the metric).
      await waitForMetric(s, (text) => /plinth_stage_calls_in_flight\{extension="slow-worker"\} 1/.test(text));
      admin.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id } });
      const r = await reply;
      assert.equal(r.error?.data?.code, 'PLINTH_ERR_CANCELLED');
    });

    it('events.publish / subscribe / unsubscribe: events.event notifications, reserved topics refused', async () => {
      const sub = (await admin.call('events.subscribe', { pattern: 'orders.#' })).result as { subscription: string };
      const other = await rawClient(s.url, { token: CLIENT_TOKEN });
      const pub = (await other.call('events.publish', { topic: 'orders.created', payload: { n: 1 }, headers: { correlationId: 'c-1' } })).result as { id: string };
      const note = (await admin.waitNotification('events.event', (p: { event: { id: string } }) => p.event.id === pub.id)) as { subscription: string; event: { topic: string; payload: unknown; headers: unknown; source: string } };
      assert.equal(note.subscription, sub.subscription);
      assert.deepEqual([note.event.topic, note.event.payload, note.event.headers, note.event.source], ['orders.created', { n: 1 }, { correlationId: 'c-1' }, 'control']);
      assert.equal((await other.call('events.publish', { topic: 'extension.x.active', payload: 1 })).error?.data?.code, 'PLINTH_ERR_TOPIC_RESERVED');
      assert.equal((await other.call('events.unsubscribe', { subscription: sub.subscription })).error?.data?.code, 'PLINTH_ERR_SUBSCRIPTION_NOT_FOUND', 'not its subscription');
      assert.deepEqual((await admin.call('events.unsubscribe', { subscription: sub.subscription })).result, { unsubscribed: true });
      const before = admin.notifications('events.event').length;
      await other.call('events.publish', { topic: 'orders.created', payload: { n: 2 } });
      await admin.call('host.info'); // a round trip after the publish: a notification would have come first
      assert.equal(admin.notifications('events.event').length, before);
      assert.equal((await admin.call('events.subscribe', { pattern: 'a..b' })).error?.data?.code, 'PLINTH_ERR_EVENT_TOPIC_INVALID');
      other.close();
    });

    it('logs.subscribe: logs.entry of one extension at a level', async () => {
      const sub = (await admin.call('logs.subscribe', { extension: 'slow-worker', level: 'warn' })).result as { subscription: string };
      await admin.call('stages.call', { extension: 'slow-worker', stage: 'shout', input: { word: 'hey' } });
      const entry = (await admin.waitNotification('logs.entry', (e: { msg: string }) => e.msg.includes('shouting hey'))) as { subscription: string; level: string; extension: string };
      assert.deepEqual([entry.subscription, entry.level, entry.extension], [sub.subscription, 'warn', 'slow-worker']);
      await admin.call('events.unsubscribe', { subscription: sub.subscription });
    });

    it('extensions.disable / enable / reload with extensions.changed notifications', async () => {
      const off = (await admin.call('extensions.disable', { id: 'audit-log' })).result as { extension: { state: string } };
      assert.equal(off.extension.state, 'stopped');
      await admin.waitNotification('extensions.changed', (p: { id: string; state: string }) => p.id === 'audit-log' && p.state === 'stopped');
      const failing = await admin.call('stages.call', { extension: 'audit-log', stage: 'record', input: {} });
      assert.equal(failing.error?.data?.code, 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
      const reloaded = (await admin.call('extensions.reload', { id: 'audit-log' })).result as { extension: { state: string } };
      assert.equal(reloaded.extension.state, 'stopped', 'a reload keeps it disabled');
      const on = (await admin.call('extensions.enable', { id: 'audit-log' })).result as { extension: { state: string } };
      assert.equal(on.extension.state, 'active');
      const changed = (await admin.waitNotification('extensions.changed', (p: { id: string; state: string }) => p.id === 'audit-log' && p.state === 'active')) as { previous: string };
      assert.equal(changed.previous, 'starting');
      assert.equal((await admin.call('extensions.enable', { id: 'nope' })).error?.data?.code, 'PLINTH_ERR_EXTENSION_NOT_FOUND');
    });

    it('dlq.list / get / replay / purge answer from the host\'s store', async () => {
      assert.deepEqual((await admin.call('dlq.list', {})).result, { deadLetters: [] });
      assert.equal((await admin.call('dlq.get', { id: 99 })).error?.data?.code, 'PLINTH_ERR_DEAD_LETTER_NOT_FOUND');
      assert.equal((await admin.call('dlq.replay', { id: 99 })).error?.data?.code, 'PLINTH_ERR_DEAD_LETTER_NOT_FOUND');
      assert.deepEqual((await admin.call('dlq.purge', { all: true })).result, { purged: 0 });
    });

    it('pipelines.* and runs.* against the host\'s engine: validate, run, wait for it, list and get it; unknown runs and bad params are coded', async () => {
      assert.equal(((await admin.call('host.info')).result as { pipelines: boolean }).pipelines, true);
      const file = path.join(ROOT, 'pipelines', 'quick-start.yaml');
      const valid = (await admin.call('pipelines.validate', { file })).result as { valid: boolean; issues: unknown[] };
      assert.deepEqual([valid.valid, valid.issues], [true, []]);
      const { runId } = (await admin.call('pipelines.run', { file })).result as { runId: string };
      const { run } = (await admin.call('pipelines.status', { runId, wait: true })).result as { run: { id: string; state: string; stages: Array<{ state: string }> } };
      assert.equal(run.id, runId);
      assert.equal(run.state, 'succeeded', JSON.stringify(run));
      assert.ok(run.stages.every((st) => st.state === 'succeeded'));
      const listed = (await admin.call('runs.list', {})).result as { runs: Array<{ id: string }> };
      assert.ok(listed.runs.some((r) => r.id === runId));
      assert.equal(((await admin.call('runs.get', { runId })).result as { run: { state: string } }).run.state, 'succeeded');
      assert.equal((await admin.call('runs.get', { runId: 'no-such-run' })).error?.data?.code, 'PLINTH_ERR_RUN_NOT_FOUND');
      assert.equal((await admin.call('pipelines.run', {})).error?.code, -32602, 'file or definition');
    });
  });

  describe('HTTP on the same port', () => {
    it('GET /health without a token; /ready is 503 naming the missing required extension', async () => {
      const health = await fetch(`${s.http}/health`);
      assert.equal(health.status, 200);
      const ready = await fetch(`${s.http}/ready`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as { reasons: Array<{ id: string; state: string }> };
      assert.deepEqual(body.reasons.map((r) => [r.id, r.state]), [['not-installed', 'missing']]);
    });

    it('GET /metrics: Prometheus text (parsed; promtool check metrics when installed) with the issue\'s metrics', async () => {
      await admin.call('stages.call', { extension: 'slow-worker', stage: 'echo', input: 1 });
      const res = await fetch(`${s.http}/metrics`);
      assert.equal(res.status, 200);
      const text = await res.text();
      const families = parsePrometheusTextFormat(text) as Array<{ name: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string; buckets?: unknown }> }>;
      const names = new Set(families.map((f) => f.name));
      for (const n of ['plinth_stage_call_duration_seconds', 'plinth_stage_calls_in_flight', 'plinth_extension_breaker_state', 'plinth_extension_restarts_total', 'plinth_extension_state', 'plinth_events_published_total', 'plinth_events_delivered_total', 'plinth_events_retried_total', 'plinth_events_dead_lettered_total', 'plinth_dlq_depth', 'plinth_runs', 'plinth_pipeline_stage_duration_seconds', 'plinth_control_connections', 'plinth_rpc_requests_total', 'process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']) {
        assert.ok(names.has(n), `${n} in /metrics`);
      }
      // (This parser keeps no labels on histogram series: the sample line is checked in the text.)
      assert.match(text, /^plinth_stage_call_duration_seconds_count\{extension="slow-worker",stage="echo",outcome="ok"\} [1-9]/m);
      const states = families.find((f) => f.name === 'plinth_extension_state')!;
      assert.ok(states.metrics.some((m) => m.labels?.extension === 'slow-worker' && m.labels.state === 'active' && m.value === '1'));
      const rpc = families.find((f) => f.name === 'plinth_rpc_requests_total')!;
      assert.ok(rpc.metrics.some((m) => m.labels?.method === 'stages.call' && m.labels.outcome === 'ok'));
      const promtool = spawnSync('promtool', ['--version']).status === 0;
      if (promtool) execFileSync('promtool', ['check', 'metrics'], { input: text });
    });

    it('/rpc over plain HTTP is 426; an unknown path is 404', async () => {
      assert.equal((await fetch(`${s.http}/rpc`)).status, 426);
      assert.equal((await fetch(`${s.http}/nope`)).status, 404);
    });
  });

  describe('the CLI as a client', () => {
    const cli = (args: string[]) => runCli([...args, '--data-dir', s.ws.data], { cwd: s.ws.root });

    it('status (a table, and --json), ls --remote, call --remote, emit, subscribe, logs -f, reload', async () => {
      const st = await cli(['status']);
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /ID\s+VERSION\s+RUNTIME\s+STATE\s+BREAKER/);
      assert.match(st.stdout, /slow-worker\s+1\.0\.0\s+worker\s+active\s+closed/);
      const js = JSON.parse((await cli(['status', '--json'])).stdout) as { ok: boolean; data: { extensions: unknown[] } };
      assert.equal(js.ok, true);
      assert.ok(js.data.extensions.length >= 5);
      const ls = await cli(['ls', '--remote', '--json']);
      assert.ok((JSON.parse(ls.stdout) as { data: { extensions: Array<{ id: string }> } }).data.extensions.some((e) => e.id === 'slow-worker'));
      const call = await cli(['call', '--remote', 'slow-worker', 'echo', '--input', '{"hi":1}', '--json']);
      assert.deepEqual((JSON.parse(call.stdout) as { data: { output: unknown } }).data.output, { hi: 1 });

      // subscribe --max 1 in the background, then emit: the line arrives as JSON.
      const { spawn } = await import('node:child_process');
      const { BIN } = await import('../helpers.ts');
      const sub = spawn(process.execPath, [BIN, 'subscribe', 'cli.#', '--json', '--max', '1', '--data-dir', s.ws.data], { cwd: s.ws.root, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      sub.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const subscribed = new Promise<void>((resolve) => sub.stderr.on('data', (d: Buffer) => ((err += d.toString()), /subscribed to/.test(err) && resolve())));
      const exited = new Promise<number | null>((resolve) => sub.once('exit', resolve));
      await subscribed;
      const emit = await cli(['emit', 'cli.hello', '{"n":7}']);
      assert.equal(emit.code, 0, emit.stderr);
      assert.equal(await exited, 0);
      const line = JSON.parse(out.trim()) as { topic: string; payload: unknown };
      assert.deepEqual([line.topic, line.payload], ['cli.hello', { n: 7 }]);

      const rl = await cli(['reload', 'redact-fields']);
      assert.equal(rl.code, 0, rl.stderr);
      assert.match(rl.stdout, /redact-fields 1\.0\.0: active/);
      const denied = await runCli(['reload', '--data-dir', s.ws.data, '--token', CLIENT_TOKEN, '--json'], { cwd: s.ws.root });
      assert.equal(denied.code, 1);
      assert.equal((JSON.parse(denied.stdout) as { error: { code: string } }).error.code, 'PLINTH_ERR_RPC_FORBIDDEN');
    });

    it('dlq talks to the host serving the data dir (a client token may not purge there)', async () => {
      const ls = await cli(['dlq', 'ls', '--json']);
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual((JSON.parse(ls.stdout) as { data: unknown }).data, { deadLetters: [] });
      const purge = await runCli(['dlq', 'purge', '--all', '--data-dir', s.ws.data, '--token', CLIENT_TOKEN, '--json'], { cwd: s.ws.root });
      assert.equal((JSON.parse(purge.stdout) as { error: { code: string } }).error.code, 'PLINTH_ERR_RPC_FORBIDDEN');
      assert.equal((await cli(['dlq', 'purge', '--all'])).code, 0);
    });

    it('a wrong token is PLINTH_ERR_CONTROL_AUTH; no host running says how to start one', async () => {
      const bad = await runCli(['status', '--url', s.url, '--token', 'wrong-token-0123456789', '--json']);
      assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, 'PLINTH_ERR_CONTROL_AUTH');
      const none = await runCli(['status', '--url', 'ws://127.0.0.1:9/rpc']);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /PLINTH_ERR_CONTROL_UNREACHABLE[\s\S]*plinth serve --plugins/);
    });
  });
});

async function waitForMetric(s: RunningServe, test: (text: string) => boolean): Promise<void> {
  const { waitFor } = await import('../helpers.ts');
  await waitFor(async () => test(await (await fetch(`${s.http}/metrics`)).text()), 'the metric');
}

