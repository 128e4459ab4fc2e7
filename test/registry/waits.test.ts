// A call's deadline and its caller's cancel bound the time it waits for a slot or a restart (issue 14 made that
// signal lazy: it exists only when a call has to wait). Real worker sandboxes, real calls; the breaker is told
// nothing by a wait that ran out.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { rejectsWith } from '../helpers.ts';
import { waitFor, workspace } from './helpers.ts';

/** The lifecycle fixture with limits.concurrency 1: a second call waits for the first one's slot. */
async function oneSlot(dir: string): Promise<void> {
  const file = path.join(dir, 'package.json');
  const pkg = JSON.parse(await readFile(file, 'utf8')) as { plinth: { limits: { concurrency: number } } };
  pkg.plinth.limits.concurrency = 1;
  await writeFile(file, JSON.stringify(pkg, null, 2));
}

describe('waiting calls: bounded by their deadline and their caller', () => {
  it('waiting for a slot: the deadline ends it with STAGE_TIMEOUT, a cancel with CANCELLED; the breaker counts neither', async () => {
    const w = await workspace([{ id: 'narrow', edit: oneSlot }]);
    try {
      const busy = w.host.call('narrow', 'slow', { ms: 600 });
      const late = await rejectsWith(w.host.call('narrow', 'slow', { ms: 1 }, { timeoutMs: 100 }), 'PLINTH_ERR_STAGE_TIMEOUT');
      assert.match(late.message, /no result within 100 ms \(waiting for a free slot or a restart\)/);
      const controller = new AbortController();
      const cancelled = rejectsWith(w.host.call('narrow', 'slow', { ms: 1 }, { signal: controller.signal }), 'PLINTH_ERR_CANCELLED');
      controller.abort();
      assert.match((await cancelled).message, /cancelled by its caller/);
      assert.deepEqual(await busy, { version: '1.0.0' });
      // The slot is free again and nothing of the two waits was left behind in the queue.
      assert.deepEqual(await w.host.call('narrow', 'slow', { ms: 1 }, { timeoutMs: 1_000 }), { version: '1.0.0' });
      assert.equal(w.host.list().find((e) => e.id === 'narrow')?.breaker, 'closed');
    } finally {
      await w.host.stop();
    }
  });

  it('waiting for a restart: the deadline ends it with STAGE_TIMEOUT; a call with time enough is served after it', async () => {
    const w = await workspace([{ id: 'phoenix' }], { config: 'extensions:\n  phoenix:\n    config: { startDelayMs: 1000 }\n' });
    try {
      await rejectsWith(w.host.call('phoenix', 'exit', null), 'PLINTH_ERR_SANDBOX_CRASHED');
      await waitFor(() => w.host.list().find((e) => e.id === 'phoenix')?.state === 'starting', 'restart begun', 2_000);
      const patient = w.host.call('phoenix', 'whoami', null, { timeoutMs: 8_000 });
      const late = await rejectsWith(w.host.call('phoenix', 'whoami', null, { timeoutMs: 100 }), 'PLINTH_ERR_STAGE_TIMEOUT');
      assert.match(late.message, /waiting for a free slot or a restart/);
      assert.deepEqual(await patient, { id: 'phoenix', version: '1.0.0' });
    } finally {
      await w.host.stop();
    }
  });
});
