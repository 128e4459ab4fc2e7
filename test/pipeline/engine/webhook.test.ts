// Webhook triggers (declared here, served by the control channel): triggerWebhook(name, body, headers) starts a
// run with the request as `vars.event` when the body is signed with the trigger's secret; refused otherwise.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createHmac } from 'node:crypto';
import type { Host } from '../../../src/host/index.ts';
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

  it('a signed request starts a run with the body and headers as vars.event', async () => {
    const body = JSON.stringify({ order: 'o-42' });
    const signature = `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`;
    const { runId } = await host.pipelines.triggerWebhook('orders', body, { 'X-Plinth-Signature': signature, authorization: 'Bearer secret-token' });
    const run = await host.pipelines.wait(runId);
    assert.equal(run.state, 'succeeded');
    assert.deepEqual(run.trigger, { type: 'webhook', detail: { name: 'orders' } });
    assert.deepEqual(run.stages[0]!.output, { order: 'o-42', hook: 'orders' });
    const headers = (run.variables as { event: { headers: Record<string, string> } }).event.headers;
    assert.equal(headers.authorization, undefined, 'credentials are not journaled');
  });

  it('an unsigned or wrongly signed request is PLINTH_ERR_WEBHOOK_UNAUTHORIZED and starts nothing; an unknown name is PLINTH_ERR_TRIGGER_NOT_FOUND', async () => {
    const before = host.pipelines.list({ pipeline: 'on-webhook' }).length;
    await rejectsWith(host.pipelines.triggerWebhook('orders', '{"order":"x"}', {}), 'PLINTH_ERR_WEBHOOK_UNAUTHORIZED');
    await rejectsWith(host.pipelines.triggerWebhook('orders', '{"order":"x"}', { 'x-plinth-signature': 'sha256=00' }), 'PLINTH_ERR_WEBHOOK_UNAUTHORIZED');
    await rejectsWith(host.pipelines.triggerWebhook('nope', '{}'), 'PLINTH_ERR_TRIGGER_NOT_FOUND');
    assert.equal(host.pipelines.list({ pipeline: 'on-webhook' }).length, before);
  });
});
