// `plinth dev <dir>`: the author's loop. The extension folder is served by a host — an embedded one (dev trust
// policy, its own data dir `<dir>/.plinth/data`, a control channel on a free loopback port so `plinth call --remote`
// reaches it), or a running host it joins as a remote runner (`runExtension`) — and watched (chokidar, native
// events, no polling). Each save is checked first (manifest, syntax, types: check.ts) and only a clean one is
// reloaded; the host swaps blue/green and keeps the old version when the new one does not start. Either way a
// broken save never replaces the version that serves, and its problems are reported with file:line:column.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { cp, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { HostConfig } from '../config/index.ts';
import { Host } from '../host/index.ts';
import { ControlServer, LogHub, SERVE_FILE } from '../control/index.ts';
import { HOST_API_VERSION } from '../registry/index.ts';
import { removeTree, snapshotsDir } from '../snapshot/index.ts';
import { checkExtension, TypeChecker, DEV_FOLDER } from './check.ts';
import { where, type DevProblem } from './frame.ts';
import { Recorder, type RecordedCall } from './record.ts';
import { runBuild } from './build.ts';
import { fingerprint, sameContents, type Fingerprint } from './fingerprint.ts';

/** The remote runner's entry (contract in CONTRACTS.md, src/sdk/runner.ts): loaded only when used. */
interface RunnerHandle {
  registered: Promise<{ id: string; version: string }>;
  stop(): Promise<void>;
  on(event: 'state', listener: (state: string) => void): unknown;
}
type RunExtension = (definition: unknown, options: { url: string; token: string; dir?: string; signal?: AbortSignal; log?: (line: string) => void; handleSignals?: boolean }) => RunnerHandle;
const RUNNER_MODULE = '../sdk/runner.ts';

/** Loads `runExtension`, or undefined when this build has no remote runner. */
export async function loadRunner(): Promise<RunExtension | undefined> {
  try {
    const mod = (await import(RUNNER_MODULE)) as { runExtension?: unknown };
    return typeof mod.runExtension === 'function' ? (mod.runExtension as RunExtension) : undefined;
  } catch {
    return undefined;
  }
}

export interface DevSessionOptions {
  /** The extension folder (package.json with a `plinth` block). */
  dir: string;
  /** The host config (the CLI sets the dev trust policy); its `dataDir` is replaced by `dataDir` below. */
  config: HostConfig;
  logger: Logger;
  /** The embedded host's data dir; default `<dir>/.plinth/data`. */
  dataDir?: string;
  /** Record every stage call's input and output in `<dir>/.plinth/recordings/` (record.ts). */
  record?: boolean;
  /** Serve a control channel on 127.0.0.1 (a free port) so `plinth call --remote` reaches the embedded host. */
  control?: boolean;
  /** Join this running host as a remote runner instead of embedding one. */
  remote?: { url: string; token: string; runExtension: RunExtension };
  /** Quiet time after the last write before a reload (ms), and how long a file's size must hold still. */
  debounceMs?: number;
  stabilityMs?: number;
  /** Run `npm run build` before each reload when package.json has a `build` script; default true. */
  build?: boolean;
  /** Check TypeScript types (when `typescript` can be found); default true. */
  typeCheck?: boolean;
  /** Plinth's version, for the control channel's host.info. */
  version?: string;
  /** Fed with the logger's records by the caller: the control channel's logs.subscribe (`plinth logs -f`). */
  logs?: LogHub;
}

/** A save that now serves. `ms`: from the first file event of the save to the new version serving. */
export interface ServingEvent {
  id: string;
  version: string;
  /** How many versions have served in this session (1 = the first start). */
  generation: number;
  ms: number;
  timings: { check: number; reload: number };
}

/** A save (or the first start) that was refused: the problems, and the version that keeps serving, if any. */
export interface RejectedEvent {
  problems: DevProblem[];
  serving: { id: string; version: string; generation: number } | undefined;
  ms: number;
}

