// Issue 7 §4: host ceilings for every limit a manifest declares; initialize()/start() time-boxed by their own
// limit; one slow extension never delays the others becoming active. Real hosts, real worker sandboxes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { rejectsWith } from '../helpers.ts';
import { workspace, waitFor } from './helpers.ts';

const quiet = { logger: pino({ level: 'silent' }) };

/** An edit of the fixture's manifest before it is signed. */
function manifest(change: (plinth: Record<string, unknown> & { limits: Record<string, number>; stages: Record<string, Record<string, unknown>> }) => void) {
  return async (dir: string) => {
    const file = path.join(dir, 'package.json');
    const pkg = JSON.parse(await readFile(file, 'utf8')) as { plinth: Parameters<typeof change>[0] };
    change(pkg.plinth);
    await writeFile(file, JSON.stringify(pkg, null, 2));
  };
}

describe('host ceilings on manifest limits', () => {
  it('a manifest asking for more than a ceiling is refused, naming the limit and the key to raise; others start', async () => {
    const w = await workspace(
      [
        { id: 'greedy', edit: manifest((p) => void (p.limits.callTimeoutMs = 3_600_000)) },
        { id: 'slow-stage', edit: manifest((p) => void (p.stages.slow!.timeoutMs = 3_600_000)) },
        { id: 'modest' },
      ],
      { host: quiet },
    );
    try {
      const byId = Object.fromEntries(w.host.list().map((e) => [e.id, e]));
      assert.equal(byId.modest!.state, 'active');
      for (const [id, what] of [['greedy', /limits\.callTimeoutMs 3600000 > ceilings\.callTimeoutMs 300000/], ['slow-stage', /stages\.slow\.timeoutMs 3600000 > ceilings\.callTimeoutMs/]] as const) {
        assert.equal(byId[id]!.state, 'failed');
        assert.equal(byId[id]!.reason!.code, 'PLINTH_ERR_LIMIT_ABOVE_CEILING');
        assert.match(String(byId[id]!.reason!.message), what);
        assert.match(String(byId[id]!.reason!.hint), /raise ceilings\.callTimeoutMs/);
      }
      await rejectsWith(w.host.call('greedy', 'whoami', {}), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
    } finally {
      await w.host.stop();
    }
  });

  it('raising the ceiling in the host config lets it start', async () => {
    const w = await workspace([{ id: 'greedy', edit: manifest((p) => void (p.limits.callTimeoutMs = 3_600_000)) }], { host: quiet, config: 'ceilings: { callTimeoutMs: 3600000 }\n' });
    try {
      assert.equal(w.host.get('greedy')?.state, 'active');
    } finally {
      await w.host.stop();
    }
  });
});

describe('start is time-boxed and never holds up the others', () => {
  it('a start() past limits.startTimeoutMs is PLINTH_ERR_EXTENSION_LOAD_FAILED, within that bound', async () => {
    const t0 = performance.now();
    const w = await workspace(
      [{ id: 'hung', edit: manifest((p) => void (p.limits.startTimeoutMs = 300)) }, { id: 'fine' }],
      { host: quiet, config: 'extensions:\n  hung:\n    config: { startDelayMs: 60000 }\n' },
    );
    try {
      assert.ok(performance.now() - t0 < 20_000, 'the host did not wait out the hung start');
      const hung = w.host.list().find((e) => e.id === 'hung')!;
      assert.equal(hung.state, 'failed');
      assert.equal(hung.reason!.code, 'PLINTH_ERR_EXTENSION_LOAD_FAILED');
      assert.match(String(hung.reason!.message), /limits\.startTimeoutMs 300 ms/);
      assert.equal(w.host.get('fine')?.state, 'active');
    } finally {
      await w.host.stop();
    }
  });

  // Regression: start-up went one dependency level at a time, so a slow extension at level 0 held back every
  // extension at level 1, whatever it depended on; and the host served nothing until everything had started.
  it('an extension starts as soon as its own dependencies serve, not when a whole level has', async () => {
    const w = await workspace([{ id: 'slowpoke' }, { id: 'base' }, { id: 'on-base', dependencies: { base: '^1.0.0' } }], {
      host: quiet,
      config: 'extensions:\n  slowpoke:\n    config: { startDelayMs: 1500 }\n',
    });
    try {
      const active = w.events.filter((e) => e.topic.endsWith('.active')).map((e) => e.topic.split('.')[1]);
      assert.ok(active.indexOf('on-base') < active.indexOf('slowpoke'), `active in order ${active.join(', ')}`);
    } finally {
      await w.host.stop();
    }
  });

  it('a background start serves each extension once it is active; call() waits only for the one it calls', async () => {
    const w = await workspace([{ id: 'slowpoke' }, { id: 'base' }, { id: 'on-base', dependencies: { base: '^1.0.0' } }], {
      host: quiet,
      config: 'extensions:\n  slowpoke:\n    config: { startDelayMs: 3000 }\n',
      start: false,
    });
    try {
      await w.host.start({ background: true });
      assert.deepEqual(await w.host.call('on-base', 'whoami', {}), { id: 'on-base', version: '1.0.0' });
      assert.equal(w.events.some((e) => e.topic === 'extension.slowpoke.active'), false, 'slowpoke is still starting');
      assert.deepEqual(await w.host.call('slowpoke', 'whoami', {}), { id: 'slowpoke', version: '1.0.0' });
      await waitFor(() => w.host.get('slowpoke')?.state === 'active', 'slowpoke active');
    } finally {
      await w.host.stop();
    }
  });
});
