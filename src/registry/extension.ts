// One loaded extension under supervision: its sandbox, breaker, concurrency quota, health probes and restarts
// with backoff (DESIGN.md §2, §4). One transition function changes its state and publishes the change as
// `extension.<id>.<state>`; nothing else assigns the state.
import { randomUUID } from 'node:crypto';
import { PlinthError, isPlinthError } from '../errors.ts';
import { toProblems } from '../schema/index.ts';
import { topicWord, type EventPublisher } from '../events/index.ts';
import type { ExtensionPackage } from '../manifest/index.ts';
import type { HostConfig } from '../config/index.ts';
import type { Json, HealthResult, DeliveredEvent } from '../sdk/index.ts';
import type { ContextHandler, Sandbox, SandboxFactory, SandboxSpec, SandboxExit } from '../sandbox/types.ts';
import { Breaker, Bulkhead, backoffDelay, sleep, type BreakerState } from '../resilience/index.ts';
import type { ExtensionState } from './index.ts';

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
  backoff?: { baseMs: number; maxMs: number; resetAfterMs: number };
}

const RESTART_BACKOFF = { baseMs: 200, maxMs: 30_000, resetAfterMs: 30_000 };

export class ManagedExtension {
  readonly id: string;
  readonly version: string;
  readonly pkg: ExtensionPackage;
  readonly digest: string;
  readonly budgetKey: string;
  readonly breaker: Breaker;
  readonly #options: ManagedExtensionOptions;
  readonly #bulkhead: Bulkhead;
  readonly #limits: SandboxSpec['limits'];
  readonly #health: HostConfig['defaults']['health'];
  readonly #backoff: { baseMs: number; maxMs: number; resetAfterMs: number };
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
  #probeFailures = 0;
  #probeSuccesses = 0;
  #stopping = false;
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
    this.#limits = { ...options.defaults.limits, ...m.limits };
    this.#health = { ...options.defaults.health, ...m.health };
    this.#backoff = options.backoff ?? RESTART_BACKOFF;
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

