// One loaded extension under supervision: its sandbox, breaker, concurrency quota, health probes and restarts
// with backoff (DESIGN.md §2, §4). One transition function changes its state, checked against TRANSITIONS (an
// explicit table, STYLE.md "State machines, named": anything else is a bug and throws), and publishes the change
// as `extension.<id>.<state>`; nothing else assigns the state.
import { randomUUID } from 'node:crypto';
import { PlinthError, isPlinthError } from '../errors.ts';
import { toProblems } from '../schema/index.ts';
import { topicWord, type EventPublisher } from '../events/index.ts';
import type { ExtensionPackage } from '../manifest/index.ts';
import type { HostConfig } from '../config/index.ts';
import type { Json, HealthResult, DeliveredEvent } from '../sdk/index.ts';
import type { ContextHandler, Sandbox, SandboxFactory, SandboxSpec, SandboxExit } from '../sandbox/types.ts';
import { checkTimeout, startTimedOut } from '../sandbox/index.ts';
import { Breaker, Bulkhead, backoffDelay, outcomeOf, sleep, type BreakerPermit, type BreakerState } from '../resilience/index.ts';
import type { ExtensionState } from './index.ts';

// A call's trace id when its caller gave none: UUID-shaped, a random prefix per host process and a counter (unique
// without a crypto call per call: randomUUID was ~3 µs of every call, issue 14).
const TRACE_PREFIX = randomUUID().slice(0, 24);
let traceSeq = 0;
function newTraceId(): string {
  return TRACE_PREFIX + (traceSeq++ % 0x1000000000000).toString(16).padStart(12, '0');
}

export interface CallRequest {
  timeoutMs?: number;
  runId?: string;
  traceId?: string;
  signal?: AbortSignal;
}

export interface ExtensionInfo {
  id: string;
  version: string;
  runtime: string;
  state: ExtensionState;
  reason: ReturnType<PlinthError['toJSON']> | null;
  since: string;
  restarts: number;
  breaker: BreakerState;
}

export interface ManagedExtensionOptions {
  pkg: ExtensionPackage;
  /** Its limits, checked against the host's ceilings (limits.ts); the defaults merged with the manifest if absent. */
  limits?: Required<SandboxSpec['limits']>;
  /** Digest of the verified file list: what "changed on disk" is measured against. */
  digest: string;
  /** Under which key its limits are reserved in the host budget (two versions overlap during a swap). */
  budgetKey: string;
  config: Record<string, Json>;
  defaults: HostConfig['defaults'];
  makeSandbox: SandboxFactory;
  context: ContextHandler;
  events: EventPublisher;
  log: (level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
  /** Restart backoff; a sandbox alive this long resets it. */
  backoff?: Partial<RestartSettings>;
}

/**
 * Restarts after a crash or failed health: attempt n waits baseMs·2^n (capped at maxMs, full jitter), up to
 * maxAttempts relaunches in a row that fail to start; then the extension is `failed` with the last cause. A sandbox
 * that stayed up resetAfterMs counts as recovered (the next crash starts again at attempt 0).
 */
export interface RestartSettings {
  baseMs: number;
  maxMs: number;
  resetAfterMs: number;
  maxAttempts: number;
}

export const RESTART_DEFAULTS: RestartSettings = { baseMs: 200, maxMs: 30_000, resetAfterMs: 30_000, maxAttempts: 5 };

/**
 * Which lifecycle state may follow which (DESIGN.md §2), for a supervised extension (discovery, validation,
 * verification and resolution happen before one exists). `starting → starting` is a restart attempt that failed
 * and is retried (with a new reason); `degraded` stays degraded while it is restarted after failed probes.
 */
export const TRANSITIONS: Readonly<Record<ExtensionState, readonly ExtensionState[]>> = {
  discovered: [],
  validated: [],
  verified: [],
  resolved: ['starting', 'stopping'],
  starting: ['starting', 'active', 'failed', 'stopping'],
  active: ['degraded', 'starting', 'stopping', 'failed'],
  degraded: ['active', 'starting', 'stopping', 'failed'],
  stopping: ['stopped'],
  stopped: [],
  failed: [],
};

export class ManagedExtension {
  readonly id: string;
  readonly version: string;
  readonly pkg: ExtensionPackage;
  readonly digest: string;
  readonly budgetKey: string;
  readonly breaker: Breaker;
  readonly #options: ManagedExtensionOptions;
  readonly #bulkhead: Bulkhead;
  readonly #limits: Required<SandboxSpec['limits']>;
  readonly #health: HostConfig['defaults']['health'];
  readonly #backoff: RestartSettings;
  #state: ExtensionState = 'resolved';
  #reason: PlinthError | undefined;
  #since = new Date();
  #restarts = 0;
  #crashStreak = 0;
  #sandbox: Sandbox | undefined;
  #sandboxStartedAt = 0;
  /** Resolves when a sandbox is serving (after start or a restart); calls wait on it, bounded by their deadline. */
  #ready: Promise<void> = Promise.resolve();
  #healthTimer: NodeJS.Timeout | undefined;
  /** The probe in flight: probes never overlap. */
  #probing: Promise<boolean> | undefined;
  #probeFailures = 0;
  #probeSuccesses = 0;
  #stopping: Promise<void> | undefined;
  /** Aborted by stop(): ends a restart's backoff wait at once. */
  readonly #stopSignal = new AbortController();
  #restarting: Promise<void> | undefined;
  /** Calls accepted and not yet settled; drain() waits for it to reach 0 (blue/green swap). */
  #inflight = 0;
  #drained: Array<() => void> = [];

