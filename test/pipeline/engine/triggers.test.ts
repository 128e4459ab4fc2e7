// Event triggers under a host: a pipeline triggered by its own pipeline.* events (or two pipelines triggering each
// other) would start runs forever. Each event-triggered run publishes its events as derived from the event that
// started it (one more hop), so the chain ends at events.maxHops with PLINTH_ERR_ROUTE_HOPS_EXCEEDED logged; and a
// triggered run's end is logged as its start is.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ROOT, waitFor } from '../../helpers.ts';
import { pipelineRoot, startPipelineHost } from '../helpers.ts';

const FILE = path.join(ROOT, 'test', 'fixtures', 'pipeline', 'pipelines', 'loop.yaml');

function capture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('pipeline triggers: event', () => {
  it('a pipeline triggered by its own run.succeeded event stops after events.maxHops runs, and says why', async () => {
    const { logger, lines } = capture();
    const host = await startPipelineHost(await pipelineRoot({ config: 'events:\n  maxHops: 3\n' }), { logger });
    try {
      assert.deepEqual(await host.pipelines.startTriggers([FILE]), { pipelines: ['loop'], issues: [] });
      await host.bus.publish('loop.kick', {}, 'test');
      await waitFor(() => lines.some((l) => l.code === 'PLINTH_ERR_ROUTE_HOPS_EXCEEDED'), 'the loop to be refused', 30_000);
      const refused = lines.find((l) => l.code === 'PLINTH_ERR_ROUTE_HOPS_EXCEEDED')!;
      assert.match(String(refused.msg), /events\.maxHops is 3/);
      // The kick (hop 0) started run 1; runs 1 and 2 each started one more; run 3's success was one hop too many.
      const runs = host.pipelines.list({ pipeline: 'loop' });
      assert.equal(runs.length, 3, `runs: ${runs.map((r) => r.state).join(', ')}`);
      await Promise.all(runs.map((r) => host.pipelines.wait(r.id)));
      assert.ok(runs.every((r) => host.pipelines.get(r.id)!.state === 'succeeded'));
      // Each run's end is logged like its start.
      await waitFor(() => lines.filter((l) => l.trigger === 'event' && l.state === 'succeeded').length === 3, 'three run ends logged', 10_000);
      const ends = lines.filter((l) => l.trigger === 'event' && l.state === 'succeeded');
      assert.deepEqual(new Set(ends.map((l) => l.runId)), new Set(runs.map((r) => r.id)));
    } finally {
      host.pipelines.stopTriggers();
      await host.stop();
    }
  });
});
