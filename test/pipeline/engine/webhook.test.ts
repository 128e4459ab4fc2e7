// Webhook triggers (declared here, served by the control channel): findWebhook(name) gives the control channel the
// trigger's secret to authenticate POST /hooks/<name> with; triggerWebhook(name, body, headers) then starts a run
// with the request as `vars.event`. The last test goes through a real ControlServer over HTTP.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createHmac } from 'node:crypto';
import type { Host } from '../../../src/host/index.ts';
import { ControlServer, webhookTargetForService } from '../../../src/control/index.ts';
import { ROOT, rejectsWith } from '../../helpers.ts';
import { pipelineRoot, startPipelineHost } from '../helpers.ts';

const FILE = path.join(ROOT, 'test', 'fixtures', 'pipeline', 'pipelines', 'webhook.yaml');

describe('pipeline triggers: webhook', () => {
  let host: Host;
  before(async () => {
    host = await startPipelineHost(await pipelineRoot(), { env: { ORDERS_SECRET: 's3cret' } });
    const started = await host.pipelines.startTriggers([FILE]);
    assert.deepEqual(started, { pipelines: ['on-webhook'], issues: [] });
  });
  after(() => host.stop());

  it('an authenticated delivery starts a run with the body and headers as vars.event', async () => {
    const body = JSON.stringify({ order: 'o-42' });
    const { runId } = await host.pipelines.triggerWebhook('orders', body, { authorization: 'Bearer secret-token' });
    const run = await host.pipelines.wait(runId);
    assert.equal(run.state, 'succeeded');
    assert.deepEqual(run.trigger, { type: 'webhook', detail: { name: 'orders' } });
    assert.deepEqual(run.stages[0]!.output, { order: 'o-42', hook: 'orders' });
    const headers = (run.variables as { event: { headers: Record<string, string> } }).event.headers;
    assert.equal(headers.authorization, undefined, 'credentials are not journaled');
  });

  it('findWebhook gives the secret from secretEnv; an unknown name is PLINTH_ERR_WEBHOOK_NOT_FOUND and starts nothing', async () => {
    assert.deepEqual(host.pipelines.findWebhook('orders'), { secret: 's3cret' });
    assert.equal(host.pipelines.findWebhook('nope'), undefined);
    const before = host.pipelines.list({ pipeline: 'on-webhook' }).length;
    await rejectsWith(host.pipelines.triggerWebhook('nope', '{}'), 'PLINTH_ERR_WEBHOOK_NOT_FOUND');
    assert.equal(host.pipelines.list({ pipeline: 'on-webhook' }).length, before);
  });

  it('POST /hooks/orders through a real control channel: a good X-Hub-Signature-256 starts a run (202 with its id), a bad one is 401 and starts nothing', async () => {
    const server = new ControlServer({ host, config: { ...host.config.control, port: 0 }, dataDir: host.config.dataDir, log: host.log, version: '0', apiVersion: '1', pipelines: host.pipelines, webhooks: webhookTargetForService(host.pipelines) });
    const at = await server.listen();
    try {
      const url = at.url.replace(/^ws/, 'http').replace(/\/rpc$/, '');
      const body = JSON.stringify({ order: 'o-7' });
      const post = (signature: string, delivery: string) =>
        fetch(`${url}/hooks/orders`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature, 'x-github-delivery': delivery } });
      const before = host.pipelines.list({ pipeline: 'on-webhook' }).length;
      const bad = await post('sha256=' + '0'.repeat(64), 'd-1');
      assert.equal(bad.status, 401);
      assert.equal(host.pipelines.list({ pipeline: 'on-webhook' }).length, before);
      const good = await post(`sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`, 'd-2');
      assert.equal(good.status, 202);
      const { runId } = (await good.json()) as { runId: string };
      const run = await host.pipelines.wait(runId);
      assert.equal(run.state, 'succeeded');
      assert.deepEqual(run.stages[0]!.output, { order: 'o-7', hook: 'orders' });
    } finally {
      await server.close();
    }
  });
});