  constructor(options: ManagedExtensionOptions) {
    this.#options = options;
    this.pkg = options.pkg;
    this.digest = options.digest;
    this.budgetKey = options.budgetKey;
    this.id = options.pkg.id;
    this.version = options.pkg.version;
    const m = options.pkg.manifest;
    this.#limits = options.limits ?? { ...options.defaults.limits, ...m.limits };
    this.#health = { ...options.defaults.health, ...m.health };
    this.#backoff = { ...RESTART_DEFAULTS, ...options.defaults.restart, ...options.backoff };
    this.#bulkhead = new Bulkhead(this.#limits.concurrency);
    this.breaker = new Breaker(this.id, { ...options.defaults.breaker, ...m.breaker });
    this.breaker.on('state', (state, previous) => {
      options.log(state === 'closed' ? 'info' : 'warn', `circuit breaker ${previous} → ${state}`, { extension: this.id, breaker: state });
      void options.events.publish(`extension.${topicWord(this.id)}.breaker`, { id: this.id, state, previous }, 'host');
    });
  }

  get state(): ExtensionState {
    return this.#state;
  }

  get limits(): Required<SandboxSpec['limits']> {
    return this.#limits;
  }

  info(): ExtensionInfo {
    return {
      id: this.id,
      version: this.version,
      runtime: this.pkg.manifest.runtime,
      state: this.#state,
      reason: this.#reason ? this.#reason.toJSON() : null,
      since: this.#since.toISOString(),
      restarts: this.#restarts,
      breaker: this.breaker.state,
    };
  }

