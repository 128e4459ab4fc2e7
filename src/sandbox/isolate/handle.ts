// One forked sandbox process, as the host holds it: the child, the Peer over its IPC channel, the sandboxes it
// hosts, its memory watchdog, and the one place that decides why it ended. An IsolateProcess (registry.ts) forks a
// new handle when the previous process has died.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import { Peer, childTransport } from '../link/index.ts';
import { PlinthError, type ErrorCode } from '../../errors.ts';
import type { ContextOp, SandboxExit, SandboxSpec } from '../types.ts';
import { MIN_MEMORY_MB, type CtxParams, type CtxResult, type ExitParams } from './protocol.ts';
import { MemoryWatchdog } from './watchdog.ts';

const debug = debuglog('plinth:sandbox');
const PROCESS_ENTRY = fileURLToPath(new URL('./process.ts', import.meta.url));
// Installed from a tarball (under node_modules, where Node strips no types) the process entry needs the
// launcher's type-stripping hook (bin/strip-types.js).
const STRIP_TYPES_ARGS = /[\\/]node_modules[\\/]/.test(PROCESS_ENTRY) ? ['--import', new URL('../../../bin/strip-types.js', import.meta.url).href] : [];

/** How long after its link closed a sandbox process has to report its exit (code or signal) before the link is blamed. */
const LINK_CLOSE_GRACE_MS = 1000;

export interface ResolvedProcessOptions {
  rssLimitMb: number | undefined;
  rssBaselineMb: number;
  rssPerMemoryMb: number;
  rssIntervalMs: number;
  graceMs: number;
  maxResultBytes: number;
  spawnTimeoutMs: number;
  procRoot: string;
}

/** Why a sandbox process ended, decided by whoever killed it (or 'crashed' if nobody did). */
export interface ProcessEnd {
  reason: SandboxExit['reason'];
  code: ErrorCode;
  detail: string;
  trigger?: { instanceId: string; callId: number };
}

/** What a handle needs of a sandbox it hosts (sandbox.ts implements it; the handle never imports it). */
export interface HostedSandbox {
  readonly spec: SandboxSpec;
  /** The process ended (killed by a watchdog, crashed, or shut down). */
  _processDied(end: ProcessEnd): void;
  /** Its isolate died on its own inside the live process. */
  _guestDied(p: ExitParams): void;
  /** A ctx op from its isolate. */
  _ctx(op: ContextOp): Promise<CtxResult>;
}

const liveChildren = new Set<ChildProcess>();
// Nothing may outlive the host: a sandbox process whose host exits is killed with it.
process.once('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

export class ProcessHandle {
  readonly child: ChildProcess;
  readonly peer: Peer;
  readonly sandboxes = new Map<string, HostedSandbox>();
  readonly ready: Promise<void>;
  exited = false;
  readonly #options: ResolvedProcessOptions;
  readonly #onExit: (handle: ProcessHandle) => void;
  readonly #watchdog: MemoryWatchdog;
  #end: ProcessEnd | undefined;
  #inflight = 0;
  #ready = false;

  constructor(options: ResolvedProcessOptions, onExit: (handle: ProcessHandle) => void) {
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
    this.#watchdog = new MemoryWatchdog({
      procRoot: options.procRoot,
      intervalMs: options.rssIntervalMs,
      pid: () => (this.exited ? undefined : this.child.pid),
      canAsk: () => this.#ready && !this.exited,
      askRss: async () => ((await this.peer.request('rss', {})) as { rssBytes: number }).rssBytes,
      limitMb: () => this.rssLimitMb,
      onOver: (rss, limit) => this.kill({ reason: 'out-of-memory', code: 'PLINTH_ERR_OUT_OF_MEMORY', detail: `the isolate sandbox process used ${Math.round(rss / 1048576)} MB of memory (RSS), over its limit of ${limit} MB` }),
    });
    const onGone = (detail: string) => {
      if (this.exited) return;
      this.exited = true;
      liveChildren.delete(this.child);
      clearTimeout(spawnTimer);
      clearTimeout(linkTimer);
      this.#watchdog.stop();
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
  }

  get rssLimitMb(): number {
    if (this.#options.rssLimitMb !== undefined) return this.#options.rssLimitMb;
    let sum = 0;
    for (const s of this.sandboxes.values()) sum += Math.max(MIN_MEMORY_MB, s.spec.limits.memoryMb);
    return this.#options.rssBaselineMb + this.#options.rssPerMemoryMb * sum;
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
