// The Sandbox over a pool of runners (the supervisor makes one per start or restart; the pool outlives it).
// start() initializes every connected runner, stop() sends them extension.stop; calls and events go to the
// instance the pool's strategy picks. There is no process of ours to crash or kill: a runner that goes away is a
// change of availability (onAvailability: the supervisor marks the extension degraded, and active again when a
// runner is back), never an exit that would make the supervisor restart and eventually fail the extension.
import { PlinthError } from '../../errors.ts';
import { checkTimeout, grantedEnv } from '../options.ts';
import type { CallOptions, ContextHandler, ContextOp, Sandbox, SandboxExit, SandboxSpec } from '../types.ts';
import type { HealthResult, Json, PlinthEvent } from '../../sdk/index.ts';
import { REMOTE_METHODS, type ExecuteParams, type ExecuteResult, type InitializeParams } from './protocol.ts';
import type { PoolBinding, RunnerPool } from './pool.ts';

/** Absolute paths in a host error message would tell the runner about the host: they are replaced. */
function scrub(message: string): string {
  return message.replace(/(^|[\s'"(=])\/[^\s'"()]+/g, '$1<path>').slice(0, 4096);
}

export class RemoteSandbox implements Sandbox {
  readonly runtime = 'remote' as const;
  readonly spec: SandboxSpec;
  readonly #context: ContextHandler;
  readonly #pool: RunnerPool;
  #binding: PoolBinding | undefined;
  #state: 'idle' | 'running' | 'stopped' = 'idle';
  readonly #availability: Array<(available: boolean, reason?: PlinthError) => void> = [];
  #offAvailability: (() => void) | undefined;

  constructor(spec: SandboxSpec, context: ContextHandler, pool: RunnerPool) {
    this.spec = spec;
    this.#context = context;
    this.#pool = pool;
  }

  get pool(): RunnerPool {
    return this.#pool;
  }

  async start(): Promise<void> {
    if (this.#state !== 'idle') throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.spec.id}: the sandbox was stopped before it started`, { extension: this.spec.id });
    const env = await grantedEnv(this.spec, this.#context);
    const params: InitializeParams = {
      instanceId: this.spec.instanceId,
      config: this.spec.config,
      env,
      limits: { callTimeoutMs: this.spec.limits.callTimeoutMs, concurrency: this.spec.limits.concurrency },
      stages: this.spec.stages,
    };
    const binding: PoolBinding = { initialize: () => params, context: (op) => this.ctx(op), startTimeoutMs: this.spec.limits.startTimeoutMs ?? this.spec.limits.callTimeoutMs };
    this.#binding = binding;
    this.#offAvailability = this.#pool.onAvailability((up, reason) => {
      for (const l of this.#availability) l(up, reason);
    });
    await this.#pool.bind(binding);
    this.#state = 'running';
  }

  /** A ctx op from one of the runners: the host's grants decide; what goes back names no host path. */
  async ctx(op: ContextOp): Promise<Json | undefined> {
    if (this.#state === 'stopped') throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.spec.id} is stopped`, { extension: this.spec.id });
    try {
      return await this.#context(op);
    } catch (err) {
      const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown; hint?: unknown };
      const code = err instanceof PlinthError ? err.code : 'PLINTH_ERR_STAGE_FAILED';
      throw new PlinthError(code, scrub(typeof e.message === 'string' ? e.message : String(err)), {
        extension: this.spec.id,
        ...(typeof e.hint === 'string' ? { hint: scrub(e.hint) } : {}),
      });
    }
  }

  #check(): void {
    if (this.#state === 'stopped') throw new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${this.spec.id}: the sandbox is stopped`, { extension: this.spec.id });
    if (this.#state !== 'running') throw new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${this.spec.id}: the sandbox is not started`, { extension: this.spec.id });
  }

  async call(stage: string, input: Json, options: CallOptions): Promise<Json> {
    this.#check();
    checkTimeout(this.spec.id, options.timeoutMs);
    if (!this.spec.stages.includes(stage)) {
      throw new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `extension ${this.spec.id} declares no stage "${stage}" (it declares: ${this.spec.stages.join(', ') || 'none'})`, { extension: this.spec.id });
    }
    const params: ExecuteParams = { stage, input, timeoutMs: options.timeoutMs, traceId: options.traceId, ...(options.runId === undefined ? {} : { runId: options.runId }) };
    const result = (await this.#pool.run(this.#pool.pick(), REMOTE_METHODS.execute, params, options.timeoutMs, options.signal)) as ExecuteResult | null;
    if (typeof result !== 'object' || result === null || Array.isArray(result) || !Object.hasOwn(result, 'output')) {
      throw new PlinthError('PLINTH_ERR_STAGE_FAILED', `extension ${this.spec.id}, stage ${stage}: its runner answered stage.execute without an "output"`, { extension: this.spec.id, hint: 'a runner answers stage.execute with { "output": <JSON> } (docs/remote.md)' });
    }
    return result.output;
  }

  async deliver(event: PlinthEvent, options: CallOptions): Promise<void> {
    this.#check();
    checkTimeout(this.spec.id, options.timeoutMs);
    await this.#pool.run(this.#pool.pick(), REMOTE_METHODS.handleEvent, { event, timeoutMs: options.timeoutMs }, options.timeoutMs, options.signal);
  }

  /** Probes every runner (each answer is recorded for `health-based`); healthy when one ready runner is. */
  async health(timeoutMs: number): Promise<HealthResult> {
    this.#check();
    checkTimeout(this.spec.id, timeoutMs);
    if (this.#pool.size === 0) return { healthy: false, detail: 'no runner is connected' };
    const healthy = await this.#pool.probe(timeoutMs);
    return healthy ? true : { healthy: false, detail: 'no ready runner answered its health check healthy' };
  }

  async stop(timeoutMs: number): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    this.#offAvailability?.();
    if (this.#binding) await this.#pool.unbind(this.#binding, Math.max(1, timeoutMs));
  }

  /** A pool has no process of its own to end: nothing is ever reported here (see onAvailability). */
  onExit(listener: (exit: SandboxExit) => void): void {
    void listener;
  }

  get available(): boolean {
    return this.#pool.available;
  }

  onAvailability(listener: (available: boolean, reason?: PlinthError) => void): void {
    this.#availability.push(listener);
  }
}
