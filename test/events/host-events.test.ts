// Routes and rules wired into a real Host: the example config's rules over the host's bus, and a route whose
// transform is a real isolate extension's stage (the bundled redact-fields), end to end.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { PlinthEvent } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, tempDir, waitFor, writeTrustStore } from '../helpers.ts';

const publisher = makePublisher('tests');


describe('host: routes and rules from host config', () => {
  let host: Host;
  let t = 5_000_000;
  const events: PlinthEvent[] = [];
  const warnings: string[] = [];

  before(async () => {
    const root = await tempDir();
    const plugins = path.join(root, 'plugins');
    await mkdir(plugins);
    await cp(path.join(ROOT, 'plugins', 'redact-fields'), path.join(plugins, 'redact-fields'), { recursive: true });
    await signExtension(path.join(plugins, 'redact-fields'), publisher.privateKey, publisher.id);
    await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
    // The example's events block as shipped, plus a route through the redact-fields stage.
    const example = await readFile(path.join(ROOT, 'examples', 'cep.config.yaml'), 'utf8');
    await writeFile(
      path.join(root, 'plinth.config.yaml'),
      `plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\nextensions:\n  redact-fields:\n    config: { fields: [ssn] }\n` +
        example.replace(
          '  routes:\n',
          '  routes:\n    - id: redact-signups\n      from: users.signup\n      to: [users.signup.redacted]\n      transform:\n        extension: redact-fields\n        stage: redact\n        input: \'{"records": [payload]}\'\n',
        ),
    );
    const config = await loadHostConfig({ cwd: root, env: {} });
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    host = new Host(config, { logger, clock: { now: () => t }, ruleTickMs: 0 });
    host.bus.subscribe('#', (e) => void events.push(e));
    await host.start();
  });
  after(() => host.stop());

  it("the seed's exfiltration rule fires on the host's bus", async () => {
    await host.bus.publish('auth.login', { userId: 'ann' }, 'auth');
    t += 60_000;
    await host.bus.publish('data.access', { userId: 'ann', classification: 'confidential' }, 'docs');
    t += 60_000;
    await host.bus.publish('data.export', { userId: 'ann', bytes: 50_000_000 }, 'docs');
    // The derived event is an event like any other: its subscribers see it once it is committed.
    await waitFor(() => events.some((e) => e.topic === 'security.exfiltration.suspected'), 'the derived event');
    const alert = events.find((e) => e.topic === 'security.exfiltration.suspected');
    assert.ok(alert, 'derived event published');
    assert.equal(alert.source, 'rule:exfiltration');
    assert.equal((alert.payload as { events: string[] }).events.length, 3);
    // The example's route also saw the large export (routes run beside the publisher, not before it returns).
    await waitFor(() => events.some((e) => e.topic === 'audit.data.export'), 'the routed export');
    assert.deepEqual(events.find((e) => e.topic === 'audit.data.export')?.payload, { user: 'ann', megabytes: 50_000_000 / 1048576 });
  });

  it('absence fires from tick() with the injected clock', async () => {
    await host.bus.publish('payment.started', { paymentId: 'p9' }, 'shop');
    t += 31_000;
    await host.events.rules.tick();
    await waitFor(() => events.some((e) => e.topic === 'payment.stalled' && (e.payload as { key: string }).key === 'p9'), 'payment.stalled for p9');
  });

  it("a route's transform runs a real isolate extension's stage", async () => {
    await host.bus.publish('users.signup', { name: 'ann', ssn: '123-45-6789' }, 'signup');
    await waitFor(() => events.some((e) => e.topic === 'users.signup.redacted'), 'the redacted event');
    const redacted = events.find((e) => e.topic === 'users.signup.redacted')!;
    assert.equal(redacted.source, 'route:redact-signups');
    assert.deepEqual(redacted.payload, { records: [{ name: 'ann', ssn: '***' }], redactedCount: 1 });
  });

  it('a stage transform that fails (input refused by the stage schema) logs PLINTH_ERR_ROUTE_FAILED and routes nothing', async () => {
    const before = events.length;
    await host.bus.publish('users.signup', 'not an object', 'signup');
    await waitFor(() => warnings.some((l) => l.includes('PLINTH_ERR_ROUTE_FAILED')), 'the warning');
    assert.equal(events.slice(before).filter((e) => e.topic === 'users.signup.redacted').length, 0);
  });
});
