// Complex-event rules fed by the host's own lifecycle events (issue 10 "Events of the host itself"): a real host
// starts a real isolate extension (extension.<id>.active), loses it when its folder goes away and the plugin
// directory is reconciled (extension.<id>.stopped); a sequence rule keyed on the extension id matches those two
// and publishes a derived event that a durable in-process subscriber receives, naming the real events' ids.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { PlinthEvent } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, tempDir, waitFor, writeTrustStore } from '../helpers.ts';

const publisher = makePublisher('tests');

const RULES = `events:
  rules:
    - id: extension-cycled
      description: an extension went active, then stopped within 5 minutes
      type: sequence
      key: payload.id
      steps:
        - topic: extension.*.active
        - topic: extension.*.stopped
          within: 5m
      emit: ops.extension.cycled
`;

describe('CEP over real lifecycle events', () => {
  it('extension.*.active then extension.*.stopped of one extension (a real host, a real isolate) fire the rule; a subscriber gets the derived event', async () => {
    const root = await tempDir();
    const plugins = path.join(root, 'plugins');
    await mkdir(plugins);
    const dir = path.join(plugins, 'recorder-isolate');
    await cp(path.join(ROOT, 'test', 'fixtures', 'events', 'recorder-isolate'), dir, { recursive: true });
    await signExtension(dir, publisher.privateKey, publisher.id);
    await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
    await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\n${RULES}`);
    const host = new Host(await loadHostConfig({ cwd: root, env: {} }), { logger: pino({ level: 'silent' }) });
    const lifecycle: PlinthEvent[] = [];
    const derived: PlinthEvent[] = [];
    host.bus.subscribe('extension.#', (e) => void lifecycle.push(e));
    host.bus.subscribe('ops.extension.cycled', (e) => void derived.push(e), { name: 'ops-console' });
    try {
      await host.start();
      await waitFor(() => lifecycle.some((e) => e.topic === 'extension.recorder-isolate.active'), 'the extension active');
      assert.equal(derived.length, 0, 'no match while it runs');
      await rm(dir, { recursive: true, force: true });
      await host.reload();
      await waitFor(() => derived.length > 0, 'the derived event');
      const active = lifecycle.find((e) => e.topic === 'extension.recorder-isolate.active')!;
      const stopped = lifecycle.find((e) => e.topic === 'extension.recorder-isolate.stopped')!;
      assert.ok(stopped, 'the real stopped event');
      const [match] = derived;
      assert.equal(match!.source, 'rule:extension-cycled');
      assert.equal(active.source, 'host');
      assert.deepEqual(match!.payload, { rule: 'extension-cycled', key: 'recorder-isolate', events: [active.id, stopped.id] });
      assert.equal(derived.length, 1, 'once');
      assert.equal(host.events.rules.stats()[0]!.matches, 1);
    } finally {
      await host.stop();
    }
  });
});
