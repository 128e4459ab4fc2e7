// Helpers for driving the real CLI as a person does: a workspace of signed fixture extensions, and `plinth serve`
// as a subprocess leading its own process group (as a terminal's foreground job), its log waited on line by line.
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { signExtension } from '../../src/trust/index.ts';
import { BIN, ROOT, tempDir, writeTrustStore } from '../helpers.ts';
import { publisher } from '../registry/helpers.ts';

export const CLI_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'cli');
export { publisher };

export interface CliWorkspace {
  root: string;
  plugins: string;
  trust: string;
  data: string;
}

/**
 * A temp workspace: `plugins/` with the bundled extensions (if `bundled`) and the named test/fixtures/cli
 * folders, each signed by the tests' publisher unless listed in `unsigned`; a trust store trusting both the
 * development key and the tests' publisher.
 */
export async function cliWorkspace(fixtures: string[], options: { bundled?: boolean; unsigned?: string[] } = {}): Promise<CliWorkspace> {
  const root = await tempDir('plinth-cli-');
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  if (options.bundled) await cp(path.join(ROOT, 'plugins'), plugins, { recursive: true });
  for (const name of fixtures) {
    const dir = path.join(plugins, name);
    await cp(path.join(CLI_FIXTURES, name), dir, { recursive: true });
    if (!options.unsigned?.includes(name)) await signExtension(dir, publisher.privateKey, publisher.id);
  }
  const trust = path.join(root, 'trust.json');
  await writeTrustStore(trust, [publisher]);
  const dev = JSON.parse(await readFile(path.join(ROOT, 'keys', 'dev-trust.json'), 'utf8')) as { publishers: object };
  const mine = JSON.parse(await readFile(trust, 'utf8')) as { publishers: object };
  await writeFile(trust, JSON.stringify({ publishers: { ...dev.publishers, ...mine.publishers } }));
  return { root, plugins, trust, data: path.join(root, 'data') };
}

export interface ServeProcess {
  child: ChildProcess;
  /** Everything written to stderr so far. */
  log(): string;
  stdout(): string;
  /** Resolves once a line matching `re` is in the log; rejects (with the log) after `ms`. */
  waitFor(re: RegExp, ms: number, what: string): Promise<void>;
  /** Resolves with the exit code (or the signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal to the whole process group, as a terminal does for Ctrl-C. */
  signalGroup(signal: NodeJS.Signals): void;
  /** SIGKILLs the group if anything is left (for `finally`). */
  kill(): void;
}

/** `plinth serve <args>` in its own process group, cwd = the workspace root. */
export function spawnServe(ws: CliWorkspace, args: string[]): ServeProcess {
  // Any free control-channel port unless the test names one: serve processes of parallel tests never collide.
  const port = args.includes('--port') ? [] : ['--port', '0'];
  const child = spawn(process.execPath, [BIN, 'serve', '--plugins', ws.plugins, '--trust', ws.trust, '--data-dir', ws.data, ...port, ...args], {
    cwd: ws.root,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, PLINTH_LOG_LEVEL: 'info' },
  });
  let log = '';
  let out = '';
  const waiters = new Set<() => void>();
  child.stderr.on('data', (d: Buffer) => {
    log += d.toString();
    for (const w of waiters) w();
  });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  let gone = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      gone = true;
      for (const w of waiters) w();
      resolve({ code, signal });
    }),
  );
  return {
    child,
    log: () => log,
    stdout: () => out,
    exited,
    waitFor(re, ms, what) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(log)) {
            done();
            resolve();
          } else if (gone) {
            done();
            reject(new Error(`serve exited while waiting for ${what}; log:\n${log}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out after ${ms} ms waiting for ${what}; log:\n${log}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    signalGroup(signal) {
      process.kill(-child.pid!, signal);
    },
    kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

/** The JSON log records (serve --json) in the log text; non-JSON lines are an error. */
export function records(log: string): Array<Record<string, unknown>> {
  return log
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON log line: ${l}`);
      }
    });
}
