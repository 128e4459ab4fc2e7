// The embedded host: configuration → trust store → registry (discovery, trust, resolution, supervised
// sandboxes), an event bus, and optionally a watcher that hot-reloads the plugin directories. The CLI
// (`plinth call`, `plinth serve`) and the tests drive a Host.
import { pino, type Logger } from 'pino';
import { PlinthError, isPlinthError } from '../errors.ts';
import { durationMs, type HostConfig } from '../config/index.ts';
import { DurableBus, attachRoutesAndRules, type AttachedEvents, type BusClock, type Clock as CepClock } from '../events/index.ts';
import { openStoreLazily, type Store } from '../store/index.ts';
import type { Json } from '../sdk/index.ts';
import { FetchBreakers, KvStore, type Resolver } from '../policy/index.ts';
import { IsolateProcess } from '../sandbox/index.ts';
import { watchPluginDirs, type PluginWatcher, type WatchOptions } from '../discovery/index.ts';
import { createRegistry, loadTrustStoreFor, type Registry, type RegistryEntry, type RunnerSession } from '../registry/index.ts';
import type { CallRequest, ManagedExtension } from '../registry/extension.ts';
import type { SandboxFactory, RegisterParams, RegisterResult, RunnerLink } from '../sandbox/index.ts';
import { createPipelineService, type PipelineServiceHandle, type StageCatalog } from '../pipeline/index.ts';

export interface HostOptions {
  /** Where logs go; defaults to pino on stderr at config.log.level. */
  logger?: Logger;
  /** Replaces how sandboxes are made (the runtimes are always real; tests use this to count or wrap them). */
  makeSandbox?: SandboxFactory;
  env?: NodeJS.ProcessEnv;
  /** Restart backoff for every extension (tests shorten it). */
  backoff?: Partial<HostConfig['defaults']['restart']>;
  /** Whether stop() also ends the shared isolate sandbox processes (default true; false when other hosts in this process still use them). */
  stopSandboxProcesses?: boolean;
  /** Refuse extensions that drift from this lockfile. */
  frozenLockfile?: string;
  /** How long an old version may finish its in-flight calls during a hot swap. */
  drainMs?: number;
  /** How ctx.fetch resolves host names (tests play a rebinding name server with it). */
  resolve?: Resolver;
  /** The clock of the bus (retries, dead-letter expiry) and of complex-event rules; tests move a ManualClock. */
  clock?: BusClock | CepClock;
  /** How often rule state expires and absences fire, in ms (default 1000; 0: only when `events.rules.tick()` is called). */
  ruleTickMs?: number;
  /** The pipeline engine's clock (retry delays, run timeouts) and randomness (jitter); tests inject them. */
  pipelineClock?: BusClock;
  pipelineRandom?: () => number;
  /** Plugin folders `plinth dev` serves (untrusted workers allowed there; never from the host config). */
  devFolders?: ReadonlySet<string>;
}

export type HostExtensionInfo = RegistryEntry;

/** Told of every stage call made through the host (the control channel's metrics): its start, and how it ended. */
export interface CallObserver {
  started(extension: string, stage: string): void;
  /** `outcome` is 'ok' or the PLINTH_ERR_* code it failed with. */
  ended(extension: string, stage: string, outcome: string, seconds: number): void;
}

/** A finished stage call with what went in and came out (`plinth dev --record` stores them). */
export interface StageCallRecord {
  extension: string;
  /** The version that served it. */
  version: string;
  stage: string;
  input: Json;
  output?: Json;
  error?: PlinthError;
}

export class Host {
  readonly config: HostConfig;
  /** The data dir's store: event journal, pending deliveries, dead letters, kv. Opened by start() or first use. */
  readonly store: Store & { open(): void };
  readonly bus: DurableBus;
  readonly log: Logger;
  readonly #options: HostOptions;
  readonly #kv = new Map<string, KvStore>();
  readonly #fetchBreakers: FetchBreakers;
  #registry: Registry | undefined;
  #events: AttachedEvents | undefined;
  #watcher: PluginWatcher | undefined;
  /** Reloads run one at a time; changes during one schedule exactly one more. */
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #pipelines: PipelineServiceHandle | undefined;
  readonly #callObservers = new Set<CallObserver>();
  readonly #stageRecorders = new Set<(record: StageCallRecord) => void>();

