// Registry test helpers: signed copies of the lifecycle fixture under any id, version and dependencies.
import path from 'node:path';
import { cp, mkdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host, type HostOptions } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { PlinthEvent } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, tempDir, writeTrustStore, type TestPublisher } from '../helpers.ts';

export const publisher: TestPublisher = makePublisher('tests');
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'registry', 'lifecycle-ext');

export interface ExtSpec {
  id: string;
  version?: string;
  dependencies?: Record<string, string | { version: string; optional: boolean }>;
  hostRange?: string;
  /** Changes the folder before it is signed (e.g. a build that throws on load). */
  edit?: (dir: string) => Promise<void>;
}

/** Writes a signed extension folder built from the lifecycle fixture; `folder` defaults to the id. */
export async function writeExt(pluginsDir: string, spec: ExtSpec, folder = spec.id): Promise<string> {
  const dir = path.join(pluginsDir, folder);
  await rm(dir, { recursive: true, force: true });
  await cp(FIXTURE, dir, { recursive: true });
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as Record<string, unknown> & { plinth: Record<string, unknown>; engines: Record<string, string> };
  pkg.name = spec.id;
  pkg.version = spec.version ?? '1.0.0';
  if (spec.dependencies) pkg.plinth.dependencies = spec.dependencies;
  if (spec.hostRange) pkg.engines.plinth = spec.hostRange;
  await writeFile(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  await writeFile(path.join(dir, 'version.js'), `export const VERSION = ${JSON.stringify(pkg.version)};\n`);
  await spec.edit?.(dir);
  await signExtension(dir, publisher.privateKey, publisher.id);
  return dir;
}

/** Builds the folder elsewhere and renames it into place, as an operator copying a finished folder would. */
export async function dropExt(pluginsDir: string, spec: ExtSpec, folder = spec.id): Promise<string> {
  const staging = path.join(path.dirname(pluginsDir), `.staging-${folder}-${Date.now()}`);
  await mkdir(staging, { recursive: true });
  const built = await writeExt(staging, spec, folder);
  const target = path.join(pluginsDir, folder);
  await rm(target, { recursive: true, force: true });
  await rename(built, target);
  await rm(staging, { recursive: true, force: true });
  return target;
}

export interface Workspace {
  root: string;
  plugins: string;
  host: Host;
  events: PlinthEvent[];
}

export async function workspace(exts: ExtSpec[], options: { config?: string; host?: HostOptions; start?: boolean } = {}): Promise<Workspace> {
  const root = await tempDir();
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  for (const e of exts) await writeExt(plugins, e);
  await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
  await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\n${options.config ?? ''}`);
  const config = await loadHostConfig({ cwd: root, env: {} });
  const host = new Host(config, { logger: pino({ level: 'silent' }), stopSandboxProcesses: false, ...options.host });
  const events: PlinthEvent[] = [];
  host.bus.subscribe('#', (e) => void events.push(e));
  if (options.start !== false) await host.start();
  return { root, plugins, host, events };
}

export { waitFor } from '../helpers.ts';

export function states(host: Host): Record<string, string> {
  return Object.fromEntries(host.list().map((e) => [e.id, e.state]));
}
