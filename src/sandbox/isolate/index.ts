// The `isolate` runtime (DESIGN.md §4): untrusted extensions, each in its own isolated-vm Isolate, all inside a
// separate sandbox process (process.ts) that this side forks, watches and SIGKILLs. Two walls:
//   in the sandbox process: per call, a wall-clock deadline and a CPU-time budget (isolate.cpuTime); past either
//     the isolate is disposed (STAGE_TIMEOUT / CPU_LIMIT) and the sandbox reports onExit 'killed';
//   here, in the host: per call, the deadline plus a grace period (the process did not answer: SIGKILL), and the
//     process's RSS read from /proc/<pid>/status (memoryLimit is not a hard limit: resizable ArrayBuffers and
//     WebAssembly.Memory grow outside it) past a limit: SIGKILL, OUT_OF_MEMORY.
// Every ctx op an extension makes arrives here and goes to the ContextHandler it was created with (src/policy):
// this runtime checks no permission itself.
//
// Process model and blast radius. By default every isolate sandbox shares one lazily forked process
// (IsolateProcess.shared()): cheap (one Node process for all untrusted extensions), but when that process has to be
// killed (a hung call past its grace, RSS past the limit, an isolated-vm crash) every extension in it dies with it:
// their pending calls fail (SANDBOX_CRASHED, or OUT_OF_MEMORY for an RSS kill) and each sandbox reports onExit; the
// supervisor restarts them and the next start() transparently forks a fresh process. A misbehaving isolate that
// its own watchdog can stop (loops, timeouts, CPU, its memoryLimit) takes only itself down. Pass
// `{ process: 'dedicated' }` (or your own `new IsolateProcess()`) to confine even process kills to one extension,
// at the cost of a Node process (~84 MB RSS) per extension.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import { Peer, childTransport } from '../link/index.ts';
import { PlinthError, type ErrorCode } from '../../errors.ts';
import { checkTimeout, startTimedOut } from '../options.ts';
import type { CallOptions, ContextHandler, ContextOp, Sandbox, SandboxExit, SandboxSpec } from '../types.ts';
import type { HealthResult, Json, PlinthEvent } from '../../sdk/index.ts';
import { DEFAULT_MAX_RESULT_BYTES, MIN_MEMORY_MB, type CtxParams, type CtxResult, type ExitParams, type InvokeKind, type InvokeResult, type LoadParams, type LoadResult, type StatsResult } from './protocol.ts';

export { DEFAULT_MAX_RESULT_BYTES } from './protocol.ts';
export type { StatsResult as IsolateProcessStats } from './protocol.ts';

const debug = debuglog('plinth:sandbox');
const PROCESS_ENTRY = fileURLToPath(new URL('./process.ts', import.meta.url));
// Installed from a tarball (under node_modules, where Node strips no types) the process entry needs the
// launcher's type-stripping hook (bin/strip-types.js).
const STRIP_TYPES_ARGS = /[\\/]node_modules[\\/]/.test(PROCESS_ENTRY) ? ['--import', new URL('../../../bin/strip-types.js', import.meta.url).href] : [];

export interface IsolateProcessOptions {
  /** Fixed RSS limit of the sandbox process in MB. Default: rssBaselineMb + rssPerMemoryMb × Σ hosted memoryMb. */
  rssLimitMb?: number;
  /** RSS of the process itself with no isolate (measured ≈ 84 MB RSS on Node 24) plus headroom. Default 192. */
  rssBaselineMb?: number;
  /** Factor on each hosted isolate's memoryMb (isolated-vm: a hostile isolate may reach 2-3× its limit). Default 3. */
  rssPerMemoryMb?: number;
  /** How often the RSS is read. Default 100 ms. */
  rssIntervalMs?: number;
  /** How long past a call's deadline the host waits for the process to answer before killing it. Default 2000 ms. */
  graceMs?: number;
  /** Cap of a stage result's JSON text (checked inside the isolate). Default 8 MiB. */
  maxResultBytes?: number;
  /** How long forking and loading isolated-vm may take. Default 20000 ms. */
  spawnTimeoutMs?: number;
  /** Where procfs is mounted (default /proc). Without it the RSS is asked of the process over the link, with a warning. */
  procRoot?: string;
}

