// The registry of sandbox processes: an IsolateProcess owns at most one live process at a time (a ProcessHandle,
// handle.ts) and forks a fresh one when a sandbox starts after the last one died. By default every isolate sandbox
// shares one (IsolateProcess.shared()); the set of all of them lists only those with a live process, so it
// never grows with dead ones and shutdownAll() reaches every process the host forked.
import { PlinthError } from '../../errors.ts';
import { DEFAULT_MAX_RESULT_BYTES, type StatsResult } from './protocol.ts';
import { ProcessHandle, type HostedSandbox, type ResolvedProcessOptions } from './handle.ts';

export interface IsolateProcessOptions {
  /**
   * Fixed RSS limit of the sandbox process in MB. Default: rssBaselineMb + rssPerMemoryMb × Σ over hosted isolates
   * of their heap limit (memoryMb + 32 MB argument headroom, protocol.ts).
   */
  rssLimitMb?: number;
  /**
   * What the process needs itself, in MB. Default 192: measured ≈ 80 MB idle with one isolate (Node 24 and
   * isolated-vm), ≈ 165-180 MB at 64 calls in flight with one 32 MB isolate, of which ≈ 60 MB is the isolate's.
   */
  rssBaselineMb?: number;
  /** Factor on each hosted isolate's heap limit: the heap, and as much again outside it. Default 2. */
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
  /**
   * The sandbox process's entry module (default: process.ts). Tests put a stand-in for a compromised sandbox
   * process here, one that breaks the link protocol on purpose; it gets the same fork, fds, caps and walls.
   */
  entry?: string;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', `IsolateProcess option ${name} must be a positive number, got ${String(value)}`);
  return value;
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

  readonly #options: ResolvedProcessOptions;
  #gen: ProcessHandle | undefined;
  #spawns = 0;

  constructor(options: IsolateProcessOptions = {}) {
    this.#options = {
      rssLimitMb: options.rssLimitMb === undefined ? undefined : positive('rssLimitMb', options.rssLimitMb, 0),
      rssBaselineMb: positive('rssBaselineMb', options.rssBaselineMb, 192),
      rssPerMemoryMb: positive('rssPerMemoryMb', options.rssPerMemoryMb, 2),
      rssIntervalMs: positive('rssIntervalMs', options.rssIntervalMs, 100),
      graceMs: positive('graceMs', options.graceMs, 2000),
      maxResultBytes: positive('maxResultBytes', options.maxResultBytes, DEFAULT_MAX_RESULT_BYTES),
      spawnTimeoutMs: positive('spawnTimeoutMs', options.spawnTimeoutMs, 20_000),
      procRoot: options.procRoot ?? '/proc',
      entry: options.entry,
    };
    if (typeof this.#options.procRoot !== 'string' || this.#options.procRoot === '') throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', 'IsolateProcess option procRoot must be a non-empty path');
  }

  get options(): Readonly<ResolvedProcessOptions> {
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
  async _acquire(sandbox: HostedSandbox): Promise<ProcessHandle> {
    let gen = this.#gen;
    if (!gen || gen.exited) {
      gen = new ProcessHandle(this.#options, (g) => {
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
