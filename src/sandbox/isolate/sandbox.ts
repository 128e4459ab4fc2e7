// The sandbox state machine of the isolate runtime: one extension's isolate inside a sandbox process (handle.ts,
// shared through registry.ts). States: idle → starting → running → stopping → stopped, or → dead when its isolate
// or process died (a new sandbox must be created). Every call carries the host's own wall (deadline + grace: the
// process did not answer, it is killed); every ctx op goes to the ContextHandler it was created with.
import { debuglog } from 'node:util';
import { PlinthError, type ErrorCode } from '../../errors.ts';
import { checkTimeout, grantedEnv, startTimedOut } from '../options.ts';
import { CallTable } from '../link/call-table.ts';
import type { CallOptions, ContextHandler, ContextOp, Sandbox, SandboxExit, SandboxSpec } from '../types.ts';
import type { HealthResult, Json, PlinthEvent } from '../../sdk/index.ts';
import { MAX_INPUT_CHARS, type CtxResult, type ExitParams, type InvokeKind, type InvokeParams, type InvokeResult, type LoadParams, type LoadResult } from './protocol.ts';
import type { HostedSandbox, ProcessEnd, ProcessHandle } from './handle.ts';
import { IsolateProcess } from './registry.ts';

const debug = debuglog('plinth:sandbox');

