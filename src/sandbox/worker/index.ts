// The `worker` runtime (DESIGN.md §4): one piscina pool of worker threads per extension, full Node APIs.
//
// A WORKER IS NOT A SECURITY BOUNDARY. It isolates crashes, hangs and memory blow-ups of trusted extensions from the
// host and from each other; it does not contain hostile code. Extension code in a thread can use node:fs,
// node:child_process, the network and everything else Node offers directly (process.env starts empty, so the
// host's variables are not handed out) — ctx and its grants
// (src/policy) are the supported way out and are enforced for every op sent through ctx, but nothing stops code that
// does not use ctx. Untrusted extensions run as `isolate`.
//
// Threads: `threads` (default 1) threads per pool, each importing the extension's module and running
// initialize()/start() on its own. Module state lives per thread, so with several threads an extension has several
// independent module instances (counters, caches, `let` variables are not shared). piscina owns each thread's
// lifecycle (start, resource limits, termination) and runs its ready / health / stop tasks; stage calls and event
// deliveries go over the thread's own MessagePort instead (issue 14: a piscina task per call cost a third of the
// throughput), inputs and results as JSON text. `spec.limits.concurrency` calls run at once per thread so async
// stages overlap; the port is ref'd only while calls are in flight on it, so an idle sandbox never keeps the host
// alive.
//
// Failure containment: any failure that takes a thread down (a call past its deadline that ignores ctx.signal, out of
// memory, process.exit(), an uncaught exception — seen as the thread's `exit` and the pool's `error` events) ends
// the whole sandbox: the pool is destroyed, every pending call is
// rejected, onExit fires once ('crashed' | 'out-of-memory' | 'killed') and further calls reject SANDBOX_CRASHED.
// Restarting (with backoff) is the supervisor's job, not this file's.
import { debuglog } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { PlinthError, type ErrorCode } from '../../errors.ts';
import { CallTable } from '../link/call-table.ts';
import { checkTimeout, startTimedOut } from '../options.ts';
import type { Json, PlinthEvent, HealthResult } from '../../sdk/index.ts';
import type { CallOptions, ContextHandler, Sandbox, SandboxExit, SandboxSpec } from '../types.ts';
import { isCtxHello, MAX_BATCH, MAX_RESULT_BYTES, type CallMessage, type CtxFailure, type CtxHello, type HostMessage, type Task, type TaskResult, type ThreadData, type ThreadMessage, type WireError } from './protocol.ts';
import { plainJsonText } from './plain-json.ts';

export { MAX_RESULT_BYTES } from './protocol.ts';

const debug = debuglog('plinth:sandbox:worker');
// Plain JavaScript (type-checked through JSDoc): a .ts entry makes every worker thread load Node's type
// stripper, about 11 MB of RSS per thread (measured: 22.6 MB vs 11.7 MB for an idle thread).
const THREAD_FILE = fileURLToPath(new URL('./thread.js', import.meta.url));

/** After a deadline or a cancel, a running call gets this long to honour ctx.signal before its thread is killed. */
export const KILL_GRACE_MS = 500;
/** How long ctx.env() may block its thread waiting for the host. */
const SYNC_OP_TIMEOUT_MS = 5_000;
/** destroy() of a pool waits for its threads' exit events; never longer than this. */
const DESTROY_BOUND_MS = 2_000;

/** piscina's error when a thread exits with a task in flight; it carries no stack of the extension. */
const PISCINA_EXIT = /^worker exited with code: (-?\d+)/;
const LOAD_HINT = 'fix the error in its module, initialize() or start(); `plinth dev` shows it with file and line';

export interface WorkerSandboxOptions {
  /** Threads in the pool (default 1). More threads = more module instances of the extension, not shared state. */
  threads?: number;
}

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed' | 'dead';

/** A thread's port, and how many calls are in flight on it (the port is ref'd while that is above 0). */
interface Link {
  hello: CtxHello;
  running: number;
  /** Calls dispatched in this tick, posted together at its end (one message per tick, not one per call). */
  outbox: CallMessage[];
}

