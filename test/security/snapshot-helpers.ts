// Helpers of test/security/snapshot and file-names: a host over real signed fixture folders (test/fixtures/security/),
// with the well-behaved bystander beside the hostile extension, and the sandboxes it makes recorded so a test can kill them.
import path from 'node:path';
import assert from 'node:assert/strict';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host, type HostOptions } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import { createIsolateSandbox, createWorkerSandbox, type Sandbox } from '../../src/sandbox/index.ts';
import { ROOT, makePublisher, tempDir, writeTrustStore, type TestPublisher } from '../helpers.ts';

export const SECURITY_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'security');
export const publisher: TestPublisher = makePublisher('security-tests');
export const BYSTANDER = 'well-behaved';

export interface SecurityHost {
  root: string;
  plugins: string;
  dataDir: string;
  host: Host;
  /** Every sandbox the host made, in order, by extension id. */
  sandboxes: Map<string, Sandbox[]>;
}

export interface HostSetup {
  /** Plugin folder name → fixture folder under test/fixtures/security (the bystander is always added). */
  fixtures: Record<string, string>;
  /** Folders left unsigned. */
  unsigned?: string[];
  policy?: 'required' | 'warn' | 'off';
  /** Changes a folder before it is signed. */
  edit?: (folder: string, dir: string) => Promise<void>;
  config?: string;
  start?: boolean;
  host?: HostOptions;
}

/** Runtimes of the fixtures, for the recording sandbox factory (isolates each get a process of their own). */
const RUNTIME: Record<string, 'worker' | 'isolate'> = { 'snapshot-worker': 'worker' };

export async function securityHost(setup: HostSetup): Promise<SecurityHost> {
  const root = await tempDir('plinth-security-');
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  const folders = { [BYSTANDER]: BYSTANDER, ...setup.fixtures };
  for (const [folder, fixture] of Object.entries(folders)) {
    const dir = path.join(plugins, folder);
    await cp(path.join(SECURITY_FIXTURES, fixture), dir, { recursive: true });
    await setup.edit?.(folder, dir);
    if (!setup.unsigned?.includes(folder)) await signExtension(dir, publisher.privateKey, publisher.id);
  }
  await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
  await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json, policy: ${setup.policy ?? 'required'} }\ndataDir: data\n${setup.config ?? ''}`);
  const config = await loadHostConfig({ cwd: root, env: {} });
  const sandboxes = new Map<string, Sandbox[]>();
  const host = new Host(config, {
    logger: pino({ level: 'silent' }),
    env: { PLINTH_TEST_SECRET: 'host secret' },
    backoff: { baseMs: 20, maxMs: 100, resetAfterMs: 60_000 },
    makeSandbox: (spec, context) => {
      const sandbox = (RUNTIME[spec.id] ?? 'isolate') === 'worker' ? createWorkerSandbox(spec, context) : createIsolateSandbox(spec, context, { process: 'dedicated' });
      sandboxes.set(spec.id, [...(sandboxes.get(spec.id) ?? []), sandbox]);
      return sandbox;
    },
    ...setup.host,
  });
  if (setup.start !== false) await host.start();
  return { root, plugins, dataDir: path.join(root, 'data'), host, sandboxes };
}

/** The bystander answers, and quickly: one extension's trouble never stalls another. */
export async function assertBystanderServes(host: Host): Promise<void> {
  const t0 = performance.now();
  assert.deepEqual(await host.call(BYSTANDER, 'echo', { text: 'still here' }), { text: 'still here' });
  assert.ok(performance.now() - t0 < 2000, `the bystander answered in ${Math.round(performance.now() - t0)} ms`);
}

export function stateOf(host: Host, id: string): { state: string; code: unknown } {
  const e = host.list().find((x) => x.id === id);
  return { state: e?.state ?? 'absent', code: e?.reason?.code ?? null };
}
