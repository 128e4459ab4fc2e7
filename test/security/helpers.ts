// test/security set-up: a real Host over a temp workspace with the hostile and bystander fixtures copied in,
// their id, runtime and permissions set per case, signed with a test publisher when the case needs trust (or left
// unsigned under trust policy `warn`: untrusted, isolate only). Logs go to a real pino logger whose lines are
// kept for the assertions; a real HTTP server on 127.0.0.1 answers ctx.fetch.
import path from 'node:path';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host, type HostOptions } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { Json, PlinthEvent } from '../../src/sdk/index.ts';
import type { Permissions } from '../../src/manifest/index.ts';
import { ROOT, makePublisher, tempDir, writeTrustStore } from '../helpers.ts';

export const SECURITY_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'security');
export const publisher = makePublisher('security-tests');

export interface ExtensionCase {
  /** Fixture folder under test/fixtures/security. */
  fixture: 'hostile' | 'bystander';
  id?: string;
  runtime?: 'isolate' | 'worker';
  permissions?: Permissions;
  limits?: Record<string, unknown>;
  /** Signed by the trusted test publisher (default: unsigned, so untrusted under policy `warn`). */
  signed?: boolean;
}

export interface SecurityHost {
  root: string;
  host: Host;
  /** Every pino line the host wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  events: PlinthEvent[];
  /** Calls the bystander's echo and checks it answered: the host kept serving a well-behaved extension. */
  bystanderAnswers(): Promise<void>;
  stop(): Promise<void>;
}

async function writeCase(plugins: string, c: ExtensionCase): Promise<void> {
  const id = c.id ?? c.fixture;
  const dir = path.join(plugins, id.replace(/[@/]/g, '_'));
  await cp(path.join(SECURITY_FIXTURES, c.fixture), dir, { recursive: true });
  const file = path.join(dir, 'package.json');
  const pkg = JSON.parse(await readFile(file, 'utf8')) as { name: string; plinth: Record<string, unknown> };
  pkg.name = id;
  if (c.runtime) pkg.plinth.runtime = c.runtime;
  if (c.permissions) pkg.plinth.permissions = c.permissions;
  if (c.limits) pkg.plinth.limits = { ...(pkg.plinth.limits as object), ...c.limits };
  await writeFile(file, JSON.stringify(pkg, null, 2));
  if (c.signed) await signExtension(dir, publisher.privateKey, publisher.id);
}

/** Starts a host with the bystander and the given cases; `config` is appended to plinth.config.yaml. */
export async function securityHost(cases: ExtensionCase[], options: { config?: string; env?: NodeJS.ProcessEnv; host?: HostOptions } = {}): Promise<SecurityHost> {
  const root = await tempDir('plinth-security-');
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  for (const c of [{ fixture: 'bystander', signed: true } as ExtensionCase, ...cases]) await writeCase(plugins, c);
  await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
  await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json, policy: warn }\ndataDir: data\n${options.config ?? ''}`);
  const config = await loadHostConfig({ cwd: root, env: {} });
  const logs: SecurityHost['logs'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const host = new Host(config, { logger: pino({ level: 'debug' }, sink), stopSandboxProcesses: false, env: options.env ?? {}, ...options.host });
  const events: PlinthEvent[] = [];
  host.bus.subscribe('#', (e) => void events.push(e));
  await host.start();
  let n = 0;
  return {
    root,
    host,
    logs,
    events,
    async bystanderAnswers() {
      const input = { n: ++n };
      const out = (await host.call('bystander', 'echo', input, { timeoutMs: 5000 })) as { echo: Json };
      if (JSON.stringify(out.echo) !== JSON.stringify(input)) throw new Error(`the bystander answered ${JSON.stringify(out)}`);
    },
    stop: () => host.stop(5000),
  };
}

/** A real HTTP server on 127.0.0.1; `handle` answers each request. */
export async function localServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; port: number; base: string; close(): Promise<void> }> {
  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    base: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface Outcome {
  ok: boolean;
  value?: Json;
  code?: string | null;
  message?: string;
}

/** Runs the hostile fixture's `ops` stage: ctx calls one after another, each outcome reported. */
export async function ops(host: Host, id: string, steps: Array<{ call: string; args?: Json[] }>): Promise<Outcome[]> {
  return (await host.call(id, 'ops', { steps }, { timeoutMs: 20000 })) as unknown as Outcome[];
}