/** One call or event delivery, from call() until both its caller and its thread are done with it. */
interface Pending {
  callId: number;
  message: CallMessage;
  label: string;
  timeoutMs: number;
  resolve: (value: Json) => void;
  reject: (err: PlinthError) => void;
  /** The caller has its answer. */
  settled: boolean;
  /** Sent to a thread (running there). */
  dispatched: boolean;
  /** The thread on which it runs. */
  link: Link | undefined;
  /** The thread answered: it is done with it. */
  taskDone: boolean;
  /** The deadline, and after it the kill of a thread that ignores ctx.signal. */
  timer: NodeJS.Timeout | undefined;
  killTimer: NodeJS.Timeout | undefined;
  cleanup: (() => void) | undefined;
}

function clearTimers(p: Pending): void {
  clearTimeout(p.timer);
  clearTimeout(p.killTimer);
}

function unrefTimer(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}

function positiveInt(value: number, what: string, spec: SandboxSpec): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id}: ${what} must be a positive integer, got ${String(value)}`, { extension: spec.id });
  }
  return value;
}

function serialiseCtxError(err: unknown): CtxFailure {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const hint = (err as { hint?: unknown }).hint;
    return { message: err.message, name: err.name, ...(typeof code === 'string' ? { code } : {}), ...(typeof hint === 'string' ? { hint } : {}) };
  }
  return { message: String(err) };
}

class WorkerSandbox implements Sandbox {
  readonly runtime = 'worker' as const;
  readonly spec: SandboxSpec;
  readonly #context: ContextHandler;
  readonly #threads: number;
  readonly #concurrency: number;
  #state: State = 'idle';
  #pool: Piscina<Task, TaskResult> | undefined;
  #startPromise: Promise<void> | undefined;
  #stopPromise: Promise<void> | undefined;
  #destroyPromise: Promise<void> | undefined;
  /** True while we tear the pool down ourselves: thread exits and rejections are then expected. */
  #destroying = false;
  readonly #links: Link[] = [];
  /** Called once every thread has handed over its port (start() waits for that). */
  #allLinked: (() => void) | undefined;
  readonly #queue: Pending[] = [];
  readonly #running = new CallTable<number, Pending>();
  #nextCallId = 1;
  readonly #exitListeners: Array<(exit: SandboxExit) => void> = [];
  #exit: SandboxExit | undefined;
  /** The health probe in flight, if any. */
  #probe: Promise<HealthResult> | undefined;

  constructor(spec: SandboxSpec, context: ContextHandler, options: WorkerSandboxOptions) {
    this.spec = spec;
    this.#context = context;
    this.#threads = positiveInt(options.threads ?? 1, 'threads', spec);
    this.#concurrency = positiveInt(spec.limits.concurrency, 'limits.concurrency', spec);
    positiveInt(spec.limits.memoryMb, 'limits.memoryMb', spec);
  }

  /** The state now (a method, so TypeScript does not narrow it across awaits). */
  #in(...states: State[]): boolean {
    return states.includes(this.#state);
  }

  // --- lifecycle ---------------------------------------------------------------------------------------------

  start(): Promise<void> {
    this.#startPromise ??= this.#start();
    return this.#startPromise;
  }

  async #start(): Promise<void> {
    if (this.#state !== 'idle') throw this.#unavailable();
    this.#state = 'starting';
    const began = performance.now();
    const spec = this.spec;
    const workerData: ThreadData = {
      instanceId: spec.instanceId,
      id: spec.id,
      version: spec.version,
      mainPath: spec.mainPath,
      config: spec.config,
      stages: spec.stages,
      syncTimeoutMs: SYNC_OP_TIMEOUT_MS,
      maxResultBytes: MAX_RESULT_BYTES,
      maxBatch: MAX_BATCH,
    };
    const memoryMb = spec.limits.memoryMb;
    const pool = new Piscina<Task, TaskResult>({
      filename: THREAD_FILE,
      minThreads: this.#threads,
      maxThreads: this.#threads,
      // Only lifecycle tasks are piscina's (calls go over the thread's port, limited by our own queue, #pump): a
      // health probe and stop() may overlap.
      concurrentTasksPerWorker: 2,
      // Fair queueing: without it a task that cannot be dispatched goes to the back and can starve (DESIGN.md §10).
      stricterFIFO: true,
      // piscina's default parks an idle thread in Atomics.wait(), which freezes the extension's own timers and
      // our ctx port between tasks; a plugin thread must keep its event loop running.
      atomics: 'disabled',
      resourceLimits: {
        maxOldGenerationSizeMb: memoryMb,
        maxYoungGenerationSizeMb: Math.max(2, Math.min(32, Math.floor(memoryMb / 8))),
      },
      workerData,
      recordTiming: false,
      // Not a security boundary, but no reason to hand out the host's secrets either: environment variables
      // reach an extension only through ctx.env, for the names its manifest grants.
      env: {},
    });
    this.#pool = pool;
    pool.on('message', (message: unknown) => {
      if (isCtxHello(message, spec.instanceId)) this.#link(message);
    });
    // An error with no task in flight (a timer threw between calls, or OOM outside a call). Without a listener
    // piscina's 'error' event would throw in the host.
    pool.on('error', (err: unknown) => this.#threadFailed(err, undefined));
    for (const worker of pool.threads) this.#watch(worker);

    // One `ready` task per thread: the least-busy balancer hands each to a different idle thread.
    const timeoutMs = spec.limits.startTimeoutMs ?? spec.limits.callTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadlineError = startTimedOut(spec.id, timeoutMs);
    const deadline = new Promise<never>((_, reject) => {
      timer = unrefTimer(() => reject(deadlineError), timeoutMs);
    });
    // Each thread's port arrives on parentPort, a channel apart from its `ready` answer: either may come first.
    const linked = new Promise<void>((resolve) => {
      if (this.#links.length >= this.#threads) resolve();
      else this.#allLinked = resolve;
    });
    try {
      const results = await Promise.race([Promise.all(Array.from({ length: this.#threads }, () => pool.run({ type: 'ready' }))), deadline]);
      if (results.every((r) => r.ok)) await Promise.race([linked, deadline]);
      const failed = results.find((r): r is Extract<TaskResult, { ok: false }> => !r.ok);
      if (failed) {
        throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id} failed to load: ${failed.error.message}`, {
          extension: spec.id,
          file: spec.mainPath,
          ...(failed.error.stack ? { extensionStack: failed.error.stack } : {}),
          hint: LOAD_HINT,
        });
      }
    } catch (err) {
      clearTimeout(timer);
      if (this.#in('stopping', 'stopped')) {
        // stop() was called while the extension was still loading.
        await this.#destroy();
        throw this.#unavailable();
      }
      this.#state = 'failed';
      await this.#destroy();
      if (err instanceof PlinthError && (err.code === 'PLINTH_ERR_EXTENSION_LOAD_FAILED' || err === deadlineError)) throw err;
      // The thread died while loading (process.exit(), OOM, an uncaught exception in a timer) or never answered.
      const e = err as { message?: unknown; stack?: unknown; code?: unknown } | undefined;
      const message = typeof e?.message === 'string' ? e.message : String(err);
      const fromExtension = err !== deadlineError && e?.code !== 'ERR_WORKER_OUT_OF_MEMORY' && !PISCINA_EXIT.test(message) && typeof e?.stack === 'string';
      throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id} failed to load: ${message}`, {
        extension: spec.id,
        file: spec.mainPath,
        ...(fromExtension ? { extensionStack: e.stack as string } : {}),
        hint: LOAD_HINT,
        cause: err,
      });
    }
    clearTimeout(timer);
    if (!this.#in('starting')) throw this.#unavailable();
    this.#state = 'running';
    debug('%s: %d thread(s) ready in %d ms', spec.id, this.#threads, Math.round(performance.now() - began));
  }

  stop(timeoutMs: number): Promise<void> {
    this.#stopPromise ??= this.#stop(timeoutMs).catch((err: unknown) => debug('%s: stop: %o', this.spec.id, err));
    return this.#stopPromise;
  }

  async #stop(timeoutMs: number): Promise<void> {
    const state = this.#state;
    if (state === 'idle' || state === 'failed' || state === 'dead' || state === 'stopped') {
      if (state === 'idle') this.#state = 'stopped';
      await this.#destroy();
      return;
    }
    this.#state = 'stopping';
    // Calls that have not started are not run.
    for (const p of this.#queue.splice(0)) this.#settle(p, this.#error('PLINTH_ERR_SHUTDOWN', `extension ${this.spec.id} is stopping; ${p.label} was not run`));
    const pool = this.#pool;
    if (pool && state === 'running') {
      // VS Code's deactivate(): the extension's stop() is time-boxed; a hanging one is cut off by destroying the pool.
      let timer: NodeJS.Timeout | undefined;
      const bound = Math.max(0, timeoutMs);
      await Promise.race([
        pool.run({ type: 'stop', callId: this.#nextCallId++ }).then(
          (r) => {
            if (!r.ok) debug('%s: stop() threw: %s', this.spec.id, r.error.message);
          },
          () => undefined,
        ),
        new Promise<void>((resolve) => (timer = unrefTimer(resolve, bound))),
      ]);
      clearTimeout(timer);
    }
    this.#state = 'stopped';
    for (const p of this.#running.values()) this.#settle(p, this.#error('PLINTH_ERR_SHUTDOWN', `extension ${this.spec.id} was stopped during ${p.label}`));
    await this.#destroy();
  }

  onExit(listener: (exit: SandboxExit) => void): void {
    this.#exitListeners.push(listener);
  }

  // --- calls ---------------------------------------------------------------------------------------------

  call(stage: string, input: Json, options: CallOptions): Promise<Json> {
    if (!this.spec.stages.includes(stage)) {
      return Promise.reject(
        new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `extension ${this.spec.id} has no stage "${stage}"`, {
          extension: this.spec.id,
          hint: `declared stages: ${this.spec.stages.join(', ') || '(none)'}`,
        }),
      );
    }
    const text = plainJsonText(input, 'input');
    if ('error' in text) return Promise.reject(this.#notPlain(`the input of stage "${stage}"`, text.error));
    const callId = this.#nextCallId++;
    return this.#enqueue({ kind: 'call', callId, stage, input: text.json, runId: options.runId, traceId: options.traceId }, `stage "${stage}"`, options);
  }

  async deliver(event: PlinthEvent, options: CallOptions): Promise<void> {
    const text = plainJsonText(event, 'event');
    if ('error' in text) throw this.#notPlain(`the event ${event.topic}`, text.error);
    const callId = this.#nextCallId++;
    await this.#enqueue({ kind: 'event', callId, event: text.json }, `handleEvent(${event.topic})`, options);
  }

  /** A value that JSON would silently change on its way into the thread: refused, naming where and what. */
  #notPlain(what: string, problem: string): PlinthError {
    return this.#error('PLINTH_ERR_STAGE_INPUT_INVALID', `extension ${this.spec.id}: ${what} is not plain JSON data: ${problem}; nothing was run`, 'pass objects, arrays, strings, finite numbers, booleans and null (convert Dates, Maps, class instances first)');
  }

  /**
   * Runs healthCheck() in the thread's probe slot (piscina's one slot beyond `concurrency`). Probes never overlap: a
   * probe asked for while one runs shares its answer. At `timeoutMs` the probe is cancelled in the thread (its task
   * ends, the slot is free again); if the thread does not let go within KILL_GRACE_MS (healthCheck() blocks it),
   * the sandbox is ended ('killed'), naming healthCheck() — never a stage call waiting behind it.
   */
  health(timeoutMs: number): Promise<HealthResult> {
    this.#probe ??= this.#health(timeoutMs).finally(() => {
      this.#probe = undefined;
    });
    return this.#probe;
  }

  async #health(timeoutMs: number): Promise<HealthResult> {
    const pool = this.#pool;
    if (this.#state !== 'running' || !pool) throw this.#unavailable();
    checkTimeout(this.spec.id, timeoutMs);
    const callId = this.#nextCallId++;
    let timer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const task = pool.run({ type: 'health', callId });
    const taskDone = task.then(
      () => clearTimeout(killTimer),
      (err: unknown) => {
        clearTimeout(killTimer);
        this.#threadFailed(err, undefined);
      },
    );
    const result = await Promise.race([
      task.catch(() => {
        throw this.#unavailable();
      }),
      new Promise<never>((_, reject) => {
        timer = unrefTimer(() => {
          const message = `extension ${this.spec.id}: healthCheck() did not answer within ${timeoutMs} ms`;
          reject(this.#error('PLINTH_ERR_STAGE_TIMEOUT', message, 'make healthCheck() answer faster, or raise health.timeoutMs'));
          this.#abortCall(callId, 'PLINTH_ERR_STAGE_TIMEOUT', message);
          killTimer = unrefTimer(() => this.#crash('killed', `healthCheck() of extension ${this.spec.id} did not return within ${timeoutMs} ms and ignored cancellation for ${KILL_GRACE_MS} ms; its thread was terminated`, undefined), KILL_GRACE_MS);
        }, timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    void taskDone;
    if (!result.ok) throw this.#fromWire(result.error);
    return JSON.parse(result.json) as HealthResult;
  }

  #enqueue(message: CallMessage, label: string, options: CallOptions): Promise<Json> {
    if (this.#state !== 'running') return Promise.reject(this.#unavailable());
    const timeoutMs = options.timeoutMs;
    try {
      checkTimeout(this.spec.id, timeoutMs);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<Json>((resolve, reject) => {
      const p: Pending = { callId: message.callId, message, label, timeoutMs, resolve, reject, settled: false, dispatched: false, link: undefined, taskDone: false, timer: undefined, killTimer: undefined, cleanup: undefined };
      const signal = options.signal;
      if (signal) {
        if (signal.aborted) return reject(this.#cancelled(p, signal));
        const onAbort = () => this.#cancel(p, signal);
        signal.addEventListener('abort', onAbort, { once: true });
        p.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      // The deadline covers time spent waiting for a slot too: it is the caller's wall-clock bound.
      p.timer = unrefTimer(() => this.#deadline(p), timeoutMs);
      this.#queue.push(p);
      this.#pump();
    });
  }

  /** Sends queued calls to the least busy thread, at most `concurrency` per thread, so every call sent starts at once. */
  #pump(): void {
    while (this.#state === 'running' && this.#queue.length > 0) {
      const link = this.#freeLink();
      if (!link) return;
      const p = this.#queue.shift()!;
      p.dispatched = true;
      p.link = link;
      if (link.running++ === 0) link.hello.port.ref();
      this.#running.set(p.callId, p);
      const queued = link.outbox.push(p.message);
      if (queued === 1) process.nextTick(() => this.#flushOutbox(link));
      else if (queued >= MAX_BATCH) this.#flushOutbox(link);
    }
  }

  /**
   * Posts the calls dispatched to a thread during this tick as one message (issue 12: a postMessage per call was
   * the largest single cost of a call at 100 in flight), at most MAX_BATCH at a time. Plain data and JSON text
   * only: nothing is transferred, nothing can fail to clone.
   */
  #flushOutbox(link: Link): void {
    if (link.outbox.length === 0) return;
    const calls = link.outbox;
    link.outbox = [];
    try {
      link.hello.port.postMessage(calls.length === 1 ? calls[0] : calls);
    } catch {
      // port already closed with its thread: its exit settles the calls
    }
  }

  #freeLink(): Link | undefined {
    let best: Link | undefined;
    for (const link of this.#links) if (link.running < this.#concurrency && (!best || link.running < best.running)) best = link;
    return best;
  }

  /** The thread's answer to a call: it is done with it. */
  #taskDone(link: Link, message: Extract<ThreadMessage, { kind: 'done' }>): void {
    const p = this.#running.get(message.callId);
    if (!p || p.link !== link) return; // ended by a crash or stop() meanwhile
    p.taskDone = true;
    clearTimers(p);
    this.#running.delete(p.callId);
    if (--link.running === 0) link.hello.port.unref();
    if (message.ok) this.#settleResult(p, message.json);
    else this.#settle(p, this.#fromWire(message.error));
    this.#pump();
  }

  /** Parses a result, once, from its JSON text. */
  #settleResult(p: Pending, json: unknown): void {
    // The thread measured it exactly, in bytes; this second wall (UTF-16 units, so a lower bound) is the host's own.
    if (typeof json !== 'string' || json.length > MAX_RESULT_BYTES) {
      this.#settle(p, this.#error('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${this.spec.id}: the result of ${p.label} is over ${MAX_RESULT_BYTES} bytes of JSON, or not JSON text`));
      return;
    }
    let value: Json;
    try {
      value = JSON.parse(json) as Json;
    } catch (e) {
      this.#settle(p, this.#error('PLINTH_ERR_STAGE_FAILED', `extension ${this.spec.id}: the result of ${p.label} is not valid JSON (${(e as Error).message})`));
      return;
    }
    this.#settle(p, undefined, value);
  }

  #settle(p: Pending, err: PlinthError | undefined, value?: Json): void {
    if (p.settled) return;
    p.settled = true;
    p.cleanup?.();
    if (err) p.reject(err);
    else p.resolve(value ?? null);
  }

  #deadline(p: Pending): void {
    if (p.taskDone || this.#state === 'dead') return;
    const message = `extension ${this.spec.id}: ${p.label} did not finish within ${p.timeoutMs} ms`;
    if (!p.dispatched) {
      const i = this.#queue.indexOf(p);
      if (i >= 0) this.#queue.splice(i, 1);
      this.#settle(p, this.#error('PLINTH_ERR_STAGE_TIMEOUT', `${message} (it was still waiting for a free slot)`, 'raise limits.concurrency, or the call timeout'));
      return;
    }
    this.#settle(p, this.#error('PLINTH_ERR_STAGE_TIMEOUT', message, 'the code was stopped; make it faster, honour ctx.signal, or raise the timeout'));
    this.#abortInThread(p, 'PLINTH_ERR_STAGE_TIMEOUT', message);
    // ctx.signal has fired; code that ignores it (a sync loop, an endless microtask chain) is stopped with its thread.
    p.killTimer = unrefTimer(() => {
      if (!p.taskDone) this.#crash('killed', `${p.label} ran past its ${p.timeoutMs} ms deadline and ignored ctx.signal for ${KILL_GRACE_MS} ms; its thread was terminated`, undefined);
    }, KILL_GRACE_MS);
  }

  #cancel(p: Pending, signal: AbortSignal): void {
    if (p.settled) return;
    const err = this.#cancelled(p, signal);
    if (!p.dispatched) {
      const i = this.#queue.indexOf(p);
      if (i >= 0) this.#queue.splice(i, 1);
      clearTimers(p);
      this.#settle(p, err);
      return;
    }
    this.#settle(p, err);
    // Cooperative: ctx.signal fires; the call's deadline still stops code that ignores it.
    this.#abortInThread(p, 'PLINTH_ERR_CANCELLED', err.message);
  }

  #cancelled(p: Pending, signal: AbortSignal): PlinthError {
    const reason: unknown = signal.reason;
    if (reason instanceof PlinthError) return reason;
    return new PlinthError('PLINTH_ERR_CANCELLED', `extension ${this.spec.id}: ${p.label} was cancelled`, { extension: this.spec.id, cause: reason });
  }

  /** Fires ctx.signal of a call, on the thread it runs on. */
  #abortInThread(p: Pending, code: 'PLINTH_ERR_STAGE_TIMEOUT' | 'PLINTH_ERR_CANCELLED' | 'PLINTH_ERR_SHUTDOWN', message: string): void {
    if (p.link) this.#post(p.link, { kind: 'abort', callId: p.callId, code, message });
  }

  /** Fires the signal of a lifecycle task (a health probe): piscina chose its thread, so every thread is told. */
  #abortCall(callId: number, code: 'PLINTH_ERR_STAGE_TIMEOUT' | 'PLINTH_ERR_CANCELLED' | 'PLINTH_ERR_SHUTDOWN', message: string): void {
    const msg: HostMessage = { kind: 'abort', callId, code, message };
    for (const link of this.#links) this.#post(link, msg);
  }

  #post(link: Link, message: HostMessage): void {
    // Calls still in the outbox go first: an abort never overtakes the call it is for.
    this.#flushOutbox(link);
    try {
      link.hello.port.postMessage(message);
    } catch {
      // port already closed with its thread
    }
  }

  // --- failures ------------------------------------------------------------------------------------------

  /** Watches a thread for an exit we did not ask for (process.exit() in a timer, between calls). */
  #watch(worker: Worker): void {
    worker.once('exit', (code: number) => {
      if (this.#destroying) return;
      // Deferred: the task rejection or pool 'error' for the same death is emitted around this event and carries
      // the precise cause (OOM, the thrown error); whichever comes first decides, this is the fallback.
      setImmediate(() => this.#crash('crashed', `a thread of extension ${this.spec.id} exited with code ${code}`, undefined));
    });
  }

  /** A piscina rejection or 'error' event: the thread died. Classifies it and ends the sandbox (#crash). */
  #threadFailed(err: unknown, p: Pending | undefined): void {
    if (this.#destroying || this.#state === 'stopped' || this.#state === 'dead' || this.#state === 'failed') return;
    const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as { code?: unknown; message?: unknown; stack?: unknown };
    const message = typeof e.message === 'string' ? e.message : String(err);
    if (e.code === 'ERR_WORKER_OUT_OF_MEMORY') {
      this.#crash('out-of-memory', `extension ${this.spec.id} exceeded its memory limit of ${this.spec.limits.memoryMb} MB (${message})`, p);
    } else {
      const exited = PISCINA_EXIT.exec(message);
      // An uncaught exception arrives as the extension's own error, with its stack; an exit only as piscina's text.
      const stack = !exited && typeof e.stack === 'string' ? e.stack : undefined;
      const where = stack ? /\n\s+at (.*)/.exec(stack)?.[1] : undefined;
      const detail = exited
        ? `a thread of extension ${this.spec.id} exited (process.exit(${exited[1]}) or a fatal error)`
        : `an uncaught exception in extension ${this.spec.id}: ${message}${where ? ` (at ${where})` : ''}`;
      this.#crash('crashed', detail, p, stack);
    }
  }

  /** Ends the sandbox after a failure that took (or must take) a thread down. Runs once. */
  #crash(reason: 'crashed' | 'out-of-memory' | 'killed', detail: string, culprit: Pending | undefined, extensionStack?: string): void {
    if (this.#exit || this.#destroying || this.#state === 'stopped' || this.#state === 'failed' || this.#state === 'dead') return;
    const wasStarting = this.#state === 'starting';
    this.#state = 'dead';
    this.#exit = { reason, detail };
    debug('%s: %s: %s', this.spec.id, reason, detail);
    const code: ErrorCode = reason === 'out-of-memory' ? 'PLINTH_ERR_OUT_OF_MEMORY' : 'PLINTH_ERR_SANDBOX_CRASHED';
    // A thread's death is seen on its `exit` / the pool's `error`, which do not say which call it was running; when
    // only one was, that one is the culprit.
    if (!culprit && this.#running.size === 1) culprit = this.#running.values()[0];
    const hint = reason === 'out-of-memory' ? 'raise limits.memoryMb, or process the data in smaller pieces' : 'the extension is restarted; see extensionStack for where it failed';
    for (const p of this.#running.values()) {
      const err = this.#error(code, `${detail} (during ${p.label}${p === culprit ? '' : ', which was running on it'})`, hint, extensionStack);
      clearTimers(p);
      this.#settle(p, err);
    }
    this.#running.clear();
    for (const p of this.#queue.splice(0)) {
      clearTimers(p);
      this.#settle(p, this.#error('PLINTH_ERR_SANDBOX_CRASHED', `${detail}; ${p.label} was not run`, 'retry once the extension has been restarted'));
    }
    void this.#destroy();
    if (wasStarting) return; // start() rejects with LOAD_FAILED; that is the report.
    const exit = this.#exit;
    for (const listener of this.#exitListeners) {
      try {
        listener(exit);
      } catch (err) {
        debug('%s: onExit listener threw: %o', this.spec.id, err);
      }
    }
  }

  #destroy(): Promise<void> {
    this.#destroyPromise ??= (async () => {
      this.#destroying = true;
      const pool = this.#pool;
      if (pool) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([pool.destroy().catch(() => undefined), new Promise<void>((resolve) => (timer = unrefTimer(resolve, DESTROY_BOUND_MS)))]);
        clearTimeout(timer);
      }
      for (const { hello } of this.#links.splice(0)) {
        hello.port.close();
        hello.syncPort.close();
      }
    })();
    return this.#destroyPromise;
  }

  // --- the ctx channel (host side) -------------------------------------------------------------------------

  #link(hello: CtxHello): void {
    // One port per thread of this pool, the first one it sends: thread.js sends its own before the extension's
    // module is imported, so a second "hello" (extension code can post on parentPort too) never takes calls.
    const known = this.#pool?.threads.some((w) => w.threadId === hello.threadId) === true;
    if (this.#destroying || !known || this.#links.some((l) => l.hello.threadId === hello.threadId)) {
      if (!this.#destroying) debug('%s: ignored a second or unknown port for thread %d', this.spec.id, hello.threadId);
      hello.port.close();
      hello.syncPort.close();
      return;
    }
    const link: Link = { hello, running: 0, outbox: [] };
    this.#links.push(link);
    hello.port.on('message', (message: ThreadMessage | ThreadMessage[]) => {
      // The thread posts the answers of one tick together.
      if (Array.isArray(message)) for (const m of message) this.#onThreadMessage(link, m);
      else this.#onThreadMessage(link, message);
    });
    hello.port.once('close', () => this.#portClosed(link));
    // The ports never keep the host alive by themselves: #pump refs a thread's port while calls run on it.
    hello.port.unref();
    hello.syncPort.unref();
    if (this.#links.length >= this.#threads) this.#allLinked?.();
  }

  /**
   * The thread's end of its port is gone: the thread is dying. piscina keeps an idle thread's Worker unref'd (and
   * refs it only once its own port closes, which it does not hear while no task of its runs), so with calls in
   * flight we ref the Worker here: the host then stays up to hear its `exit` (with the cause) and to answer the
   * calls that were running on it, instead of ending with them unsettled.
   */
  #portClosed(link: Link): void {
    if (this.#destroying || link.running === 0) return;
    const worker = this.#pool?.threads.find((w) => w.threadId === link.hello.threadId);
    if (worker) worker.ref();
    else setImmediate(() => this.#crash('crashed', `a thread of extension ${this.spec.id} ended`, undefined));
  }

  #onThreadMessage(link: Link, message: ThreadMessage): void {
    if (this.#destroying) return;
    if (message.kind === 'done') return this.#taskDone(link, message);
    if (message.kind !== 'op') return;
    const { id, sync } = message;
    let pending: Promise<Json | undefined>;
    try {
      pending = this.#context(message.op);
    } catch (err) {
      pending = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    pending.then(
      (value) => this.#reply(link, sync, { kind: 'reply', id, ok: true, value }),
      (err: unknown) => this.#reply(link, sync, { kind: 'reply', id, ok: false, error: serialiseCtxError(err) }),
    );
  }

  #reply({ hello: link }: Link, sync: boolean, reply: HostMessage & { kind: 'reply' }): void {
    if (this.#destroying) return;
    try {
      if (sync) {
        link.syncPort.postMessage(reply);
        Atomics.store(link.flag, 0, 1);
        Atomics.notify(link.flag, 0);
      } else link.port.postMessage(reply);
    } catch (err) {
      debug('%s: ctx reply failed: %o', this.spec.id, err);
    }
  }

  // --- errors --------------------------------------------------------------------------------------------

  #error(code: ErrorCode, message: string, hint?: string, extensionStack?: string): PlinthError {
    return new PlinthError(code, message, { extension: this.spec.id, ...(hint ? { hint } : {}), ...(extensionStack ? { extensionStack } : {}) });
  }

  #fromWire(error: WireError): PlinthError {
    return new PlinthError(error.code, `extension ${this.spec.id}: ${error.message}`, {
      extension: this.spec.id,
      ...(error.stack ? { extensionStack: error.stack } : {}),
      ...(error.hint ? { hint: error.hint } : {}),
    });
  }

  #unavailable(): PlinthError {
    switch (this.#state) {
      case 'dead':
        return this.#error('PLINTH_ERR_SANDBOX_CRASHED', `extension ${this.spec.id}: its sandbox has ended (${this.#exit?.reason ?? 'crashed'}: ${this.#exit?.detail ?? 'unknown'})`, 'wait for the supervisor to restart it');
      case 'stopping':
      case 'stopped':
        return this.#error('PLINTH_ERR_SHUTDOWN', `extension ${this.spec.id} is stopping or stopped`);
      case 'failed':
        return this.#error('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${this.spec.id} failed to start`);
      default:
        return this.#error('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${this.spec.id} is not started (call start() first)`);
    }
  }
}

export function createWorkerSandbox(spec: SandboxSpec, context: ContextHandler, options: WorkerSandboxOptions = {}): Sandbox {
  return new WorkerSandbox(spec, context, options);
}