/** Absolute paths in a host error message would tell the guest about the host: they are replaced. */
function scrub(message: string): string {
  return message.replace(/(^|[\s'"(=])\/[^\s'"()]+/g, '$1<path>').slice(0, 4096);
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

interface PendingCall<T = unknown> {
  callId: number;
  deadline: number;
  timeoutMs: number;
  gen: ProcessHandle;
  settle(err: PlinthError | undefined, result?: T): void;
}

/** How often the host's wall looks at the calls in flight (a sweep, not a timer per call: issue 14). */
const WALL_SWEEP_MS = 100;

const wholeResult = (r: InvokeResult): InvokeResult => r;
const valueOf = (r: InvokeResult): Json => r.value;

export class IsolateSandbox implements Sandbox, HostedSandbox {
  readonly runtime = 'isolate' as const;
  readonly spec: SandboxSpec;
  readonly #context: ContextHandler;
  readonly #process: IsolateProcess;
  readonly #dedicated: boolean;
  readonly #cpuLimitMs: number | undefined;
  #state: State = 'idle';
  #gen: ProcessHandle | undefined;
  #start: Promise<void> | undefined;
  #exit: SandboxExit | undefined;
  #nextCallId = 1;
  readonly #pending = new CallTable<number, PendingCall>();
  /** The host's wall: a sweep while calls are in flight (it stops itself when it finds none). */
  #wall: NodeJS.Timeout | undefined;
  readonly #exitListeners: Array<(exit: SandboxExit) => void> = [];
  readonly #usage: IsolateUsage = { calls: 0, cpuMs: 0, loadCpuMs: 0 };

  constructor(spec: SandboxSpec, context: ContextHandler, options: IsolateSandboxOptions = {}) {
    // Checked as the worker runtime checks its spec: a bad spec fails the start with EXTENSION_LOAD_FAILED naming the
    // field (never a TypeError from one runtime and a PlinthError from the other).
    const refuse = (what: string) => new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${String(spec?.id)}: ${what}`, { extension: String(spec?.id) });
    if (typeof context !== 'function') throw refuse('context must be a ContextHandler function');
    for (const key of ['instanceId', 'id', 'version', 'dir', 'mainPath'] as const) {
      if (typeof spec?.[key] !== 'string' || spec[key] === '') throw refuse(`spec.${key} must be a non-empty string`);
    }
    for (const key of ['memoryMb', 'callTimeoutMs'] as const) {
      const value = spec.limits?.[key];
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw refuse(`limits.${key} must be a positive number, got ${String(value)}`);
    }
    if (options.cpuLimitMs !== undefined && !(Number.isFinite(options.cpuLimitMs) && options.cpuLimitMs > 0)) throw refuse(`cpuLimitMs must be a positive number, got ${String(options.cpuLimitMs)}`);
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
      const env = await grantedEnv(this.spec, this.#context);
      const gen = await this.#process._acquire(this);
      this.#gen = gen;
      if (this.#state !== 'starting') throw this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox was stopped while starting');
      // Loading runs module evaluation, initialize() and start(), together bounded by startTimeoutMs in the process.
      const bound = this.spec.limits.startTimeoutMs ?? this.spec.limits.callTimeoutMs;
      const params: LoadParams = { spec: this.spec, maxResultBytes: this.#process.options.maxResultBytes, env };
      const result = await this.#track<LoadResult>(gen, 0, bound, (done) => void gen.request('load', params).then((r) => done(undefined, r as LoadResult), done));
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
   * sandbox process is killed (its isolate thread is stuck where dispose() cannot reach it). The wall is a sweep
   * every WALL_SWEEP_MS while calls are in flight, so a stuck process is killed within that much after its bound.
   */
  #track<T>(gen: ProcessHandle, callId: number, timeoutMs: number, send: (done: (err: unknown, result?: T) => void) => void, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      let done = false;
      const onAbort = () => {
        entry.settle(this.#error('PLINTH_ERR_CANCELLED', 'the call was cancelled by its caller'));
        if (!gen.exited) gen.peer.notify('abort', { instanceId: this.spec.instanceId, callId });
      };
      const entry: PendingCall<T> = {
        callId,
        deadline,
        timeoutMs,
        gen,
        settle: (err, result) => {
          if (done) return;
          done = true;
          signal?.removeEventListener('abort', onAbort);
          this.#pending.delete(callId);
          if (err) reject(err);
          else resolve(result!);
        },
      };
      this.#pending.set(callId, entry);
      if (this.#wall === undefined) {
        this.#wall = setInterval(() => this.#sweepWall(), WALL_SWEEP_MS);
        this.#wall.unref();
      }
      if (signal) {
        if (signal.aborted) {
          entry.settle(this.#error('PLINTH_ERR_CANCELLED', 'the call was cancelled by its caller before it ran'));
          return;
        }
        signal.addEventListener('abort', onAbort, { once: true });
      }
      send((err, r) => {
        if (err === undefined) return entry.settle(undefined, r);
        // A closed link means the process died: its exit handler settles this call with the reason's code.
        if (gen.peer.closed) return;
        entry.settle(err instanceof PlinthError ? err : this.#error('PLINTH_ERR_SANDBOX_CRASHED', err instanceof Error ? err.message : JSON.stringify(err)));
      });
    });
  }

  #sweepWall(): void {
    if (this.#pending.size === 0) {
      clearInterval(this.#wall);
      this.#wall = undefined;
      return;
    }
    const now = Date.now();
    const graceMs = this.#process.options.graceMs;
    for (const p of this.#pending.values()) {
      if (now < p.deadline + graceMs) continue;
      p.gen.kill({
        reason: 'killed',
        code: 'PLINTH_ERR_STAGE_TIMEOUT',
        detail: `extension ${this.spec.id}: a call ran past its timeout of ${p.timeoutMs} ms and the sandbox process did not answer within ${graceMs} ms more`,
        trigger: { instanceId: this.spec.instanceId, callId: p.callId },
      });
      return;
    }
  }

  /** One call into the isolate; `pick` takes what the caller wants of the result (never throws: a failure rejects). */
  #invoke<T>(pick: (r: InvokeResult) => T, kind: InvokeKind, name: string | undefined, input: Json | undefined, timeoutMs: number, options: Partial<CallOptions> = {}, allowStopping = false): Promise<T> {
    try {
      return this.#send(pick, kind, name, input, timeoutMs, options, allowStopping);
    } catch (err) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- a PlinthError (or JSON.stringify's own error)
      return Promise.reject(err);
    }
  }

  // No async frame on the per-call path (issue 14): one promise per call, the call record's (#track).
  #send<T>(pick: (r: InvokeResult) => T, kind: InvokeKind, name: string | undefined, input: Json | undefined, timeoutMs: number, options: Partial<CallOptions>, allowStopping: boolean): Promise<T> {
    const gen = this.#gen;
    if (this.#state !== 'running' && !(allowStopping && this.#state === 'stopping')) throw this.#unavailable();
    if (!gen || gen.exited) throw this.#error('PLINTH_ERR_SANDBOX_CRASHED', 'its sandbox process is gone');
    checkTimeout(this.spec.id, timeoutMs);
    const callId = this.#nextCallId++;
    const params: InvokeParams = { instanceId: this.spec.instanceId, callId, kind, timeoutMs, cpuLimitMs: this.#cpuLimitMs ?? timeoutMs };
    if (name !== undefined) params.name = name;
    if (options.runId !== undefined) params.runId = options.runId;
    if (options.traceId !== undefined) params.traceId = options.traceId;
    // Serialised once, here; it travels as the frame's raw payload and is parsed once, inside the isolate.
    const inputJson = input === undefined ? undefined : JSON.stringify(input);
    if (inputJson !== undefined && inputJson.length > MAX_INPUT_CHARS) {
      throw new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${this.spec.id}: the input is ${inputJson.length} characters of JSON; at most ${MAX_INPUT_CHARS} are sent into a sandbox process`, {
        extension: this.spec.id,
        hint: 'pass a smaller input (write large data to a file the extension may read, and pass its path)',
      });
    }
    return this.#track<T>(
      gen,
      callId,
      timeoutMs,
      (done) =>
        gen.invoke(params, inputJson, (err, result) => {
          if (result === undefined) return done(err);
          // Counted when the isolate answered (a call cancelled meanwhile used its CPU all the same).
          this.#usage.calls++;
          this.#usage.cpuMs += result.cpuMs;
          done(undefined, pick(result));
        }),
      options.signal,
    );
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

  call(stage: string, input: Json, options: CallOptions): Promise<Json> {
    if (this.#state === 'running' && !this.spec.stages.includes(stage)) {
      return Promise.reject(new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `extension ${this.spec.id} declares no stage "${stage}" (it declares: ${this.spec.stages.join(', ') || 'none'})`, { extension: this.spec.id }));
    }
    return this.#invoke(valueOf, 'stage', stage, input, options.timeoutMs, options);
  }

  async deliver(event: PlinthEvent, options: CallOptions): Promise<void> {
    await this.#invoke(wholeResult, 'event', undefined, event as unknown as Json, options.timeoutMs, options);
  }

  async health(timeoutMs: number): Promise<HealthResult> {
    const result = await this.#invoke(wholeResult, 'health', undefined, undefined, timeoutMs);
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
        await this.#invoke(wholeResult, 'stop', undefined, undefined, timeoutMs, {}, true).catch((err: unknown) => debug('extension %s: stop() failed: %s', this.spec.id, String(err)));
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
    for (const p of this.#pending.values()) p.settle(this.#error('PLINTH_ERR_SHUTDOWN', 'the sandbox was stopped during the call'));
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
    for (const p of this.#pending.values()) p.settle(this.#error(codeFor(p), typeof message === 'string' ? message : message(p)));
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
      for (const p of this.#pending.values()) p.settle(this.#error('PLINTH_ERR_SHUTDOWN', end.detail));
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