  get limits(): SandboxSpec['limits'] {
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

  /** The one place the state changes: logs it and publishes `extension.<id>.<state>`. */
  #transition(next: ExtensionState, reason?: PlinthError): void {
    if (next === this.#state && reason === this.#reason) return;
    const previous = this.#state;
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

  async #launch(): Promise<void> {
    const sandbox = this.#options.makeSandbox(this.#spec(), this.#options.context);
    sandbox.onExit((exit) => this.#onExit(sandbox, exit));
    this.#sandbox = sandbox;
    await sandbox.start();
    this.#sandboxStartedAt = Date.now();
  }

  /** Starts the sandbox: starting → active, or failed with the reason (never throws). */
  async start(): Promise<void> {
    this.#transition('starting');
    try {
      await this.#launch();
    } catch (err) {
      await this.#sandbox?.stop(1000);
      this.#sandbox = undefined;
      this.#transition('failed', asPlinthError(err, this.id, 'PLINTH_ERR_EXTENSION_LOAD_FAILED'));
      return;
    }
    this.#transition('active');
    this.#scheduleHealth();
  }

  #onExit(sandbox: Sandbox, exit: SandboxExit): void {
    if (sandbox !== this.#sandbox || this.#stopping) return;
    this.#options.log('warn', `sandbox ended (${exit.reason}): ${exit.detail}`, { extension: this.id, exit: exit.reason });
    void this.#restart(exit.detail);
  }

  /** Replaces the sandbox after a crash or failed health, with exponential backoff; calls wait for it. */
  #restart(why: string): Promise<void> {
    if (this.#restarting) return this.#restarting;
    const old = this.#sandbox;
    this.#sandbox = undefined;
    if (Date.now() - this.#sandboxStartedAt > this.#backoff.resetAfterMs) this.#crashStreak = 0;
    const delay = backoffDelay(this.#crashStreak++, this.#backoff);
    const wasDegraded = this.#state === 'degraded';
    if (!wasDegraded) this.#transition('starting', new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `extension ${this.id}: restarting in ${delay} ms after: ${why}`, { extension: this.id }));
    this.#restarting = (async () => {
      await old?.stop(1000);
      for (;;) {
        await sleep(delay);
        if (this.#stopping) return;
        try {
          await this.#launch();
          this.#restarts++;
          if (!wasDegraded) this.#transition('active');
          return;
        } catch (err) {
          this.#sandbox = undefined;
          const e = asPlinthError(err, this.id, 'PLINTH_ERR_EXTENSION_LOAD_FAILED');
          // A restart that cannot load at all (code changed on disk, initialize now throws) fails for good.
          this.#transition('failed', e);
          return;
        }
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

  /** One health probe (also run by the interval timer). Returns whether it passed. */
  async probe(): Promise<boolean> {
    const sandbox = this.#sandbox;
    if (!sandbox || this.#restarting || (this.#state !== 'active' && this.#state !== 'degraded')) return false;
    let healthy: boolean;
    try {
      const result: HealthResult = await withTimeout(sandbox.health(this.#health.timeoutMs), this.#health.timeoutMs + 100);
      healthy = typeof result === 'boolean' ? result : result.healthy === true;
    } catch {
      healthy = false;
    }
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
    const deadline = Date.now() + timeoutMs;
    const signal = request.signal ? AbortSignal.any([request.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
    const timedOut = () => new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', `extension ${this.id}, stage ${stage}: no result within ${timeoutMs} ms (waiting for a free slot or a restart)`, { extension: this.id });

    this.#inflight++;
    try {
      return await this.#run(stage, value, request, schemas, signal, deadline, timedOut);
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

  #run(
    stage: string,
    value: Json,
    request: CallRequest,
    schemas: NonNullable<ExtensionPackage['schemas']['stages'][string]>,
    signal: AbortSignal,
    deadline: number,
    timedOut: () => PlinthError,
  ): Promise<Json> {
    return this.breaker.run(async () => {
      await this.#whenServing(signal).catch((err: unknown) => {
        throw isPlinthError(err) ? err : timedOut();
      });
      return this.#bulkhead
        .run(async () => {
          const sandbox = this.#sandbox;
          if (!sandbox) throw this.#unavailable();
          const output = await sandbox.call(stage, value, {
            timeoutMs: Math.max(1, deadline - Date.now()),
            traceId: request.traceId ?? randomUUID(),
            ...(request.runId ? { runId: request.runId } : {}),
            ...(request.signal ? { signal: request.signal } : {}),
          });
          if (!schemas.output(output)) {
            throw new PlinthError('PLINTH_ERR_STAGE_OUTPUT_INVALID', `extension ${this.id}, stage ${stage}: the output does not match its output schema`, {
              extension: this.id,
              problems: toProblems(schemas.output.errors),
            });
          }
          return output;
        }, signal)
        .catch((err: unknown) => {
          throw isPlinthError(err) ? err : timedOut();
        });
    });
  }

  /**
   * Delivers an event to handleEvent, through the breaker and the concurrency quota like a call, bounded by the
   * call timeout. A breaker that is open, or an extension that is not running, rejects: the bus counts that as a
   * failed attempt and retries (issue 10), so the event is not lost.
   */
  async deliver(event: DeliveredEvent): Promise<void> {
    const timeoutMs = this.#limits.callTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const signal = AbortSignal.timeout(timeoutMs);
    const timedOut = () => new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', `extension ${this.id}, handleEvent(${event.topic}): not done within ${timeoutMs} ms`, { extension: this.id });
    // A stopped extension's breaker is disposed: say so with our own code, not the breaker's shutdown text.
    if (this.#stopping) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.id} is stopping`, { extension: this.id });
    this.#inflight++;
    try {
      await this.breaker.run(async () => {
        await this.#whenServing(signal).catch((err: unknown) => {
          throw isPlinthError(err) ? err : timedOut();
        });
        await this.#bulkhead
          .run(async () => {
            const sandbox = this.#sandbox;
            if (!sandbox) throw this.#unavailable();
            await sandbox.deliver(event, { timeoutMs: Math.max(1, deadline - Date.now()), traceId: event.headers?.traceId ?? randomUUID() });
          }, signal)
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

  async #whenServing(signal: AbortSignal): Promise<void> {
    if (this.#stopping) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.id} is stopping`, { extension: this.id });
    if (this.#state === 'failed' || this.#state === 'stopped') throw this.#unavailable();
    if (this.#sandbox && !this.#restarting) return;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#ready.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
    if (!this.#sandbox) throw this.#unavailable();
  }

  /** Stops: stopping → stopped. The extension's stop() is time-boxed; never throws. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    const sandbox = this.#sandbox;
    this.#sandbox = undefined;
    if (this.#state !== 'failed') this.#transition('stopping');
    await sandbox?.stop(timeoutMs);
    this.breaker.dispose();
    if (this.#state !== 'failed') this.#transition('stopped');
  }
}

function asPlinthError(err: unknown, extension: string, code: 'PLINTH_ERR_EXTENSION_LOAD_FAILED'): PlinthError {
  if (isPlinthError(err)) return err;
  return new PlinthError(code, `extension ${extension}: ${err instanceof Error ? err.message : String(err)}`, { extension });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
    promise.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}
