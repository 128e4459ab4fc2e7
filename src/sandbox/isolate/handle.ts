// One forked sandbox process, as the host holds it: the child, the framed link to it (a pipe: fd 4 of the child)
// with the Peer over it, the sandboxes it hosts, its memory watchdog, and the one place that decides why it ended.
// An IsolateProcess (registry.ts) forks a new handle when the previous process has died.
import { fork, type ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import { Peer } from '../link/index.ts';
import { FrameLink } from '../link/frames.ts';
import { CallTable } from '../link/call-table.ts';
import { PlinthError, type ErrorCode } from '../../errors.ts';
import type { ContextOp, SandboxExit, SandboxSpec } from '../types.ts';
import type { Json } from '../../sdk/index.ts';
import { INVOKE_METHOD, PROCESS_ENV, PROCESS_EXEC_ARGV, frameCaps, isolateHeapLimitMb, type CtxParams, type CtxResult, type ExitParams, type InvokeParams, type InvokeReply, type InvokeResult } from './protocol.ts';
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
  /** Entry module of the sandbox process (default process.ts). */
  entry: string | undefined;
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

/** Told once how a raw invoke ended: its result, or why it failed. */
export type InvokeDone = (err: unknown, result?: InvokeResult) => void;

export class ProcessHandle {
  readonly child: ChildProcess;
  readonly link: FrameLink;
  readonly peer: Peer;
  readonly sandboxes = new Map<string, HostedSandbox>();
  readonly ready: Promise<void>;
  exited = false;
  /**
   * Set when a terminal's or supervisor's signal (SIGINT, SIGTERM, SIGHUP) killed the process before it was ready
   * and the host had not asked for it: it was forked in the instant before it left the host's process group, so
   * a Ctrl-C meant for the host reached it too. Nothing ran in it yet; the registry forks it again once.
   */
  signalledWhileForking: NodeJS.Signals | undefined;
  readonly #options: ResolvedProcessOptions;
  readonly #onExit: (handle: ProcessHandle) => void;
  readonly #watchdog: MemoryWatchdog;
  #end: ProcessEnd | undefined;
  #inflight = 0;
  #ready = false;
  readonly #rawPending = new CallTable<string, InvokeDone>();
  #nextRawId = 1;

  constructor(options: ResolvedProcessOptions, onExit: (handle: ProcessHandle) => void) {
    this.#options = options;
    this.#onExit = onExit;
    this.child = fork(options.entry ?? PROCESS_ENTRY, [], {
      // isolated-vm needs --no-node-snapshot on Node >= 20; the heap and allocator settings keep its RSS flat under
      // load (protocol.ts). The host's own flags (e.g. --test) are not inherited, nor is its environment: nothing
      // of the host's secrets sits in the process that runs untrusted code.
      execArgv: ['--no-node-snapshot', '--disable-warning=ExperimentalWarning', ...PROCESS_EXEC_ARGV, ...STRIP_TYPES_ARGS],
      env: { ...PROCESS_ENV },
      // fd 4: the framed link (a socketpair). The IPC channel (fd 3) carries nothing: it is the process's lifeline
      // (it kills itself when the channel closes, i.e. when the host is gone).
      stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'pipe'],
      serialization: 'json',
      // Its own process group (and session): a terminal's Ctrl-C goes to the host's group only, even while this
      // process is still booting (before process.ts can ignore SIGINT). The host stops it; if the host dies, the
      // closed IPC channel ends it (process.ts).
      detached: true,
    });
    liveChildren.add(this.child);
    this.child.channel?.unref();
    this.link = new FrameLink(this.child.stdio[4] as Duplex, frameCaps(options.maxResultBytes));
    // A malformed frame is a crash of the process that sent it: it is killed, its calls fail coded, the
    // supervisor restarts its extensions.
    this.link.onError((err) => this.kill({ reason: 'crashed', code: 'PLINTH_ERR_SANDBOX_CRASHED', detail: `the sandbox process broke the link protocol: ${err.message}` }));
    this.link.onRaw((m, payload) => this.#rawReply(m, payload));
    this.peer = new Peer(this.link);
    this.peer.onClose((reason) => {
      const pending = this.#rawPending.values();
      this.#rawPending.clear();
      for (const done of pending) {
        this.#release();
        done(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `link closed during the call: ${reason}`));
      }
    });
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
      // Before ready the sandboxes are only waiting for it (registry._acquire): they hear of it there.
      if (this.signalledWhileForking === undefined) for (const sandbox of [...this.sandboxes.values()]) sandbox._processDied(end);
      this.sandboxes.clear();
      this.#onExit(this);
    };
    this.child.once('exit', (code, signal) => {
      if (!this.#ready && !this.#end && (signal === 'SIGINT' || signal === 'SIGTERM' || signal === 'SIGHUP')) this.signalledWhileForking = signal;
      onGone(signal ? `was killed by ${signal}` : `exited with code ${code}`);
    });
    this.child.once('error', (err) => {
      onGone(`could not run: ${err.message}`);
      this.child.kill('SIGKILL');
    });
  }

  /**
   * The RSS wall: what the process needs itself (rssBaselineMb) plus, per hosted isolate, rssPerMemoryMb × the heap
   * limit isolated-vm enforces for it (its declared memoryMb plus the argument headroom): the heap, and as much
   * again for what an isolate legitimately holds outside it (external strings of in-flight calls, ArrayBuffers).
   */
  get rssLimitMb(): number {
    if (this.#options.rssLimitMb !== undefined) return this.#options.rssLimitMb;
    let sum = 0;
    for (const s of this.sandboxes.values()) sum += isolateHeapLimitMb(s.spec.limits.memoryMb);
    return this.#options.rssBaselineMb + this.#options.rssPerMemoryMb * sum;
  }

  // The link is ref'd only while a request is in flight: idle sandbox processes never hold the host open.
  #hold(): void {
    if (this.#inflight++ === 0) {
      this.child.ref();
      this.link.ref();
    }
  }

  #release(): void {
    if (--this.#inflight === 0) {
      this.child.unref();
      this.link.unref();
    }
  }

  /**
   * A stage call (or hook) on the raw path: the params as the envelope, the input's JSON text as the payload; the
   * result's JSON text comes back as the reply's payload and is parsed here, once. `done` hears the end (a callback,
   * not a promise: this is the per-call path, and the sandbox's own call record already is the promise).
   */
  invoke(params: InvokeParams, inputJson: string | undefined, done: InvokeDone): void {
    if (this.peer.closed || this.link.closed) return done(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', 'link closed: the sandbox process is gone'));
    const id = `c${this.#nextRawId++}`;
    this.#hold();
    this.#rawPending.set(id, done);
    this.link.sendRaw({ jsonrpc: '2.0', id, method: INVOKE_METHOD, params }, inputJson);
  }

  /** Takes the replies to raw invokes (string ids); everything else goes on to the Peer. */
  #rawReply(m: Record<string, unknown>, payload: string | undefined): boolean {
    if (typeof m.id !== 'string' || typeof m.method === 'string') {
      if (payload !== undefined) this.#malformed('a raw payload on a message that is not an invoke reply');
      return payload !== undefined;
    }
    const done = this.#rawPending.get(m.id);
    if (!done) {
      this.#malformed(`a reply to invoke ${m.id.slice(0, 32)}, which is not pending`);
      return true;
    }
    this.#rawPending.delete(m.id);
    this.#release();
    const error = m.error as { data?: unknown } | undefined;
    if (error !== undefined) {
      if (payload !== undefined || typeof error !== 'object' || error === null) return this.#malformed('an invoke error with a payload'), true;
      done(error.data !== undefined ? PlinthError.fromJSON(error.data) : new PlinthError('PLINTH_ERR_LINK_PROTOCOL', 'the sandbox process answered invoke with a protocol error'));
      return true;
    }
    const r = m.result as Partial<InvokeReply> | undefined;
    if (typeof r !== 'object' || r === null || typeof r.absent !== 'boolean' || typeof r.cpuMs !== 'number' || typeof r.wallMs !== 'number') {
      this.#malformed('an invoke reply without absent/cpuMs/wallMs');
      return true;
    }
    let value: Json = null;
    if (payload !== undefined) {
      // The isolate caps a result at maxResultBytes code units before it leaves; a longer one is a lie.
      if (payload.length > this.#options.maxResultBytes) return this.#malformed(`a result of ${payload.length} characters, over maxResultBytes ${this.#options.maxResultBytes}`), true;
      try {
        value = JSON.parse(payload) as Json;
      } catch {
        this.#malformed('a result that is not JSON');
        return true;
      }
    }
    done(undefined, { value, absent: r.absent, cpuMs: r.cpuMs, wallMs: r.wallMs });
    return true;
  }

  /** The process broke the protocol: it is killed (its pending calls fail SANDBOX_CRASHED when it has gone). */
  #malformed(what: string): void {
    this.kill({ reason: 'crashed', code: 'PLINTH_ERR_SANDBOX_CRASHED', detail: `the sandbox process broke the link protocol: ${what}` });
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
