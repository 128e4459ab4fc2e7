// The runners of one remote extension (one id, one version): every connection that registered it, each an
// instance with its own state (idle → initializing → ready → draining; gone when its connection closes), calls
// in flight, last probe and breaker. The pool outlives the sandboxes the supervisor makes over it (a restart
// stops and re-initializes the runners, it does not drop them) and picks the instance for each call by the
// strategy the host config names (`extensions.<id>.pool.strategy`, seed U43). A draining instance never gets a
// new call; an instance whose connection closes fails its calls in flight with PLINTH_ERR_RUNNER_DISCONNECTED.
import { debuglog } from 'node:util';
import { PlinthError } from '../../errors.ts';
import type { BreakerSettings, PoolStrategy } from '../../config/index.ts';
import { Breaker, outcomeOf, type BreakerPermit, type BreakerState } from '../../resilience/index.ts';
import type { Peer } from '../link/index.ts';
import type { ContextHandler } from '../types.ts';
import { REMOTE_METHODS, type InitializeParams } from './protocol.ts';

const debug = debuglog('plinth:remote');

export const POOL_STRATEGIES: readonly PoolStrategy[] = ['round-robin', 'least-outstanding', 'health-based'];

/** One runner's connection as the pool sees it (the control channel makes it). */
export interface RunnerLink {
  readonly peer: Peer;
  /** The control connection's number, for listings and logs. */
  readonly connection: number;
  /** Closes the connection (the runner sees a close with `reason`). */
  close(reason: string): void;
}

export type InstanceState = 'idle' | 'initializing' | 'ready' | 'draining';

export interface InstanceInfo {
  instance: string;
  connection: number;
  state: InstanceState;
  outstanding: number;
  /** The last health probe's answer; null before the first. */
  healthy: boolean | null;
  breaker: BreakerState;
  calls: number;
  failures: number;
  since: string;
}

export interface PoolInfo {
  strategy: PoolStrategy;
  instances: InstanceInfo[];
  /** Calls in flight over every instance. */
  outstanding: number;
  /** Instances that take new calls (ready, not draining). */
  ready: number;
}

export class RunnerInstance {
  readonly key: string;
  readonly link: RunnerLink;
  readonly breaker: Breaker;
  state: InstanceState = 'idle';
  outstanding = 0;
  calls = 0;
  failures = 0;
  healthy: boolean | undefined;
  readonly since = new Date();
  /** Resolves when no call is in flight (draining waits on it). */
  #idle: Array<() => void> = [];

  constructor(key: string, link: RunnerLink, breaker: Breaker) {
    this.key = key;
    this.link = link;
    this.breaker = breaker;
  }

  get peer(): Peer {
    return this.link.peer;
  }