  /** The one place the state changes: checks TRANSITIONS, logs it and publishes `extension.<id>.<state>`. */
  #transition(next: ExtensionState, reason?: PlinthError): void {
    if (next === this.#state && reason === this.#reason) return;
    const previous = this.#state;
    if (!TRANSITIONS[previous].includes(next)) throw new Error(`extension ${this.id}: illegal lifecycle transition ${previous} → ${next} (a Plinth bug)`);
    this.#state = next;
    this.#reason = reason;
    this.#since = new Date();
    this.#options.log(next === 'failed' ? 'error' : next === 'degraded' ? 'warn' : 'info', `${previous} → ${next}${reason ? `: ${reason.message}` : ''}`, {
      extension: this.id,
      version: this.version,
      state: next,
      ...(reason ? { code: reason.code } : {}),
    });
    void this.#options.events.publish(`extension.${topicWord(this.id)}.${next}`, { id: this.id, version: this.version, state: next, previous, reason: reason ? (reason.toJSON() as Json) : null }, 'host');
  }

  #spec(): SandboxSpec {
    const m = this.pkg.manifest;
    return {
      instanceId: `${this.id}@${this.version}#${randomUUID()}`,
      id: this.id,
      version: this.version,
      dir: this.pkg.dir,
      mainPath: this.pkg.mainPath,
      config: this.#options.config,
      permissions: m.permissions,
      limits: this.#limits,
      stages: Object.keys(m.stages),
    };
  }

  /** A new sandbox, started. On failure it is stopped again (nothing of it stays loaded) and the error thrown. */
  async #launch(): Promise<Sandbox> {
    const sandbox = this.#options.makeSandbox(this.#spec(), this.#options.context);
    sandbox.onExit((exit) => this.#onExit(sandbox, exit));
    sandbox.onAvailability?.((available, reason) => this.#onAvailability(sandbox, available, reason));
    // The runtimes bound loading by limits.startTimeoutMs themselves; this is the host's own wall behind them.
    const bound = this.#limits.startTimeoutMs + START_GRACE_MS;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        sandbox.start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(startTimedOut(this.id, this.#limits.startTimeoutMs)), bound);
          timer.unref();
        }),
      ]);
    } catch (err) {
      await sandbox.stop(1000);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return sandbox;
  }

  /** Starts the sandbox: starting → active, or failed with the reason (never throws). Calls wait for it. */
  start(): Promise<void> {
    if (this.#state !== 'resolved') return this.#ready;
    this.#transition('starting');
    this.#ready = this.#start();
    return this.#ready;
  }

  async #start(): Promise<void> {
    let sandbox: Sandbox;
    try {
      sandbox = await this.#launch();
    } catch (err) {
      if (!this.#stopping) this.#transition('failed', asPlinthError(err, this.id, 'PLINTH_ERR_EXTENSION_LOAD_FAILED'));
      return;
    }
    if (this.#stopping) {
      // stop() came while it was starting: it waits for this, and the fresh sandbox goes with it.
      await sandbox.stop(1000);
      return;
    }
    this.#sandbox = sandbox;
    this.#sandboxStartedAt = Date.now();
    this.#transition('active');
    this.#scheduleHealth();
    if (sandbox.available === false) this.#onAvailability(sandbox, false, undefined);
  }

  #onExit(sandbox: Sandbox, exit: SandboxExit): void {
    if (sandbox !== this.#sandbox || this.#stopping) return;
    this.#options.log('warn', `sandbox ended (${exit.reason}): ${exit.detail}`, { extension: this.id, exit: exit.reason });
    void this.#restart(exit.detail);
  }

  /**
   * A runtime whose serving comes and goes (remote: runners disconnect and reconnect): nothing to serve → degraded
   * with the reason; serving again → active, the same extension (no restart, no new id).
   */
  #onAvailability(sandbox: Sandbox, available: boolean, reason: PlinthError | undefined): void {
    if (sandbox !== this.#sandbox || this.#stopping || this.#restarting) return;
    if (!available && this.#state === 'active') {
      this.#transition('degraded', reason ?? new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${this.id}: nothing serves it now`, { extension: this.id }));
    } else if (available && this.#state === 'degraded') {
      this.#probeFailures = 0;
      this.#probeSuccesses = 0;
      this.#transition('active');
    }
  }

  /**
   * Replaces the sandbox after a crash or failed health, with exponential backoff and jitter; a relaunch that fails
   * is retried up to `maxAttempts` times, then the extension is failed with the last cause. Calls wait for it
   * (bounded by their deadline). stop() ends the wait and wins over a relaunch in progress.
   */
  #restart(why: string): Promise<void> {
    if (this.#restarting) return this.#restarting;
    const old = this.#sandbox;
    this.#sandbox = undefined;
    if (Date.now() - this.#sandboxStartedAt > this.#backoff.resetAfterMs) this.#crashStreak = 0;
    const wasDegraded = this.#state === 'degraded';
    // Announced at once (synchronously with the exit that caused it): a caller who saw its call fail finds the
    // extension already `starting`, never still `active`.
    const announce = (attempt: number, delay: number, cause: string) => {
      if (wasDegraded) return;
      const lead = attempt === 1 ? `restarting in ${delay} ms after: ${cause}` : `restart ${attempt - 1} of ${this.#backoff.maxAttempts} failed (${cause}); retrying in ${delay} ms`;
      this.#transition('starting', new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `extension ${this.id}: ${lead}`, { extension: this.id }));
    };
    let delay = backoffDelay(this.#crashStreak++, this.#backoff);
    announce(1, delay, why);
    this.#restarting = (async () => {
      await old?.stop(1000);
      for (let attempt = 1; ; attempt++) {
        if (this.#stopping) return;
        try {
          await sleep(delay, this.#stopSignal.signal);
        } catch {
          return; // stopped while waiting
        }
        if (this.#stopping) return;
        let sandbox: Sandbox;
        try {
          sandbox = await this.#launch();
        } catch (err) {
          const e = asPlinthError(err, this.id, 'PLINTH_ERR_EXTENSION_LOAD_FAILED');
          if (this.#stopping) return;
          if (attempt >= this.#backoff.maxAttempts) {
            this.#transition('failed', new PlinthError(e.code, `extension ${this.id}: gave up after ${attempt} failed restart(s) (defaults.restart.maxAttempts); the last one: ${e.message}`, { extension: this.id, cause: e, ...(e.hint ? { hint: e.hint } : {}) }));
            return;
          }
          delay = backoffDelay(this.#crashStreak++, this.#backoff);
          announce(attempt + 1, delay, e.message);
          continue;
        }
        if (this.#stopping) {
          await sandbox.stop(1000);
          return;
        }
        this.#sandbox = sandbox;
        this.#sandboxStartedAt = Date.now();
        this.#restarts++;
        if (!wasDegraded) this.#transition('active');
        if (sandbox.onAvailability) setImmediate(() => {
          // Once #restarting is cleared: a runtime that came back with nothing to serve is degraded, not active.
          if (this.#sandbox === sandbox) this.#onAvailability(sandbox, sandbox.available !== false, undefined);
        });
        return;
      }
    })().finally(() => {
      this.#restarting = undefined;
    });
    this.#ready = this.#restarting;
    return this.#restarting;
  }

  #scheduleHealth(): void {
    if (this.#healthTimer || this.#stopping) return;
    this.#healthTimer = setInterval(() => void this.probe(), this.#health.intervalMs);
    this.#healthTimer.unref();
  }

  /**
   * One health probe (also run by the interval timer). Returns whether it passed. Probes never overlap: a probe
   * asked for while one is in flight gets that one's answer. The sandbox cancels a probe at its timeout (a worker
   * frees the thread's probe slot, or ends the thread if healthCheck() does not let go; an isolate past its
   * deadline is disposed), so a hung probe never holds a call's slot. The bound here is a second wall.
   */
  probe(): Promise<boolean> {
    this.#probing ??= this.#probeOnce().finally(() => {
      this.#probing = undefined;
    });
    return this.#probing;
  }

  async #probeOnce(): Promise<boolean> {
    const sandbox = this.#sandbox;
    if (!sandbox || this.#restarting || this.#stopping || (this.#state !== 'active' && this.#state !== 'degraded')) return false;
    let healthy: boolean;
    try {
      const result: HealthResult = await withTimeout(sandbox.health(this.#health.timeoutMs), this.#health.timeoutMs + 100);
      healthy = typeof result === 'boolean' ? result : result.healthy === true;
    } catch {
      healthy = false;
    }
    if (sandbox !== this.#sandbox || this.#stopping) return healthy; // replaced or stopped meanwhile: says nothing now
    if (healthy) {
      this.#probeFailures = 0;
      if (this.#state === 'degraded' && ++this.#probeSuccesses >= this.#health.recoveryThreshold) this.#transition('active');
    } else {
      this.#probeSuccesses = 0;
      if (++this.#probeFailures >= this.#health.unhealthyThreshold && this.#state === 'active') {
        this.#probeFailures = 0;
        this.#transition('degraded', new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${this.id}: ${this.#health.unhealthyThreshold} health probes failed in a row; restarting it`, { extension: this.id }));
        void this.#restart('health probes failed');
      }
    }
    return healthy;
  }

  /** Runs a stage: input validated, through the breaker and the concurrency quota, output validated. */
  async call(stage: string, input: Json, request: CallRequest = {}): Promise<Json> {
    const decl = this.pkg.manifest.stages[stage];
    const schemas = this.pkg.schemas.stages[stage];
    if (!decl || !schemas) {
      throw new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `extension ${this.id} has no stage "${stage}"`, {
        extension: this.id,
        hint: `its stages: ${Object.keys(this.pkg.manifest.stages).join(', ') || '(none)'}`,
      });
    }
    // Defaults are filled in by validation: into a copy, so the caller's object stays as it was.
    const value = schemas.fillsDefaults ? structuredClone(input) : input;
    if (!schemas.input(value)) {
      throw new PlinthError('PLINTH_ERR_STAGE_INPUT_INVALID', `extension ${this.id}, stage ${stage}: the input does not match its input schema`, {
        extension: this.id,
        problems: toProblems(schemas.input.errors),
      });
    }
    const timeoutMs = request.timeoutMs ?? decl.timeoutMs ?? this.#limits.callTimeoutMs;
    checkTimeout(this.id, timeoutMs);
    const deadline = Date.now() + timeoutMs;

    // Admitted by the breaker first (an open breaker fails fast without queueing), then waits for a serving
    // sandbox and a slot of the bulkhead; the breaker hears the outcome with the time the sandbox took, not the
    // time queued. An error that is not a PlinthError is STAGE_FAILED with its message; only the deadline is
    // STAGE_TIMEOUT. The wait is bounded by an AbortSignal (the deadline, or the caller's cancel) made only when the
    // call really has to wait (issue 14: a timer per call cost more than the breaker and the bulkhead together);
    // once running, the sandbox's own deadline timer bounds it and the caller's signal goes to the sandbox.
    const permit: BreakerPermit = this.breaker.admit();
    let started: number | undefined;
    let signal: AbortSignal | undefined;
    this.#inflight++;
    try {
      const waiting = this.#whenServing(() => (signal ??= untilDeadline(deadline, request.signal)));
      if (waiting) await waiting;
      // A wait for a slot: one plain timer, and only if it has to wait (no AbortSignal.timeout/any per queued call).
      const slot = { deadline, signal: request.signal, timedOut: () => this.#waitTimedOut(stage, timeoutMs) };
      const output = await this.#bulkhead.run(() => {
        const sandbox = this.#sandbox;
        if (!sandbox) throw this.#unavailable();
        started = performance.now();
        return sandbox.call(stage, value, { timeoutMs: Math.max(1, deadline - Date.now()), traceId: request.traceId ?? newTraceId(), runId: request.runId, signal: request.signal });
      }, slot);
      if (!schemas.output(output)) {
        throw new PlinthError('PLINTH_ERR_STAGE_OUTPUT_INVALID', `extension ${this.id}, stage ${stage}: the output does not match its output schema`, {
          extension: this.id,
          problems: toProblems(schemas.output.errors),
        });
      }
      permit.record('success', performance.now() - started!);
      return output;
    } catch (err) {
      const e = this.#callError(err, stage, signal, request.signal, timeoutMs);
      // Waiting for a slot or a restart until the deadline says nothing of the calls the breaker watches.
      permit.record(started === undefined && e.code === 'PLINTH_ERR_STAGE_TIMEOUT' ? 'ignored' : outcomeOf(e), performance.now() - (started ?? performance.now()));
      throw e;
    } finally {
      if (--this.#inflight === 0) for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  /** Resolves when no call is in flight, or after `timeoutMs` (then returns false). */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.#inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
      this.#drained.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** What a failed call reports: its own PlinthError, the deadline, the caller's cancel, or STAGE_FAILED. */
  #callError(err: unknown, stage: string, signal: AbortSignal | undefined, callerSignal: AbortSignal | undefined, timeoutMs: number): PlinthError {
    if (isPlinthError(err)) return err;
    if ((signal?.aborted && err === signal.reason) || (callerSignal?.aborted && err === callerSignal.reason)) {
      if (callerSignal?.aborted) return new PlinthError('PLINTH_ERR_CANCELLED', `extension ${this.id}, stage ${stage}: the call was cancelled by its caller`, { extension: this.id, cause: err });
      return this.#waitTimedOut(stage, timeoutMs);
    }
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return new PlinthError('PLINTH_ERR_STAGE_FAILED', `extension ${this.id}, stage ${stage}: ${message}`, { extension: this.id, cause: err });
  }

  #waitTimedOut(stage: string, timeoutMs: number): PlinthError {
    return new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', `extension ${this.id}, stage ${stage}: no result within ${timeoutMs} ms (waiting for a free slot or a restart)`, { extension: this.id });
  }

  /**
   * Delivers an event to handleEvent, through the breaker and the concurrency quota like a call, bounded by the
   * call timeout. A breaker that is open, or an extension that is not running, rejects: the bus counts that as a
   * failed attempt and retries (issue 10), so the event is not lost.
   */
  async deliver(event: DeliveredEvent): Promise<void> {
    const timeoutMs = this.#limits.callTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    let signal: AbortSignal | undefined;
    const waitSignal = () => (signal ??= untilDeadline(deadline, undefined));
    const timedOut = () => new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', `extension ${this.id}, handleEvent(${event.topic}): not done within ${timeoutMs} ms`, { extension: this.id });
    // A stopped extension's breaker is disposed: say so with our own code, not the breaker's shutdown text.
    if (this.#stopping) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.id} is stopping`, { extension: this.id });
    this.#inflight++;
    try {
      await this.breaker.run(async () => {
        const waiting = this.#whenServing(waitSignal);
        if (waiting)
          await waiting.catch((err: unknown) => {
            throw isPlinthError(err) ? err : timedOut();
          });
        await this.#bulkhead
          .run(async () => {
            const sandbox = this.#sandbox;
            if (!sandbox) throw this.#unavailable();
            await sandbox.deliver(event, { timeoutMs: Math.max(1, deadline - Date.now()), traceId: event.headers?.traceId ?? newTraceId() });
          }, waitSignal)
          .catch((err: unknown) => {
            throw isPlinthError(err) ? err : timedOut();
          });
      });
    } finally {
      if (--this.#inflight === 0) for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  #unavailable(): PlinthError {
    return new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${this.id} is ${this.#state}${this.#reason ? `: ${this.#reason.message}` : ''}`, {
      extension: this.id,
      hint: 'see `plinth ls` for its state and reason',
    });
  }

  /**
   * Throws if the extension will not serve; undefined when a sandbox is serving now (no promise, no timer); else
   * a wait for the (re)start, bounded by `signal()`.
   */
  #whenServing(signal: () => AbortSignal): Promise<void> | undefined {
    if (this.#stopping) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.id} is stopping`, { extension: this.id });
    if (this.#state === 'failed' || this.#state === 'stopped') throw this.#unavailable();
    if (this.#sandbox && !this.#restarting) return undefined;
    return this.#waitServing(signal());
  }

  async #waitServing(signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#ready.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
    if (this.#stopping) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.id} is stopping`, { extension: this.id });
    if (!this.#sandbox) throw this.#unavailable();
  }

  /**
   * Stops: stopping → stopped (a failed extension stays failed). The extension's stop() is time-boxed; a restart in
   * progress is ended (its wait cut short, a sandbox it was starting stopped); every timer is cleared. A second
   * stop() returns the first one's promise. Never throws.
   */
  stop(timeoutMs = 5000): Promise<void> {
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    this.#healthTimer = undefined;
    this.#stopSignal.abort();
    const failed = this.#state === 'failed';
    if (!failed) this.#transition('stopping');
    // A start or restart in flight sees #stopping and stops the sandbox it was starting.
    await this.#ready.catch(() => undefined);
    await this.#restarting?.catch(() => undefined);
    const sandbox = this.#sandbox;
    this.#sandbox = undefined;
    await sandbox?.stop(timeoutMs);
    this.breaker.dispose();
    if (!failed) this.#transition('stopped');
  }
}

/** How long past limits.startTimeoutMs the host waits for a runtime to report its own start timeout. */
const START_GRACE_MS = 2000;

function asPlinthError(err: unknown, extension: string, code: 'PLINTH_ERR_EXTENSION_LOAD_FAILED'): PlinthError {
  if (isPlinthError(err)) return err;
  return new PlinthError(code, `extension ${extension}: ${err instanceof Error ? err.message : String(err)}`, { extension });
}

/** Aborts at `deadline` (Date.now() time), or when the caller's signal does. */
function untilDeadline(deadline: number, caller: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
  return caller ? AbortSignal.any([caller, timeout]) : timeout;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
    promise.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}
