// Helpers for the remote-runtime tests: a real host with a real control channel (ws on 127.0.0.1, a runner
// token), fixture packages copied into temp folders and signed with a key made for the run, and real runner
// processes (runner.child.ts running runExtension) whose JSON lines the tests wait on.
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadHostConfig } from '../../../src/config/index.ts';
import { Host } from '../../../src/host/index.ts';
import { ControlServer } from '../../../src/control/index.ts';
import { signExtension } from '../../../src/trust/index.ts';
import { ROOT, tempDir, writeTrustStore, type TestPublisher } from '../../helpers.ts';

export const REMOTE_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'remote');
export const RUNNER_TOKEN = 'runner-token-for-tests-0123456789';
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'runner.child.ts');

export interface RemoteHost {
  host: Host;
  server: ControlServer;
  url: string;
  adminToken: string;
  root: string;
  stop(): Promise<void>;
}

/** A host with no plugins, a trust store of `trusted`, the given config (merged), and its control channel. */
export async function remoteHost(trusted: TestPublisher[], config: Record<string, unknown> = {}, options: { backoff?: { baseMs: number; maxMs: number } } = {}): Promise<RemoteHost> {
  const root = await tempDir('plinth-remote-');
  await mkdir(path.join(root, 'plugins'));
  await writeTrustStore(path.join(root, 'trust.json'), trusted);
  const doc = { plugins: ['plugins'], trust: { store: 'trust.json' }, dataDir: 'data', ...config, control: { port: 0, tokens: [{ token: RUNNER_TOKEN, role: 'runner', name: 'tests' }], ...((config.control as object | undefined) ?? {}) } };
  await writeFile(path.join(root, 'plinth.config.json'), JSON.stringify(doc, null, 2));
  const cfg = await loadHostConfig({ cwd: root, env: {} });
  const log = pino({ level: process.env.PLINTH_TEST_LOG ?? 'silent' });
  const host = new Host(cfg, { logger: log, stopSandboxProcesses: false, ...(options.backoff ? { backoff: options.backoff } : {}) });
  await host.start();
  const server = new ControlServer({ host, config: cfg.control, dataDir: cfg.dataDir, log, version: '0.0.0', apiVersion: '1.0.0', pipelines: host.pipelines });
  const at = await server.listen();
  return {
    host,
    server,
    url: at.url,
    adminToken: server.tokens.admin,
    root,
    stop: async () => {
      await host.stop();
      await server.close();
    },
  };
}

/** A copy of test/fixtures/remote/<name> in a temp folder, signed by `publisher` unless it is undefined. */
export async function remoteFixture(name: string, publisher: TestPublisher | undefined): Promise<string> {
  const dir = path.join(await tempDir('plinth-remote-ext-'), name);
  await cp(path.join(REMOTE_FIXTURES, name), dir, { recursive: true });
  if (publisher) await signExtension(dir, publisher.privateKey, publisher.id);
  return dir;
}

export interface RunnerProcess {
  child: ChildProcess;
  /** JSON lines it printed so far. */
  lines: Array<Record<string, unknown>>;
  stderr(): string;
  /** Resolves with the first line (already printed or coming) that `test` accepts. */
  waitLine(test: (line: Record<string, unknown>) => boolean, what: string, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** A runner process for the fixture in `dir`; `tag` is what its stages say answered (RUNNER_TAG). */
export function spawnRunner(dir: string, url: string, options: { token?: string; tag?: string; env?: NodeJS.ProcessEnv; instance?: string } = {}): RunnerProcess {
  const child = spawn(process.execPath, [CHILD, dir, url, options.token ?? RUNNER_TOKEN, ...(options.instance ? [options.instance] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUNNER_TAG: options.tag ?? 'runner', ...options.env },
  });
  running.add(child);
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let err = '';
  let buffered = '';
  child.stdout.on('data', (d: Buffer) => {
    buffered += d.toString();
    let i: number;
    while ((i = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not one of ours
      }
    }
    for (const w of [...waiters]) w();
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
      for (const w of [...waiters]) w();
    }),
  );
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    kill: (signal = 'SIGKILL') => void child.kill(signal),
    waitLine: (test, what, ms = 20_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${ms} ms waiting for the runner to say ${what}; it said ${JSON.stringify(lines)}; stderr: ${err.slice(-2000)}`));
        }, ms);
        const check = () => {
          const found = lines.find(test);
          if (found) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`the runner exited (${child.exitCode ?? child.signalCode}) before it said ${what}; it said ${JSON.stringify(lines)}; stderr: ${err.slice(-2000)}`));
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

export const registered = (r: RunnerProcess) => r.waitLine((l) => 'registered' in l, 'registered');
export const refused = (r: RunnerProcess) => r.waitLine((l) => 'refused' in l, 'refused');