  settled(): void {
    if (this.outstanding === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  whenIdle(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  info(): InstanceInfo {
    return {
      instance: this.key,
      connection: this.link.connection,
      state: this.state,
      outstanding: this.outstanding,
      healthy: this.healthy ?? null,
      breaker: this.breaker.state,
      calls: this.calls,
      failures: this.failures,
      since: this.since.toISOString(),
    };
  }
}

/** What the sandbox bound to the pool gives it: the initialize params and the ctx handler of its instance. */
export interface PoolBinding {
  initialize(): InitializeParams;
  readonly context: ContextHandler;
  readonly startTimeoutMs: number;
}

export interface RunnerPoolOptions {
  strategy: PoolStrategy;
  breaker: BreakerSettings;
  /** Told when the pool goes from no ready instance to one (true), or back (false, with why). */
  onAvailability?: (available: boolean, reason: PlinthError | undefined) => void;
}

export class RunnerPool {
  readonly id: string;
  readonly version: string;
  #strategy: PoolStrategy;
  readonly #breakerSettings: BreakerSettings;
  readonly #instances = new Map<string, RunnerInstance>();
  #binding: PoolBinding | undefined;
  #turn = 0;
  #available = false;
  readonly #availability: Array<(available: boolean, reason: PlinthError | undefined) => void> = [];

  constructor(id: string, version: string, options: RunnerPoolOptions) {
    this.id = id;
    this.version = version;
    this.#strategy = options.strategy;
    this.#breakerSettings = options.breaker;
    if (options.onAvailability) this.#availability.push(options.onAvailability);
  }

  get strategy(): PoolStrategy {
    return this.#strategy;
  }

  set strategy(s: PoolStrategy) {
    this.#strategy = s;
  }

  get size(): number {
    return this.#instances.size;
  }

  get available(): boolean {
    return this.#available;
  }

  instances(): RunnerInstance[] {
    return [...this.#instances.values()];
  }

  info(): PoolInfo {
    const instances = this.instances().map((i) => i.info());
    return { strategy: this.#strategy, instances, outstanding: instances.reduce((n, i) => n + i.outstanding, 0), ready: instances.filter((i) => i.state === 'ready').length };
  }

  onAvailability(listener: (available: boolean, reason: PlinthError | undefined) => void): () => void {
    this.#availability.push(listener);
    return () => {
      const i = this.#availability.indexOf(listener);
      if (i >= 0) this.#availability.splice(i, 1);
    };
  }

  #recompute(reason?: PlinthError): void {
    const now = this.instances().some((i) => i.state === 'ready');
    if (now === this.#available) return;
    this.#available = now;
    for (const l of [...this.#availability]) {
      try {
        l(now, now ? undefined : reason);
      } catch (err) {
        debug('%s: an availability listener threw: %s', this.id, String(err));
      }
    }
  }

  /**
   * Adds a registered runner. When a sandbox is bound (the extension is serving) it is initialized now and this
   * resolves once it is ready (rejects, and the instance is gone, if initialize fails). A runner reconnecting
   * under the key of a connection still open replaces it (the old one is closed: it was half-open).
   */
  async add(key: string, link: RunnerLink): Promise<RunnerInstance> {
    const old = this.#instances.get(key);
    if (old && old.link !== link) {
      this.#instances.delete(key);
      old.link.close('replaced by a new connection of the same runner instance');
    }
    const instance = new RunnerInstance(key, link, new Breaker(`${this.id} (runner ${key})`, this.#breakerSettings));
    this.#instances.set(key, instance);
    link.peer.onClose((why) => this.#lost(instance, why));
    const binding = this.#binding;
    if (binding) await this.#initialize(instance, binding);
    return instance;
  }

  #lost(instance: RunnerInstance, why: string): void {
    if (this.#instances.get(instance.key) !== instance) return;
    this.#instances.delete(instance.key);
    const graceful = instance.state === 'draining';
    debug('%s: runner %s gone (%s)', this.id, instance.key, why);
    this.#recompute(
      new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', `extension ${this.id}: ${graceful ? 'its last runner stopped' : `its runner ${instance.key} disconnected (${why})`}; no runner is connected`, {
        extension: this.id,
        hint: 'start a runner of it again; calls fail with PLINTH_ERR_RUNNER_DISCONNECTED until one registers',
      }),
    );
  }

  /** The runner said it is stopping: no new calls; it closes once its calls in flight are answered. */
  drain(instance: RunnerInstance): void {
    if (this.#instances.get(instance.key) !== instance) return;
    instance.state = 'draining';
    this.#recompute(new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', `extension ${this.id}: its runners are all draining (stopping)`, { extension: this.id, hint: 'start another runner of it' }));
  }

  async #initialize(instance: RunnerInstance, binding: PoolBinding): Promise<void> {
    instance.state = 'initializing';
    try {
      await request(instance, REMOTE_METHODS.initialize, binding.initialize(), binding.startTimeoutMs, undefined, this.id);
    } catch (err) {
      if (this.#instances.get(instance.key) === instance) this.#instances.delete(instance.key);
      instance.link.close('extension.initialize failed');
      const why = err instanceof PlinthError ? `${err.code}: ${err.message}` : String(err);
      throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${this.id}: its runner ${instance.key} failed to initialize: ${why}`, {
        extension: this.id,
        cause: err,
        ...(err instanceof PlinthError && err.extensionStack ? { extensionStack: err.extensionStack } : {}),
      });
    }
    if (this.#instances.get(instance.key) !== instance) throw disconnected(this.id, instance.key, 'while it initialized');
    if (this.#binding !== binding) {
      instance.state = 'idle';
      return;
    }
    if (instance.state === 'initializing') instance.state = 'ready';
    this.#recompute();
  }

  /**
   * Binds a sandbox (its start): every connected runner is initialized. Resolves when all have answered; rejects
   * with the first failure only when every runner failed (an empty pool starts unavailable, not failed).
   */
  async bind(binding: PoolBinding): Promise<void> {
    this.#binding = binding;
    const pending = this.instances().filter((i) => i.state === 'idle');
    const results = await Promise.allSettled(pending.map((i) => this.#initialize(i, binding)));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (pending.length > 0 && failed.length === pending.length && !this.instances().some((i) => i.state === 'ready')) throw failed[0]!.reason;
  }

  /** Unbinds the sandbox (its stop): each ready runner is sent extension.stop, within `timeoutMs`, and is idle again. */
  async unbind(binding: PoolBinding, timeoutMs: number): Promise<void> {
    if (this.#binding !== binding) return;
    this.#binding = undefined;
    const running = this.instances().filter((i) => i.state !== 'idle');
    for (const i of running) if (i.state !== 'draining') i.state = 'idle';
    this.#recompute(new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.id} is stopping`, { extension: this.id }));
    await Promise.allSettled(running.map((i) => request(i, REMOTE_METHODS.stop, {}, timeoutMs, undefined, this.id)));
  }

  get binding(): PoolBinding | undefined {
    return this.#binding;
  }

  /** The instance for the next call, by the strategy; PLINTH_ERR_RUNNER_DISCONNECTED when none is ready. */
  pick(): { instance: RunnerInstance; permit: BreakerPermit | undefined } {
    const ready = this.instances().filter((i) => i.state === 'ready');
    if (ready.length === 0) {
      const draining = this.instances().some((i) => i.state === 'draining');
      throw new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', `extension ${this.id}: no runner is ${draining ? 'taking calls (every one is draining)' : 'connected'}`, {
        extension: this.id,
        hint: 'start a runner of it (runExtension from plinth/sdk); a pipeline retries this code under its retry policy',
      });
    }
    const turn = this.#turn++;
    if (this.#strategy === 'round-robin') return { instance: ready[turn % ready.length]!, permit: undefined };
    let candidates = ready;
    const permits = new Map<RunnerInstance, BreakerPermit>();
    if (this.#strategy === 'health-based') {
      const healthy = ready.filter((i) => i.healthy !== false && i.breaker.state !== 'open');
      if (healthy.length > 0) candidates = healthy;
    }
    // Least outstanding; ties go round the candidates from this call's turn, so equal runners share the load.
    let best: RunnerInstance | undefined;
    for (let k = 0; k < candidates.length; k++) {
      const c = candidates[(turn + k) % candidates.length]!;
      if (!best || c.outstanding < best.outstanding) best = c;
    }
    if (this.#strategy === 'health-based') {
      try {
        permits.set(best!, best!.breaker.admit());
      } catch {
        // half-open with its probe slots taken: the call goes anyway, uncounted
      }
    }
    return { instance: best!, permit: permits.get(best!) };
  }

  /** Sends `method` to one instance, counting it as outstanding there; failures are coded (see request()). */
  async run(picked: { instance: RunnerInstance; permit: BreakerPermit | undefined }, method: string, params: unknown, timeoutMs: number, signal: AbortSignal | undefined): Promise<unknown> {
    const { instance, permit } = picked;
    instance.outstanding++;
    instance.calls++;
    const started = performance.now();
    try {
      const result = await request(instance, method, params, timeoutMs, signal, this.id);
      permit?.record('success', performance.now() - started);
      return result;
    } catch (err) {
      instance.failures++;
      permit?.record(outcomeOf(err), performance.now() - started);
      throw err;
    } finally {
      instance.outstanding--;
      instance.settled();
    }
  }

  /** Probes every ready or draining instance; records each answer. True when at least one ready instance is healthy. */
  async probe(timeoutMs: number): Promise<boolean> {
    const targets = this.instances().filter((i) => i.state === 'ready' || i.state === 'draining');
    const answers = await Promise.all(
      targets.map(async (i) => {
        let healthy: boolean;
        try {
          const r = (await request(i, REMOTE_METHODS.healthCheck, {}, timeoutMs, undefined, this.id)) as { healthy?: unknown } | null;
          healthy = typeof r === 'object' && r !== null && r.healthy === true;
        } catch {
          healthy = false;
        }
        i.healthy = healthy;
        return i.state === 'ready' && healthy;
      }),
    );
    return answers.some(Boolean);
  }

  /** Closes every runner connection (the extension was removed or disabled). */
  closeAll(reason: string): void {
    for (const i of this.instances()) i.link.close(reason);
  }
}

function disconnected(id: string, key: string, when: string): PlinthError {
  return new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', `extension ${id}: its runner ${key} disconnected ${when}`, {
    extension: id,
    hint: 'retry: another runner of the pool, or this one once it reconnects, serves it (pipelines retry this code)',
  });
}

/** Codes a runner may answer with as they are; anything else it says is STAGE_FAILED (it cannot claim host states). */
const RUNNER_CODES: ReadonlySet<string> = new Set([
  'PLINTH_ERR_STAGE_FAILED',
  'PLINTH_ERR_STAGE_UNKNOWN',
  'PLINTH_ERR_STAGE_TIMEOUT',
  'PLINTH_ERR_CANCELLED',
  'PLINTH_ERR_PERMISSION_DENIED',
  'PLINTH_ERR_QUOTA_EXCEEDED',
  'PLINTH_ERR_RESULT_TOO_LARGE',
  'PLINTH_ERR_EXTENSION_LOAD_FAILED',
]);

const cap = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…` : s);

/**
 * One request to a runner, bounded by `timeoutMs` (past it the runner is sent $/cancelRequest and the call fails
 * with STAGE_TIMEOUT: a runner's process is not the host's to stop), cancelled by `signal` (CANCELLED). A link that
 * closes fails it with RUNNER_DISCONNECTED. What the runner answers is attacker input: its code is kept only if it
 * is one a stage may fail with, its message and stack are capped.
 */
export function request(instance: RunnerInstance, method: string, params: unknown, timeoutMs: number, signal: AbortSignal | undefined, id: string): Promise<unknown> {
  if (instance.peer.closed) return Promise.reject(disconnected(id, instance.key, 'before the call was sent'));
  if (signal?.aborted) return Promise.reject(new PlinthError('PLINTH_ERR_CANCELLED', `extension ${id}: the call was cancelled by its caller before it ran`, { extension: id }));
  return new Promise((resolve, reject) => {
    const cancel = new AbortController();
    let done = false;
    const finish = (err: unknown, value?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err === undefined) resolve(value);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- always a PlinthError made here
      else reject(err);
    };
    const timer = setTimeout(() => {
      cancel.abort();
      finish(new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', `extension ${id}: its runner ${instance.key} did not answer ${method} within ${timeoutMs} ms (it was sent $/cancelRequest)`, { extension: id, hint: 'make the stage faster, or raise its timeoutMs / limits.callTimeoutMs' }));
    }, timeoutMs);
    timer.unref();
    const onAbort = () => {
      cancel.abort();
      finish(new PlinthError('PLINTH_ERR_CANCELLED', `extension ${id}: the call was cancelled by its caller`, { extension: id }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    instance.peer.request(method, params, { signal: cancel.signal }).then(
      (value) => finish(undefined, value),
      (err: unknown) => {
        if (instance.peer.closed) return finish(disconnected(id, instance.key, `during ${method}`));
        if (!(err instanceof PlinthError)) return finish(new PlinthError('PLINTH_ERR_STAGE_FAILED', `extension ${id}: ${method} failed: ${cap(String(err), 4096)}`, { extension: id }));
        if (err.code === 'PLINTH_ERR_LINK_PROTOCOL') return finish(new PlinthError('PLINTH_ERR_LINK_PROTOCOL', `extension ${id}: its runner ${instance.key} answered ${method} with a protocol error: ${cap(err.message, 1024)}`, { extension: id, hint: 'the runner does not speak the remote protocol (docs/remote.md)' }));
        const code = RUNNER_CODES.has(err.code) ? err.code : 'PLINTH_ERR_STAGE_FAILED';
        finish(
          new PlinthError(code, cap(err.message, 4096), {
            extension: id,
            ...(err.hint ? { hint: cap(err.hint, 1024) } : {}),
            ...(err.extensionStack ? { extensionStack: cap(err.extensionStack, 16_384) } : {}),
          }),
        );
      },
    );
  });
}