interface DevSessionEvents {
  serving: [ServingEvent];
  rejected: [RejectedEvent];
  /** A save that changed nothing the host runs (the same bytes again). */
  unchanged: [{ ms: number }];
  recorded: [RecordedCall];
  /** A warning of the session itself (a recording refused, typescript missing): a coded error. */
  warning: [PlinthError];
}

const IGNORED_TOP = new Set([DEV_FOLDER, 'node_modules']);

/** The place of a load failure, from its stack (`plinth-extension://<id>/<file>:L:C`, a snapshot path) or its message. */
export function locateError(err: { message: string; file?: string; extensionStack?: string }, dir: string, aliases: string[] = []): Pick<DevProblem, 'file' | 'line' | 'column'> {
  const text = `${err.extensionStack ?? ''}\n${err.message}`;
  const patterns = [
    /plinth-extension:\/\/(?:@[^/\s]+\/)?[^/\s]+\/([^\s:()]+):(\d+):(\d+)/, // the isolate's module URLs (a scoped id has a slash)
    /\/snapshots\/[0-9a-f]{16,}\/([^\s:()]+):(\d+):(\d+)/, // a worker's stack: the snapshot copy
    ...aliases.map((a) => new RegExp(`${a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/([^\\s:()]+):(\\d+):(\\d+)`)),
    /(?:^|[\s(])((?:[^\s:()]+\/)*[^\s:()/]+\.(?:[cm]?[jt]s|json)):(\d+):(\d+)/, // `index.js:3:7` in a message
  ];
  for (const re of patterns) {
    const m = re.exec(text);
    if (!m) continue;
    const rel = m[1]!.replace(/^file:\/\//, '');
    const file = path.isAbsolute(rel) ? rel : path.join(dir, rel);
    return { file, line: Number(m[2]), column: Number(m[3]) };
  }
  if (!err.file) return {};
  const alias = aliases.find((a) => err.file!.startsWith(a + path.sep));
  return { file: alias ? path.join(dir, path.relative(alias, err.file)) : err.file };
}

/**
 * A host serves plugin directories: a private one (a temp folder) that holds a link to the extension folder.
 * Discovery follows the link; the package itself is read through its real path, so nothing inside it may be a link.
 * `link()` adds the link (until then the folder is not served).
 */
export async function devPluginDir(dir: string): Promise<{ pluginDir: string; linked: string; link: () => Promise<void> }> {
  const pluginDir = await mkdtemp(path.join(tmpdir(), 'plinth-dev-'));
  const real = await realpath(dir);
  const linked = path.join(pluginDir, path.basename(real).replace(/^[.@]/, '_') || 'extension');
  return { pluginDir, linked, link: () => symlink(real, linked, 'dir') };
}

export class DevSession extends EventEmitter<DevSessionEvents> {
  readonly #o: DevSessionOptions;
  readonly dir: string;
  #host: Host | undefined;
  #control: ControlServer | undefined;
  readonly #runnerToken = randomBytes(24).toString('base64url');
  #pluginDir: string | undefined;
  #linked: string | undefined;
  /** Links the folder into the plugin directory; undefined once done. */
  #link: (() => Promise<void>) | undefined;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the first file event of the pending save arrived. */
  #changedAt: number | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  #generation = 0;
  #serving: { id: string; version: string; generation: number } | undefined;
  readonly #types = new TypeChecker();
  #typesNoted = false;
  #recorder: Recorder | undefined;
  #runner: RunnerHandle | undefined;
  /** runExtension for a `remote` extension served by the embedded host (null: not in this build). */
  #runnerImpl: RunExtension | null | undefined;
  /** The watched files' contents at the last cycle. */
  #prints: Fingerprint | undefined;
  #copies: string[] = [];
  /** The control channel's URL (embedded host with `control`). */
  url: string | undefined;
  dataDir: string;

  constructor(options: DevSessionOptions) {
    super();
    this.#o = options;
    this.dir = path.resolve(options.dir);
    this.dataDir = path.resolve(options.dataDir ?? path.join(this.dir, DEV_FOLDER, 'data'));
  }

  /** The embedded host (undefined when joining a remote host). */
  get host(): Host | undefined {
    return this.#host;
  }

  /** What serves now, if anything. */
  get serving(): { id: string; version: string; generation: number } | undefined {
    return this.#serving;
  }

  /** Starts the host (or joins the remote one) with the folder as it is, then watches it. */
  async start(): Promise<void> {
    if (this.#o.record) {
      const { recordings } = this.#o.config;
      this.#recorder = new Recorder({ dir: this.dir, limits: recordings, warn: (err) => this.#warn(err), onRecorded: (call) => this.emit('recorded', call) });
    }
    if (!this.#o.remote) await this.#startEmbedded();
    await this.#watch();
    const t0 = performance.now();
    await this.#cycle(t0);
  }

  async #startEmbedded(): Promise<void> {
    const { config, logger } = this.#o;
    // The folder is linked into the host's plugin directory at its first clean check: a broken folder never starts.
    const plugins = await devPluginDir(this.dir);
    this.#pluginDir = plugins.pluginDir;
    this.#linked = plugins.linked;
    this.#link = plugins.link;
    await mkdir(this.dataDir, { recursive: true });
    // The dev host is private (loopback, its own token): its own process may register as a runner (`sandbox.remote`).
    const sandbox = Object.assign({}, config.sandbox, { remote: 'any' });
    // A runner token of this session only: a remote extension registers with it (admin tokens may not register).
    const control = { ...config.control, tokens: [...config.control.tokens, { token: this.#runnerToken, role: 'runner' as const, name: 'plinth dev' }] };
    const hostConfig: HostConfig = { ...config, sandbox, control, plugins: [this.#pluginDir], dataDir: this.dataDir };
    this.#host = new Host(hostConfig, { logger, devFolders: new Set([this.#linked]), stopSandboxProcesses: true });
    if (this.#recorder) {
      const recorder = this.#recorder;
      this.#host.recordStageCalls((call) => recorder.record(call));
    }
    await this.#host.start();
    if (this.#o.control !== false) {
      try {
        const logs = this.#o.logs ?? new LogHub();
        this.#control = new ControlServer({
          host: this.#host,
          config: { ...hostConfig.control, host: '127.0.0.1', port: 0 },
          dataDir: this.dataDir,
          log: logger,
          version: this.#o.version ?? HOST_API_VERSION,
          apiVersion: HOST_API_VERSION,
          logs,
          pipelines: this.#host.pipelines,
        });
        const at = await this.#control.listen();
        this.url = at.url;
      } catch (err) {
        logger.warn({ code: isPlinthError(err) ? err.code : undefined }, `no control channel for this dev session (plinth call --remote will not reach it): ${String((err as Error).message ?? err)}`);
        this.#control = undefined;
      }
    }
    // As `plinth serve` does: the URL for `plinth call --remote --data-dir …`, and the pid that marks the data dir as
    // served (a second session on it is refused by the CLI).
    const at = this.url ? new URL(this.url) : undefined;
    await writeFile(
      path.join(this.dataDir, SERVE_FILE),
      JSON.stringify({ ...(at ? { url: this.url, host: at.hostname, port: Number(at.port) } : {}), pid: process.pid, startedAt: new Date().toISOString(), dev: this.dir }, null, 2) + '\n',
    );
    this.#wroteServeFile = true;
  }

  #wroteServeFile = false;

  async #watch(): Promise<void> {
    const root = this.dir;
    const watcher = watch(root, {
      ignoreInitial: true,
      // Dot-entries (editor swap files, .git, .plinth with the recordings) and node_modules never trigger a reload.
      ignored: (file: string) => {
        const rel = path.relative(root, path.resolve(file));
        if (rel === '' || rel.startsWith('..')) return false;
        const parts = rel.split(path.sep);
        return IGNORED_TOP.has(parts[0]!) || parts.some((p) => p.startsWith('.') || p === 'node_modules');
      },
      // A small stability window (not polling the tree: native events; only a written file's size is re-checked).
      awaitWriteFinish: { stabilityThreshold: this.#o.stabilityMs ?? 20, pollInterval: 10 },
      atomic: 20,
    });
    watcher.on('all', () => this.#changed());
    watcher.on('error', (err) => this.#o.logger.error({ err }, `watching ${root} failed: ${String(err)}`));
    this.#watcher = watcher;
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  }

  #changed(): void {
    if (this.#stopped) return;
    this.#changedAt ??= performance.now();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const at = this.#changedAt ?? performance.now();
      this.#changedAt = undefined;
      void this.#schedule(at);
    }, this.#o.debounceMs ?? 15);
  }

  /** One check-and-reload at a time; saves during one run exactly one more. */
  #schedule(at: number): Promise<void> {
    if (this.#running) {
      this.#again = true;
      this.#pendingAt ??= at;
      return this.#running;
    }
    this.#running = (async () => {
      let t = at;
      for (;;) {
        this.#again = false;
        try {
          await this.#cycle(t);
        } catch (err) {
          this.#o.logger.error({ err }, `dev reload failed: ${String(err)}`);
        }
        if (!this.#again || this.#stopped) break;
        t = this.#pendingAt ?? performance.now();
        this.#pendingAt = undefined;
      }
    })().finally(() => (this.#running = undefined));
    return this.#running;
  }

  #pendingAt: number | undefined;

  /** Resolves once no check or reload is running or pending. */
  async settled(): Promise<void> {
    while (this.#running || this.#timer) await (this.#running ?? new Promise((r) => setTimeout(r, 5)));
  }

  async #cycle(at: number): Promise<void> {
    if (this.#stopped) return;
    const { config } = this.#o;
    const tc = performance.now();
    // The same bytes as the last cycle saw (the build's own outputs, an editor saving unchanged text): nothing to do.
    const prints = await fingerprint(this.dir, config.packages.maxFiles, this.#prints);
    if (this.#prints && sameContents(this.#prints, prints)) {
      this.emit('unchanged', { ms: performance.now() - at });
      return;
    }
    this.#prints = prints;
    const options = {
      schemaLimits: config.extensionSchemas,
      maxFiles: config.packages.maxFiles,
      ...(this.#o.typeCheck === false ? {} : { types: this.#types }),
    };
    let check = await checkExtension(this.dir, options);
    if (this.#types.source === null && !this.#typesNoted) {
      this.#typesNoted = true;
      this.#o.logger.warn({}, `TypeScript types are not checked: no \`typescript\` package in ${this.dir} or beside Plinth (npm install -D typescript); syntax errors still are`);
    }
    // Nothing broken is built, started or reloaded.
    if (check.problems.length > 0 || !check.pkg) return this.#reject(check.problems, at);
    if (this.#o.build !== false && check.scripts?.build !== undefined) {
      const built = await runBuild(this.dir, config.ceilings.startTimeoutMs);
      // What the build wrote is known from now on: its own writes do not start another cycle.
      this.#prints = await fingerprint(this.dir, config.packages.maxFiles, this.#prints);
      if (!built.ok) return this.#reject(built.problems, at);
      this.#o.logger.debug({ ms: Math.round(built.ms) }, `npm run build: ${Math.round(built.ms)} ms`);
      check = await checkExtension(this.dir, { schemaLimits: options.schemaLimits, maxFiles: options.maxFiles });
      if (check.problems.length > 0 || !check.pkg) return this.#reject(check.problems, at);
    }
    const checkMs = performance.now() - tc;
    const t1 = performance.now();
    const { id, version, main } = check.pkg;
    if (this.#o.remote) return this.#reloadRemote(this.#o.remote, id, version, main, at, checkMs, t1);
    if (check.pkg.manifest.runtime !== 'remote') return this.#reloadEmbedded(id, at, checkMs, t1);
    // A `remote` extension is not discovered but registers: this process is its runner, against its own host.
    this.#runnerImpl ??= (await loadRunner()) ?? null;
    if (!this.#runnerImpl || !this.#control || !this.url) {
      const why = !this.#runnerImpl ? 'this build has no remote runner (runExtension, src/sdk/runner.ts)' : 'the embedded host has no control channel (--no-control)';
      return this.#reject([{ code: 'PLINTH_ERR_DEV_REMOTE_UNAVAILABLE', message: `${id} has "runtime": "remote", and ${why}`, file: path.join(this.dir, 'package.json'), hint: 'run it as "isolate" or "worker" meanwhile' }], at);
    }
    return this.#reloadRemote({ url: this.url, token: this.#runnerToken, runExtension: this.#runnerImpl }, id, version, main, at, checkMs, t1);
  }

  async #reloadEmbedded(id: string, at: number, checkMs: number, t1: number): Promise<void> {
    const host = this.#host!;
    const before = host.get(id);
    if (this.#link) {
      await this.#link();
      this.#link = undefined;
    }
    await host.reload();
    const after = host.get(id);
    if (after && after !== before && (after.state === 'active' || after.state === 'degraded')) return this.#served(id, after.version, at, checkMs, performance.now() - t1);
    const entry = host.list().find((e) => e.id === id);
    const reason = (after ? entry?.reloadError : undefined) ?? (after ? undefined : entry?.reason);
    if (reason) {
      const err = PlinthError.fromJSON(reason);
      return this.#reject(this.#problemsOf(err), at);
    }
    if (after) {
      // Still the same version: the save changed nothing that is part of the package.
      this.emit('unchanged', { ms: performance.now() - at });
      return;
    }
    this.#reject([{ code: 'PLINTH_ERR_EXTENSION_NOT_FOUND', message: `${this.dir} did not start as an extension (see the log above)`, file: path.join(this.dir, 'package.json') }], at);
  }

  /** Problems from a host refusal: the error itself (at its place) and each of its `problems`. */
  #problemsOf(err: PlinthError): DevProblem[] {
    const aliases = [this.#linked, ...this.#copies].filter((a): a is string => a !== undefined);
    const at = locateError({ message: err.message, ...(err.file ? { file: err.file } : {}), ...(err.extensionStack ? { extensionStack: err.extensionStack } : {}) }, this.dir, aliases);
    const problems: DevProblem[] = [{ code: err.code, message: err.message, ...at, ...(err.hint ? { hint: err.hint } : {}) }];
    for (const p of err.problems) problems.push({ code: err.code, message: `${p.path}: ${p.message}`, ...(p.hint ? { hint: p.hint } : {}) });
    return problems;
  }

  async #reloadRemote(remote: NonNullable<DevSessionOptions['remote']>, id: string, version: string, main: string, at: number, checkMs: number, t1: number): Promise<void> {
    // Every version is imported from a fresh copy of the folder, so every module of it is evaluated again (Node
    // caches modules by URL); node_modules is linked, not copied.
    const copy = await mkdtemp(path.join(tmpdir(), 'plinth-dev-runner-'));
    this.#copies.push(copy);
    await cp(this.dir, copy, { recursive: true, filter: (src) => !IGNORED_TOP.has(path.relative(this.dir, src).split(path.sep)[0]!) });
    await symlink(path.join(this.dir, 'node_modules'), path.join(copy, 'node_modules'), 'dir').catch(() => undefined);
    let definition: unknown;
    try {
      const mod = (await import(pathToFileURL(path.join(copy, main)).href)) as { default?: unknown };
      definition = mod.default;
    } catch (err) {
      const e = err as Error;
      const located = locateError({ message: e.message, ...(e.stack ? { extensionStack: e.stack.replaceAll(pathToFileURL(copy).href, copy) } : {}) }, this.dir, [copy]);
      return this.#reject([{ code: 'PLINTH_ERR_EXTENSION_LOAD_FAILED', message: `its module threw while loading: ${e.message}`, ...located }], at);
    }
    const handle = remote.runExtension(definition, {
      url: remote.url,
      token: remote.token,
      dir: this.dir,
      handleSignals: false,
      log: (line) => this.#o.logger.info({ extension: id, from: 'extension' }, line),
    });
    // Bounded like a start: a runner that never registers (no host there, a refused token) is a refused save.
    const bound = this.#o.config.defaults.limits.startTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        handle.registered,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new PlinthError('PLINTH_ERR_CONTROL_UNREACHABLE', `${id} did not register with ${remote.url} within ${bound} ms (defaults.limits.startTimeoutMs)`, { extension: id, hint: 'check that the host runs there (plinth status --url …) and that the token has the runner role' })),
            bound,
          );
        }),
      ]);
    } catch (err) {
      await handle.stop().catch(() => undefined);
      const e = isPlinthError(err) ? err : new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', String((err as Error)?.message ?? err), { extension: id });
      return this.#reject(this.#problemsOf(e), at);
    } finally {
      clearTimeout(timer);
    }
    const old = this.#runner;
    this.#runner = handle;
    await old?.stop().catch(() => undefined);
    this.#served(id, version, at, checkMs, performance.now() - t1);
  }

  #served(id: string, version: string, at: number, checkMs: number, reloadMs: number): void {
    this.#generation++;
    this.#serving = { id, version, generation: this.#generation };
    const ms = performance.now() - at;
    this.#o.logger.info({ extension: id, version, ms: Math.round(ms), dev: true }, `${this.#generation === 1 ? 'serving' : 'reloaded'} ${id} ${version} in ${Math.round(ms)} ms`);
    this.emit('serving', { id, version, generation: this.#generation, ms, timings: { check: checkMs, reload: reloadMs } });
  }

  #reject(problems: DevProblem[], at: number): void {
    const serving = this.#serving;
    const placeOf = (p: DevProblem) => where(p, this.dir, (from, to) => path.relative(from, to));
    const first = problems[0];
    const head = serving ? `save rejected: ${serving.id} ${serving.version} keeps serving` : 'not serving: the extension has problems';
    // The message names the first problem's place too, so a JSON log line read by a person (or grep) has it.
    this.#o.logger.error(
      {
        problems: problems.map((p) => ({ code: p.code, message: p.message, at: placeOf(p), file: p.file, line: p.line, column: p.column, ...(p.hint ? { hint: p.hint } : {}) })),
        dev: 'rejected',
      },
      first ? `${head}: ${placeOf(first) ? `${placeOf(first)} ` : ''}${first.code}: ${first.message}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}` : head,
    );
    this.emit('rejected', { problems, serving, ms: performance.now() - at });
  }

  #warn(err: PlinthError): void {
    this.#o.logger.warn({ code: err.code, ...(err.file ? { file: err.file } : {}), ...(err.hint ? { hint: err.hint } : {}) }, err.message);
    this.emit('warning', err);
  }

  /** Stops watching, then the runner or the embedded host; removes the session's temp folders. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#watcher?.close();
    await this.#running;
    await this.#recorder?.flush();
    await this.#runner?.stop().catch(() => undefined);
    await this.#control?.close();
    if (this.#wroteServeFile) await rm(path.join(this.dataDir, SERVE_FILE), { force: true });
    await this.#host?.stop(timeoutMs);
    // Snapshots are read-only folders (a plain `rm -rf` of the extension folder could not delete them); they are a
    // cache of this session: removed at its end (kv and files in the data dir stay).
    if (this.#host) await removeTree(snapshotsDir(this.dataDir)).catch(() => undefined);
    if (this.#pluginDir) await rm(this.#pluginDir, { recursive: true, force: true });
    for (const c of this.#copies) await removeTree(c).catch(() => undefined);
  }
}