  constructor(config: HostConfig, options: HostOptions = {}) {
    this.config = config;
    this.#options = options;
    this.#fetchBreakers = new FetchBreakers(config.policy?.fetchBreaker);
    this.log = options.logger ?? pino({ level: config.log.level, base: undefined }, pino.destination(2));
    // Durable subscribers attached before start() open it; otherwise start() does (a refused file throws there).
    this.store = openStoreLazily(config.dataDir);
    const ev = config.events;
    this.bus = new DurableBus({
      store: this.store,
      maxPayloadBytes: ev.maxPayloadBytes,
      deadLetterTtlMs: durationMs(ev.deadLetterTtl),
      maxQueuedPerSubscriber: ev.maxQueuedPerSubscriber,
      maxInFlightPerSubscriber: ev.maxInFlightPerSubscriber,
      deliveryTimeoutMs: durationMs(ev.deliveryTimeout),
      retry: ev.retry,
      ...(options.clock && 'setTimeout' in options.clock ? { clock: options.clock } : {}),
      onError: (message, fields) => this.log.error(fields, message),
      onDeadLetter: (d) => this.log.warn({ subscriber: d.subscriber, topic: d.event.topic, eventId: d.event.id, deadLetter: d.id, attempts: d.attempts.length }, `event ${d.event.topic} dead-lettered for ${d.subscriber} after ${d.attempts.length} attempt(s): ${d.attempts.at(-1)?.error.message ?? ''}`),
    });
  }

  get #reg(): Registry {
    if (!this.#registry) throw new PlinthError('PLINTH_ERR_HOST_NOT_STARTED', 'the host has not been started', { hint: 'await host.start() first' });
    return this.#registry;
  }