interface ResolvedOptions {
  rssLimitMb: number | undefined;
  rssBaselineMb: number;
  rssPerMemoryMb: number;
  rssIntervalMs: number;
  graceMs: number;
  maxResultBytes: number;
  spawnTimeoutMs: number;
  procRoot: string;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TypeError(`IsolateProcess option ${name} must be a positive number, got ${String(value)}`);
  return value;
}

/** Why a sandbox process ended, decided by whoever killed it (or 'crashed' if nobody did). */
interface ProcessEnd {
  reason: SandboxExit['reason'];
  code: ErrorCode;
  detail: string;
  trigger?: { instanceId: string; callId: number };
}

/** Absolute paths in a host error message would tell the guest about the host: they are replaced. */
function scrub(message: string): string {
  return message.replace(/(^|[\s'"(=])\/[^\s'"()]+/g, '$1<path>').slice(0, 4096);
}

const warnedNoProcfs = new Set<string>();
/** Said once per procfs location, at the first sandbox process: the watchdog works, but by asking the process. */
function warnNoProcfs(procRoot: string): void {
  if (warnedNoProcfs.has(procRoot)) return;
  warnedNoProcfs.add(procRoot);
  process.emitWarning(`no procfs at ${procRoot}: the isolate sandbox process's memory (RSS) is read from the process itself over its link, which a process that stops answering cannot report`, { code: 'PLINTH_NO_PROCFS' });
}

/** How long after its link closed a sandbox process has to report its exit (code or signal) before the link is blamed. */
const LINK_CLOSE_GRACE_MS = 1000;

const liveChildren = new Set<ChildProcess>();
// Nothing may outlive the host: a sandbox process whose host exits is killed with it.
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** One forked sandbox process. An IsolateProcess forks a new one when the previous one has died. */
class Generation {
  readonly child: ChildProcess;
  readonly peer: Peer;
  readonly sandboxes = new Map<string, IsolateSandbox>();
  readonly ready: Promise<void>;
  exited = false;
  readonly #options: ResolvedOptions;
  readonly #onExit: (gen: Generation) => void;
  #end: ProcessEnd | undefined;
  #inflight = 0;
  #rssTimer: NodeJS.Timeout | undefined;
  /** Whether the RSS is read from procfs (else asked of the process over the link). */
  readonly #procfs: boolean;
  #askingRss = false;
  #ready = false;
  lastRssBytes = 0;

  constructor(options: ResolvedOptions, onExit: (gen: Generation) => void) {
    this.#options = options;
    this.#onExit = onExit;
    this.child = fork(PROCESS_ENTRY, [], {
      // isolated-vm needs --no-node-snapshot on Node >= 20. The host's own flags (e.g. --test) are not inherited,
      // nor is its environment: nothing of the host's secrets sits in the process that runs untrusted code.
      execArgv: ['--no-node-snapshot', '--disable-warning=ExperimentalWarning', ...STRIP_TYPES_ARGS],
      env: {},
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
      // Its own process group (and session): a terminal's Ctrl-C goes to the host's group only, even while this
      // process is still booting (before process.ts can ignore SIGINT). The host stops it; if the host dies, the
      // closed IPC channel ends it (process.ts).
      detached: true,
    });
    liveChildren.add(this.child);
    this.peer = new Peer(childTransport(this.child));
    let readyResolve!: () => void;
    let readyReject!: (err: unknown) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    this.ready.catch(() => undefined);
    this.#hold();
    const spawnTimer = setTimeout(() => {
      readyReject(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `the isolate sandbox process did not start within ${options.spawnTimeoutMs} ms`));
      this.kill({ reason: 'crashed', code: 'PLINTH_ERR_SANDBOX_CRASHED', detail: 'the sandbox process did not start in time' });
    }, options.spawnTimeoutMs);
    spawnTimer.unref();
    this.peer.handle('ready', () => {
      this.#ready = true;
      clearTimeout(spawnTimer);
      this.#release();
      readyResolve();
    });
    this.peer.handle('ctx', (params) => this.#ctx(params as CtxParams));
    this.peer.handle('exit', (params) => {
      const p = params as ExitParams;
      this.sandboxes.get(p.instanceId)?._guestDied(p);
    });
    // A link that closes without an exit (a broken pipe) must still end in one, so 'exit' below always runs. The
    // link closes first when the process dies (IPC 'disconnect' comes before 'exit'): its exit code or signal is the
    // cause a user must see, so the link is blamed only if no exit follows within LINK_CLOSE_GRACE_MS.
    let linkTimer: NodeJS.Timeout | undefined;
    this.peer.onClose(() => {
      if (this.exited) return;
      linkTimer = setTimeout(() => this.kill({ reason: 'crashed', code: 'PLINTH_ERR_SANDBOX_CRASHED', detail: 'the link to the sandbox process closed' }), LINK_CLOSE_GRACE_MS);
      linkTimer.unref();
    });
    const onGone = (detail: string) => {
      if (this.exited) return;
      this.exited = true;
      liveChildren.delete(this.child);
      clearTimeout(spawnTimer);
      clearTimeout(linkTimer);
      if (this.#rssTimer) clearInterval(this.#rssTimer);
      readyReject(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `the isolate sandbox process ended while starting: ${detail}`));
      const end = this.#end ?? { reason: 'crashed', code: 'PLINTH_ERR_SANDBOX_CRASHED', detail: `the sandbox process ${detail}` };
      debug('isolate sandbox process %d ended: %s (%s)', this.child.pid, end.reason, end.detail);
      for (const sandbox of [...this.sandboxes.values()]) sandbox._processDied(end);
      this.sandboxes.clear();
      this.#onExit(this);
    };
    this.child.once('exit', (code, signal) => onGone(signal ? `was killed by ${signal}` : `exited with code ${code}`));
    this.child.once('error', (err) => {
      onGone(`could not run: ${err.message}`);
      this.child.kill('SIGKILL');
    });
    this.#procfs = existsSync(path.join(options.procRoot, 'self', 'status'));
    if (!this.#procfs) warnNoProcfs(options.procRoot);
    this.#rssTimer = setInterval(() => this.#checkRss(), options.rssIntervalMs);
    this.#rssTimer.unref();
  }

  get rssLimitMb(): number {
    if (this.#options.rssLimitMb !== undefined) return this.#options.rssLimitMb;
    let sum = 0;
    for (const s of this.sandboxes.values()) sum += Math.max(MIN_MEMORY_MB, s.spec.limits.memoryMb);
    return this.#options.rssBaselineMb + this.#options.rssPerMemoryMb * sum;
  }

  #checkRss(): void {
    if (this.exited || this.child.pid === undefined) return;
    if (!this.#procfs) return this.#checkRssOverLink();
    let text: string;
    try {
      text = readFileSync(path.join(this.#options.procRoot, String(this.child.pid), 'status'), 'utf8');
    } catch {
      return; // the process is gone: the exit handler takes over
    }
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(text);
    if (!m) return;
    this.#judgeRss(Number(m[1]) * 1024);
  }

  /** No procfs: the process reports its own process.memoryUsage().rss (a process that stops answering is killed by the call walls). */
  #checkRssOverLink(): void {
    if (this.#askingRss || !this.#ready) return;
    this.#askingRss = true;
    this.peer
      .request('rss', {})
      .then(
        (r) => this.#judgeRss((r as { rssBytes: number }).rssBytes),
        () => undefined,
      )
      .finally(() => {
        this.#askingRss = false;
      });
  }

  #judgeRss(rssBytes: number): void {
    if (this.exited) return;
    this.lastRssBytes = rssBytes;
    const limit = this.rssLimitMb;
    if (this.lastRssBytes > limit * 1024 * 1024) {
      this.kill({ reason: 'out-of-memory', code: 'PLINTH_ERR_OUT_OF_MEMORY', detail: `the isolate sandbox process used ${Math.round(this.lastRssBytes / 1048576)} MB of memory (RSS), over its limit of ${limit} MB` });
    }
  }

  // The IPC channel is ref'd only while a request is in flight: idle sandbox processes never hold the host open.
  #hold(): void {
    if (this.#inflight++ === 0) {
      this.child.ref();
      this.child.channel?.ref();
    }
  }

  #release(): void {
    if (--this.#inflight === 0) {
      this.child.unref();
      this.child.channel?.unref();
    }
  }

  async request(method: string, params: unknown): Promise<unknown> {
    this.#hold();
    try {
      return await this.peer.request(method, params);
    } finally {
      this.#release();
    }
  }

  kill(end: ProcessEnd): void {
    if (this.exited) return;
    this.#end ??= end;
    this.child.kill('SIGKILL');
  }

  async #ctx(params: CtxParams): Promise<CtxResult> {
    const sandbox = this.sandboxes.get(params.instanceId);
    if (!sandbox) return { ok: false, error: { code: 'PLINTH_ERR_SANDBOX_CRASHED', name: 'Error', message: 'the sandbox is gone' } };
    return sandbox._ctx(params.op);
  }
}

export class IsolateProcess {
  static #shared: IsolateProcess | undefined;
  static readonly #all = new Set<IsolateProcess>();

  /** The process every isolate sandbox shares by default; `options` apply only when it is first created. */
  static shared(options?: IsolateProcessOptions): IsolateProcess {
    IsolateProcess.#shared ??= new IsolateProcess(options);
    return IsolateProcess.#shared;
  }

  /** Kills every sandbox process (tests and the host call it at exit). Their sandboxes fail pending calls SHUTDOWN. */
  static async shutdownAll(): Promise<void> {
    await Promise.all([...IsolateProcess.#all].map((p) => p.shutdown()));
  }

  /** How many IsolateProcesses have a live sandbox process now (each is listed only while its process lives). */
  static get liveCount(): number {
    return IsolateProcess.#all.size;
  }

  readonly #options: ResolvedOptions;
  #gen: Generation | undefined;
  #spawns = 0;

  constructor(options: IsolateProcessOptions = {}) {
    this.#options = {
      rssLimitMb: options.rssLimitMb === undefined ? undefined : positive('rssLimitMb', options.rssLimitMb, 0),
      rssBaselineMb: positive('rssBaselineMb', options.rssBaselineMb, 192),
      rssPerMemoryMb: positive('rssPerMemoryMb', options.rssPerMemoryMb, 3),
      rssIntervalMs: positive('rssIntervalMs', options.rssIntervalMs, 100),
      graceMs: positive('graceMs', options.graceMs, 2000),
      maxResultBytes: positive('maxResultBytes', options.maxResultBytes, DEFAULT_MAX_RESULT_BYTES),
      spawnTimeoutMs: positive('spawnTimeoutMs', options.spawnTimeoutMs, 20_000),
      procRoot: options.procRoot ?? '/proc',
    };
    if (typeof this.#options.procRoot !== 'string' || this.#options.procRoot === '') throw new TypeError('IsolateProcess option procRoot must be a non-empty path');
  }

  get options(): Readonly<ResolvedOptions> {
    return this.#options;
  }

  /** pid of the current sandbox process, if one is running. */
  get pid(): number | undefined {
    return this.#gen && !this.#gen.exited ? this.#gen.child.pid : undefined;
  }

  /** How many processes this IsolateProcess has forked so far (a restart after a kill adds one). */
  get spawnCount(): number {
    return this.#spawns;
  }

  /** Current RSS limit in MB of the running process (depends on the isolates it hosts). */
  get rssLimitMb(): number | undefined {
    return this.#gen && !this.#gen.exited ? this.#gen.rssLimitMb : undefined;
  }

  /** Memory and CPU of the running process and each isolate in it. */
  async stats(): Promise<StatsResult | undefined> {
    const gen = this.#gen;
    if (!gen || gen.exited) return undefined;
    return (await gen.request('stats', {})) as StatsResult;
  }

  /** Whether the running process's own realm is untouched by extension code (prototypes, JSON, Promise). */
  async integrity(): Promise<{ objectPrototype: boolean; arrayPrototype: boolean; polluted: boolean; nativeJson: boolean; nativePromiseThen: boolean } | undefined> {
    const gen = this.#gen;
    if (!gen || gen.exited) return undefined;
    return (await gen.request('integrity', {})) as { objectPrototype: boolean; arrayPrototype: boolean; polluted: boolean; nativeJson: boolean; nativePromiseThen: boolean };
  }

  /** Kills the current sandbox process (no onExit for its sandboxes: this is a deliberate stop). */
  async shutdown(): Promise<void> {
    const gen = this.#gen;
    if (!gen || gen.exited) return;
    const gone = new Promise<void>((resolve) => gen.child.once('exit', () => resolve()));
    // Held (ref'd) until the child is gone: an unref'd child and timer would let the event loop empty while a
    // caller is still awaiting this, ending the host with "unsettled top-level await".
    gen.child.ref();
    gen.kill({ reason: 'stopped', code: 'PLINTH_ERR_SHUTDOWN', detail: 'the isolate sandbox process was shut down' });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([gone, new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)))]);
    clearTimeout(timer);
  }

  /** @internal The live process, forked if there is none (or the last one died). */
  async _acquire(sandbox: IsolateSandbox): Promise<Generation> {
    let gen = this.#gen;
    if (!gen || gen.exited) {
      gen = new Generation(this.#options, (g) => {
        if (this.#gen !== g) return;
        this.#gen = undefined;
        IsolateProcess.#all.delete(this);
      });
      this.#gen = gen;
      this.#spawns++;
      // Listed while its process lives, so shutdownAll() reaches it and the list never grows with dead ones.
      IsolateProcess.#all.add(this);
    }
    gen.sandboxes.set(sandbox.spec.instanceId, sandbox);
    try {
      await gen.ready;
    } catch (err) {
      gen.sandboxes.delete(sandbox.spec.instanceId);
      throw err;
    }
    return gen;
  }
}

export interface IsolateSandboxOptions {
  /** The sandbox process to run in: the shared one by default, 'dedicated' for a process of its own. */
  process?: IsolateProcess | 'dedicated';
  /** CPU time the isolate may use while one call is pending. Default: the call's timeout. */
  cpuLimitMs?: number;
}

export interface IsolateUsage {
  calls: number;
  cpuMs: number;
  loadCpuMs: number;
}

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'dead';

interface PendingCall {
  callId: number;
  deadline: number;
  settle(err: PlinthError | undefined, result?: InvokeResult): void;
}

export class IsolateSandbox implements Sandbox {
  readonly runtime = 'isolate' as const;
  readonly spec: SandboxSpec;
  readonly #context: ContextHandler;
  readonly #process: IsolateProcess;
  readonly #dedicated: boolean;
  readonly #cpuLimitMs: number | undefined;
  #state: State = 'idle';
  #gen: Generation | undefined;
  #start: Promise<void> | undefined;
  #exit: SandboxExit | undefined;
  #nextCallId = 1;
  readonly #pending = new Map<number, PendingCall>();
  readonly #exitListeners: Array<(exit: SandboxExit) => void> = [];
  readonly #usage: IsolateUsage = { calls: 0, cpuMs: 0, loadCpuMs: 0 };

  constructor(spec: SandboxSpec, context: ContextHandler, options: IsolateSandboxOptions = {}) {
    if (typeof context !== 'function') throw new TypeError('createIsolateSandbox: context must be a ContextHandler function');
    for (const key of ['instanceId', 'id', 'version', 'dir', 'mainPath'] as const) {
      if (typeof spec[key] !== 'string' || spec[key] === '') throw new TypeError(`createIsolateSandbox: spec.${key} must be a non-empty string`);
    }
    if (!(spec.limits?.memoryMb > 0) || !(spec.limits.callTimeoutMs > 0)) throw new TypeError('createIsolateSandbox: spec.limits.memoryMb and callTimeoutMs must be positive');
    if (options.cpuLimitMs !== undefined && !(options.cpuLimitMs > 0)) throw new TypeError('createIsolateSandbox: cpuLimitMs must be positive');
    this.spec = spec;
    this.#context = context;
    this.#dedicated = options.process === 'dedicated';
    this.#process = options.process instanceof IsolateProcess ? options.process : this.#dedicated ? new IsolateProcess() : IsolateProcess.shared();
    this.#cpuLimitMs = options.cpuLimitMs;
  }

  /** The process this sandbox runs in (a dedicated one is owned by the sandbox and shut down by stop()). */
  get process(): IsolateProcess {
    return this.#process;
  }

  get state(): State {
    return this.#state;
  }

  /** CPU time its isolate used (isolate.cpuTime deltas per call, and for loading). */
  get usage(): Readonly<IsolateUsage> {
    return { ...this.#usage };
  }

  #error(code: ErrorCode, message: string): PlinthError {
    return new PlinthError(code, `extension ${this.spec.id}: ${message}`, { extension: this.spec.id });
  }

  start(): Promise<void> {
    if (this.#start) return this.#start;
    if (this.#state !== 'idle') return Promise.reject(this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox was stopped before it started'));
    this.#state = 'starting';
    this.#start = this.#doStart();
    return this.#start;
  }

  async #doStart(): Promise<void> {
    try {
      // ctx.env is synchronous in the SDK: the granted names are asked of the ContextHandler now, once.
      const env: Record<string, string | null> = {};
      for (const name of this.spec.permissions.env ?? []) {
        try {
          const value = await this.#context({ op: 'env', name });
          env[name] = typeof value === 'string' ? value : null;
        } catch {
          // not granted after all: the name stays unknown to the isolate
        }
      }
      const gen = await this.#process._acquire(this);
      this.#gen = gen;
      if (this.#state !== 'starting') throw this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox was stopped while starting');
      // Loading runs module evaluation, initialize() and start(), together bounded by startTimeoutMs in the process.
      const bound = this.spec.limits.startTimeoutMs ?? this.spec.limits.callTimeoutMs;
      const params: LoadParams = { spec: this.spec, maxResultBytes: this.#process.options.maxResultBytes, env };
      const result = (await this.#track(gen, 0, bound, () => gen.request('load', params))) as unknown as LoadResult;
      this.#usage.loadCpuMs = result.cpuMs;
      if (this.#state !== 'starting') {
        // Stopped while it loaded: what loaded must not stay in the process, uncounted (issue 8).
        if (!gen.exited) await gen.request('dispose', { instanceId: this.spec.instanceId }).catch(() => undefined);
        throw this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox was stopped while starting');
      }
      this.#state = 'running';
    } catch (err) {
      if (this.#state === 'starting') this.#state = 'dead';
      this.#detach();
      if (err instanceof PlinthError && (err.code === 'PLINTH_ERR_EXTENSION_LOAD_FAILED' || err.code === 'PLINTH_ERR_IMPORT_REFUSED' || err.code === 'PLINTH_ERR_SHUTDOWN')) throw err;
      // Past its deadline while loading (the process's watchdog or the host's wall): the start limit says so.
      if (err instanceof PlinthError && err.code === 'PLINTH_ERR_STAGE_TIMEOUT') throw startTimedOut(this.spec.id, this.spec.limits.startTimeoutMs ?? this.spec.limits.callTimeoutMs);
      const why = err instanceof PlinthError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
      throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${this.spec.id} could not be started: ${why}`, { extension: this.spec.id, cause: err });
    }
  }

  /**
   * Runs `send` with the host's own wall: if no answer arrives by the deadline plus the grace period, the whole
   * sandbox process is killed (its isolate thread is stuck where dispose() cannot reach it).
   */
  #track(gen: Generation, callId: number, timeoutMs: number, send: () => Promise<unknown>, signal?: AbortSignal): Promise<InvokeResult> {
    return new Promise<InvokeResult>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      let done = false;
      const timer = setTimeout(() => {
        gen.kill({
          reason: 'killed',
          code: 'PLINTH_ERR_STAGE_TIMEOUT',
          detail: `extension ${this.spec.id}: a call ran past its timeout of ${timeoutMs} ms and the sandbox process did not answer within ${this.#process.options.graceMs} ms more`,
          trigger: { instanceId: this.spec.instanceId, callId },
        });
      }, timeoutMs + this.#process.options.graceMs);
      timer.unref();
      const onAbort = () => {
        entry.settle(this.#error('PLINTH_ERR_CANCELLED', 'the call was cancelled by its caller'));
        if (!gen.exited) gen.peer.notify('abort', { instanceId: this.spec.instanceId, callId });
      };
      const entry: PendingCall = {
        callId,
        deadline,
        settle: (err, result) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.#pending.delete(callId);
          if (err) reject(err);
          else resolve(result!);
        },
      };
      this.#pending.set(callId, entry);
      if (signal) {
        if (signal.aborted) {
          entry.settle(this.#error('PLINTH_ERR_CANCELLED', 'the call was cancelled by its caller before it ran'));
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
      }
      send().then(
        (r) => entry.settle(undefined, r as InvokeResult),
        (err: unknown) => {
          // A closed link means the process died: its exit handler settles this call with the reason's code.
          if (gen.peer.closed) return;
          entry.settle(err instanceof PlinthError ? err : this.#error('PLINTH_ERR_SANDBOX_CRASHED', String(err)));
        },
      );
    });
  }

  async #invoke(kind: InvokeKind, name: string | undefined, input: Json | undefined, timeoutMs: number, options: Partial<CallOptions> = {}, allowStopping = false): Promise<InvokeResult> {
    const gen = this.#gen;
    if (this.#state !== 'running' && !(allowStopping && this.#state === 'stopping')) throw this.#unavailable();
    if (!gen || gen.exited) throw this.#error('PLINTH_ERR_SANDBOX_CRASHED', 'its sandbox process is gone');
    checkTimeout(this.spec.id, timeoutMs);
    const callId = this.#nextCallId++;
    const params = {
      instanceId: this.spec.instanceId,
      callId,
      kind,
      ...(name === undefined ? {} : { name }),
      ...(input === undefined ? {} : { inputJson: JSON.stringify(input) }),
      timeoutMs,
      cpuLimitMs: this.#cpuLimitMs ?? timeoutMs,
      ...(options.runId === undefined ? {} : { runId: options.runId }),
      ...(options.traceId === undefined ? {} : { traceId: options.traceId }),
    };
    const result = await this.#track(gen, callId, timeoutMs, () => gen.request('invoke', params), options.signal);
    this.#usage.calls++;
    this.#usage.cpuMs += result.cpuMs;
    return result;
  }

  #unavailable(): PlinthError {
    switch (this.#state) {
      case 'dead':
        return this.#error('PLINTH_ERR_SANDBOX_CRASHED', `its sandbox ended (${this.#exit?.reason ?? 'failed'}: ${this.#exit?.detail ?? 'it did not start'}); a new sandbox must be created`);
      case 'stopping':
      case 'stopped':
        return this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox is stopped');
      default:
        return this.#error('PLINTH_ERR_EXTENSION_UNAVAILABLE', 'the sandbox is not started');
    }
  }

  async call(stage: string, input: Json, options: CallOptions): Promise<Json> {
    if (this.#state === 'running' && !this.spec.stages.includes(stage)) {
      throw new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `extension ${this.spec.id} declares no stage "${stage}" (it declares: ${this.spec.stages.join(', ') || 'none'})`, { extension: this.spec.id });
    }
    return (await this.#invoke('stage', stage, input, options.timeoutMs, options)).value;
  }

  async deliver(event: PlinthEvent, options: CallOptions): Promise<void> {
    await this.#invoke('event', undefined, event as unknown as Json, options.timeoutMs, options);
  }

  async health(timeoutMs: number): Promise<HealthResult> {
    const result = await this.#invoke('health', undefined, undefined, timeoutMs);
    if (result.absent) return true;
    const v = result.value as { healthy?: unknown; detail?: unknown } | null;
    const healthy = v !== null && typeof v === 'object' && v.healthy === true;
    return typeof v?.detail === 'string' ? { healthy, detail: v.detail } : healthy;
  }

  async stop(timeoutMs: number): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    const work = async () => {
      if (this.#state === 'starting') {
        // Stopped while loading: the load is not waited for. The process is told to dispose the instance now (a
        // load still running then fails), and #doStart disposes it again if the load still completes.
        this.#state = 'stopping';
        const gen = this.#gen;
        if (gen && !gen.exited) await gen.request('dispose', { instanceId: this.spec.instanceId }).catch(() => undefined);
        await this.#start?.catch(() => undefined);
        return;
      }
      const wasRunning = this.#state === 'running';
      if (this.#state !== 'dead') this.#state = 'stopping';
      const gen = this.#gen;
      if (wasRunning && gen && !gen.exited) {
        await this.#invoke('stop', undefined, undefined, timeoutMs, {}, true).catch((err: unknown) => debug('extension %s: stop() failed: %s', this.spec.id, String(err)));
        if (!gen.exited) await gen.request('dispose', { instanceId: this.spec.instanceId }).catch(() => undefined);
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs + this.#process.options.graceMs)).unref());
    try {
      await Promise.race([work(), bound]);
    } catch (err) {
      debug('extension %s: stopping failed: %s', this.spec.id, String(err));
    } finally {
      clearTimeout(timer);
    }
    this.#state = 'stopped';
    for (const p of [...this.#pending.values()]) p.settle(this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox was stopped during the call'));
    this.#detach();
    if (this.#dedicated) await this.#process.shutdown();
  }

  onExit(listener: (exit: SandboxExit) => void): void {
    this.#exitListeners.push(listener);
    const exit = this.#exit;
    if (exit) queueMicrotask(() => listener(exit));
  }

  #detach(): void {
    const gen = this.#gen;
    if (gen && gen.sandboxes.get(this.spec.instanceId) === this) gen.sandboxes.delete(this.spec.instanceId);
    this.#gen = undefined;
    if (this.#dedicated && gen && gen.sandboxes.size === 0) gen.kill({ reason: 'stopped', code: 'PLINTH_ERR_SHUTDOWN', detail: 'its only sandbox ended' });
  }

  #die(exit: SandboxExit, codeFor: (p: PendingCall) => ErrorCode, message: string | ((p: PendingCall) => string)): void {
    const wasRunning = this.#state === 'running';
    if (this.#state === 'starting' || this.#state === 'running') this.#state = 'dead';
    for (const p of [...this.#pending.values()]) p.settle(this.#error(codeFor(p), typeof message === 'string' ? message : message(p)));
    this.#detach();
    if (wasRunning && !this.#exit) {
      this.#exit = exit;
      for (const l of this.#exitListeners) {
        try {
          l(exit);
        } catch (err) {
          debug('extension %s: an onExit listener threw: %s', this.spec.id, String(err));
        }
      }
    }
  }

  /** @internal The process hosting this sandbox ended (killed by a watchdog, crashed, or shut down). */
  _processDied(end: ProcessEnd): void {
    if (end.reason === 'stopped') {
      const wasAlive = this.#state === 'running' || this.#state === 'starting';
      if (wasAlive) this.#state = 'dead';
      for (const p of [...this.#pending.values()]) p.settle(this.#error('PLINTH_ERR_SHUTDOWN', end.detail));
      if (wasAlive) this.#exit = { reason: 'stopped', detail: end.detail };
      this.#detach();
      return;
    }
    const now = Date.now();
    this.#die({ reason: end.reason, detail: end.detail }, (p) => {
      if (end.trigger && end.trigger.instanceId === this.spec.instanceId && end.trigger.callId === p.callId) return end.code;
      if (end.reason === 'out-of-memory') return 'PLINTH_ERR_OUT_OF_MEMORY';
      return now >= p.deadline ? 'PLINTH_ERR_STAGE_TIMEOUT' : 'PLINTH_ERR_SANDBOX_CRASHED';
    }, end.detail);
  }

  /** @internal The isolate died on its own inside a live process (its own watchdog, its memory limit). */
  _guestDied(p: ExitParams): void {
    if (this.#state === 'stopping' || this.#state === 'stopped') return;
    // While starting, the only pending call is the load (callId 0): whatever stopped the isolate stopped it.
    const hit = (call: PendingCall) => call.callId === p.triggerCallId || p.reason === 'out-of-memory' || call.callId === 0;
    this.#die(
      { reason: p.reason, detail: p.detail },
      (call) => (hit(call) ? p.code : 'PLINTH_ERR_SANDBOX_CRASHED'),
      (call) => (hit(call) ? `the call was stopped: ${p.detail}` : `its isolate was stopped during the call: ${p.detail}`),
    );
  }

  /** @internal A ctx op from the isolate: performed by the host's ContextHandler, its outcome as plain data. */
  async _ctx(op: ContextOp): Promise<CtxResult> {
    try {
      const value = await this.#context(op);
      return value === undefined ? { ok: true, value: null, undefined: true } : { ok: true, value };
    } catch (err) {
      const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; name?: unknown; message?: unknown; hint?: unknown };
      return {
        ok: false,
        error: {
          code: typeof e.code === 'string' ? e.code.slice(0, 128) : '',
          name: typeof e.name === 'string' && e.name !== 'PlinthError' ? e.name.slice(0, 128) : 'Error',
          message: scrub(typeof e.message === 'string' ? e.message : String(err)),
          // The permission to add (PERMISSION_DENIED): the same hint a worker extension gets.
          ...(typeof e.hint === 'string' ? { hint: scrub(e.hint) } : {}),
        },
      };
    }
  }
}

export function createIsolateSandbox(spec: SandboxSpec, context: ContextHandler, options?: IsolateSandboxOptions): IsolateSandbox {
  return new IsolateSandbox(spec, context, options);
}