  /**
   * Loads the trust store, then discovers, verifies, resolves and starts every extension in dependency order,
   * each as soon as its own dependencies serve. Resolves when every start has settled, or with `background` as soon
   * as they have begun: each extension then serves once it is active, and call() waits only for the one it calls.
   */
  async start(options: { background?: boolean } = {}): Promise<void> {
    this.store.open();
    // Routes and rules first, so they see the lifecycle events of the extensions starting below.
    this.#events = attachRoutesAndRules({
      subscribe: (pattern, listener) => this.bus.subscribe(pattern, listener),
      publish: async (topic, payload, source, headers) => {
        await this.bus.publish(topic, payload, source, headers);
      },
      settings: this.config.events,
      callStage: (extension, stage, input) => this.call(extension, stage, input),
      onWarning: (warning) => this.log.warn({ code: warning.code, hint: warning.hint }, warning.message),
      ...(this.#options.clock ? { clock: this.#options.clock } : {}),
      ...(this.#options.ruleTickMs !== undefined ? { tickMs: this.#options.ruleTickMs } : {}),
    });
    const trustStore = await loadTrustStoreFor(this.config.trust.store, this.config.trust.policy);
    this.#registry = createRegistry(this.config, {
      log: this.log,
      bus: this.bus,
      kv: (id) => {
        // Durable: loaded from the store once per id, written through on every set/delete.
        let kv = this.#kv.get(id);
        if (!kv) this.#kv.set(id, (kv = KvStore.durable(this.store.kv(id))));
        return kv;
      },
      env: this.#options.env ?? process.env,
      trustStore,
      ...(this.#options.makeSandbox ? { makeSandbox: this.#options.makeSandbox } : {}),
      ...(this.#options.backoff ? { backoff: this.#options.backoff } : {}),
      ...(this.#options.frozenLockfile ? { frozenLockfile: this.#options.frozenLockfile } : {}),
      ...(this.#options.drainMs !== undefined ? { drainMs: this.#options.drainMs } : {}),
      ...(this.#options.resolve ? { resolve: this.#options.resolve } : {}),
      fetchBreakers: this.#fetchBreakers,
      ...(this.#options.devFolders ? { devFolders: this.#options.devFolders } : {}),
    });
    await this.#registry.load(options);
  }

  /** Watches the plugin directories and reconciles on every settled change. Resolves once watching. */
  async watch(options: WatchOptions = {}): Promise<void> {
    if (this.#watcher) return;
    this.#watcher = watchPluginDirs(this.config.plugins, (paths) => void this.reload(paths), {
      ...options,
      onError: (err) => this.log.error({ err }, 'watching the plugin directories failed'),
    });
    await this.#watcher.ready;
  }

  /** Re-scans and reconciles (what the watcher calls). Concurrent requests coalesce into one more round. */
  reload(paths: string[] = []): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.log.debug({ paths: paths.slice(0, 20) }, 'plugin directories changed: reloading');
    this.#reloading = (async () => {
      do {
        this.#reloadAgain = false;
        try {
          await this.#reg.reconcile();
        } catch (err) {
          this.log.error({ err }, `reload failed: ${String(err)}`);
        }
      } while (this.#reloadAgain && !this.#stopped);
    })().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  /** The routes and complex-event rules of the host config, once started (stats, and tick() for tests). */
  get events(): AttachedEvents {
    if (!this.#events) throw new PlinthError('PLINTH_ERR_SHUTDOWN', 'the host has not been started', { hint: 'call start() first' });
    return this.#events;
  }

  /** The pipeline service (issue 11): runs, their journal, triggers. Created on first use. */
  get pipelines(): PipelineServiceHandle {
    this.#pipelines ??= createPipelineService(this, {
      maxConcurrentStages: this.config.pipelines.maxConcurrentStages,
      maxQueuedRuns: this.config.pipelines.maxQueuedRuns,
      ...(this.#options.pipelineClock ? { clock: this.#options.pipelineClock } : {}),
      ...(this.#options.pipelineRandom ? { random: this.#options.pipelineRandom } : {}),
      env: this.#options.env ?? process.env,
      maxHops: this.config.events.maxHops,
    });
    return this.#pipelines;
  }

  /** What the pipeline checks read: each active extension's stages with their declared schemas. */
  stageCatalog(): StageCatalog {
    const extensionOf = (id: string) => {
      const ext = this.#reg.get(id);
      if (!ext) return undefined;
      const stages: Record<string, { input: Json; output: Json }> = {};
      for (const [name, decl] of Object.entries(ext.pkg.manifest.stages)) stages[name] = { input: decl.input as Json, output: decl.output as Json };
      return { version: ext.version, stages };
    };
    return {
      extension: extensionOf,
      ids: () => [...new Set(this.#reg.list().map((e) => e.id))],
    };
  }

  get(id: string): ManagedExtension | undefined {
    return this.#reg.get(id);
  }

  list(): HostExtensionInfo[] {
    return this.#reg.list();
  }

  findByCapability(capability: string): ManagedExtension[] {
    return this.#reg.findByCapability(capability);
  }

  call(id: string, stage: string, input: Json, request: CallRequest = {}): Promise<Json> {
    // Every call's path: a running extension, nobody observing calls. No async frame here (an async function that
    // returns a promise costs two more turns and their allocations; issue 14).
    const ext = this.#reg.get(id);
    if (ext && this.#callObservers.size === 0 && this.#stageRecorders.size === 0) return ext.call(stage, input, request);
    return this.#call(id, stage, input, request);
  }

  async #call(id: string, stage: string, input: Json, request: CallRequest): Promise<Json> {
    // Still starting (a background start): wait for this one only; its start is bounded by its own limits.
    const starting = this.#reg.get(id) ? undefined : this.#reg.starting(id);
    if (starting) await starting;
    const ext = this.#reg.get(id);
    if (!ext) {
      const known = this.#reg.notRunning(id);
      if (known) {
        throw new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${id} is ${known.state}${known.reason ? `: ${String(known.reason.message)}` : ''}`, {
          extension: id,
          hint: typeof known.reason?.hint === 'string' ? known.reason.hint : 'see `plinth ls`',
        });
      }
      throw new PlinthError('PLINTH_ERR_EXTENSION_NOT_FOUND', `no extension "${id}" in ${this.config.plugins.join(', ') || '(no plugin directories)'}`, {
        extension: id,
        hint: 'run `plinth ls` to see the extensions and their ids',
      });
    }
    if (this.#callObservers.size === 0 && this.#stageRecorders.size === 0) return ext.call(stage, input, request);
    for (const o of this.#callObservers) o.started(id, stage);
    const started = performance.now();
    let outcome = 'ok';
    try {
      const output = await ext.call(stage, input, request);
      this.#recordStage({ extension: id, version: ext.version, stage, input, output });
      return output;
    } catch (err) {
      outcome = isPlinthError(err) ? err.code : 'PLINTH_ERR_INTERNAL';
      this.#recordStage({ extension: id, version: ext.version, stage, input, error: isPlinthError(err) ? err : new PlinthError('PLINTH_ERR_INTERNAL', String(err)) });
      throw err;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      for (const o of this.#callObservers) o.ended(id, stage, outcome, seconds);
    }
  }

  /**
   * A remote runner's runner.register on a control connection (issue 13, docs/remote.md): verified under
   * sandbox.remote and the trust policy, then served like any extension until its connection closes.
   */
  registerRunner(params: RegisterParams, link: RunnerLink): Promise<{ result: RegisterResult; session: RunnerSession }> {
    return this.#reg.registerRunner(params, link);
  }

  #recordStage(record: StageCallRecord): void {
    for (const r of this.#stageRecorders) {
      try {
        r(record);
      } catch (err) {
        this.log.warn({ extension: record.extension, stage: record.stage }, `recording a stage call failed: ${String(err)}`);
      }
    }
  }

  /**
   * Adds a recorder told of every stage call made through the host — from pipelines, routes, the control channel or
   * `call()` — with its input and output (or error), after it ended; returns its removal.
   */
  recordStageCalls(recorder: (record: StageCallRecord) => void): () => void {
    this.#stageRecorders.add(recorder);
    return () => this.#stageRecorders.delete(recorder);
  }

  /** Adds a call observer; returns its removal. */
  observeCalls(observer: CallObserver): () => void {
    this.#callObservers.add(observer);
    return () => this.#callObservers.delete(observer);
  }

  /**
   * Enables or disables an extension until the host stops (the config file is not changed): disabling stops it
   * now; enabling reconciles, which starts it. The id must be one the host lists.
   */
  async setEnabled(id: string, enabled: boolean): Promise<void> {
    if (!this.list().some((e) => e.id === id)) {
      throw new PlinthError('PLINTH_ERR_EXTENSION_NOT_FOUND', `no extension "${id}" in ${this.config.plugins.join(', ') || '(no plugin directories)'}`, { extension: id, hint: 'list them with `plinth ls --remote`' });
    }
    const current = Object.hasOwn(this.config.extensions, id) ? this.config.extensions[id] : undefined;
    // The record is keyed by a name from outside: defined as an own property, never through the prototype chain.
    Object.defineProperty(this.config.extensions, id, { value: { ...(current ?? {}), enabled }, enumerable: true, writable: true, configurable: true });
    if (!enabled) await this.#reg.disable(id);
    await this.reload();
  }

  /**
   * Stops watching, then every extension in reverse dependency order, then the sandbox processes: all within one
   * bound for the whole host (`timeoutMs`, like VS Code's 5 s), not per level. A reload in progress is not waited
   * out past that bound (an old version draining after a swap is stopped with the rest).
   */
  stop(timeoutMs = 5000): Promise<void> {
    this.#stopping ??= this.#stop(timeoutMs);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    this.#stopped = true;
    const deadline = Date.now() + timeoutMs;
    // Runs in flight stay journaled as they are: interrupted, resumable by the next host.
    this.#pipelines?.close();
    await this.#watcher?.close();
    if (this.#reloading) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.#reloading, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))]);
      clearTimeout(timer);
    }
    await this.#registry?.stopAll(Math.max(1, deadline - Date.now()));
    this.#events?.detach();
    this.#fetchBreakers.close();
    await this.bus.close();
    this.store.close();
    if (this.#options.stopSandboxProcesses !== false) await IsolateProcess.shutdownAll();
  }
}

export async function startHost(config: HostConfig, options: HostOptions & { background?: boolean } = {}): Promise<Host> {
  const host = new Host(config, options);
  await host.start(options.background ? { background: true } : {});
  return host;
}
