// The embedded host: configuration → trust store → discovered, validated, verified extensions → supervised
// sandboxes. The CLI (`plinth call`, later `serve` and `run`) and the tests drive a Host; dependency
// resolution, ordering and hot reload come with the registry issue.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { HostConfig } from '../config/index.ts';
import { LocalBus, topicWord } from '../events/index.ts';
import type { Json } from '../sdk/index.ts';
import { Budget } from '../resilience/index.ts';
import { createContextHandler, createSandbox, IsolateProcess } from '../sandbox/index.ts';
import { scanExtensions, loadTrustStoreFor, type ExtensionRecord } from '../registry/index.ts';
import { ManagedExtension, type CallRequest, type ExtensionInfo, type SandboxMaker } from '../registry/extension.ts';
import { toProblems } from '../schema/index.ts';

export interface HostOptions {
  /** Where logs go; defaults to pino on stderr at config.log.level. */
  logger?: Logger;
  /** Replaces how sandboxes are made (the runtimes are always real; tests use this to count or wrap them). */
  makeSandbox?: SandboxMaker;
  env?: NodeJS.ProcessEnv;
  /** Restart backoff for every extension (tests shorten it). */
  backoff?: { baseMs: number; maxMs: number; resetAfterMs: number };
  /** Whether stop() also ends the shared isolate sandbox processes (default true; false when other hosts in this process still use them). */
  stopSandboxProcesses?: boolean;
}

/** Listing entry: a supervised extension, or one that never got that far (failed scan, refused, disabled). */
export type HostExtensionInfo = ExtensionInfo & { path: string };

export class Host {
  readonly config: HostConfig;
  readonly bus = new LocalBus();
  readonly log: Logger;
  readonly #options: HostOptions;
  readonly #budget: Budget;
  readonly #extensions = new Map<string, ManagedExtension>();
  /** Extensions that are not supervised, with why. */
  readonly #unstarted = new Map<string, HostExtensionInfo>();
  readonly #kv = new Map<string, Map<string, Json>>();
  #stopped = false;

  constructor(config: HostConfig, options: HostOptions = {}) {
    this.config = config;
    this.#options = options;
    this.log = options.logger ?? pino({ level: config.log.level, base: undefined }, pino.destination(2));
    this.#budget = new Budget(config.budget);
  }

  /**
   * Scans the plugin directories and starts every extension that passed (or only those in `only`);
   * returns when all have settled.
   */
  async start(only?: string[]): Promise<void> {
    const store = await loadTrustStoreFor(this.config.trust.store, this.config.trust.policy);
    const { extensions, directoryErrors } = await scanExtensions(this.config.plugins, store, this.config.trust.policy);
    for (const e of directoryErrors) this.log.warn({ code: e.code, file: e.file }, e.message);
    const starting: Array<Promise<void>> = [];
    for (const record of extensions) {
      if (only && !only.includes(record.id)) continue;
      const managed = this.#prepare(record);
      if (managed) starting.push(managed.start());
    }
    await Promise.all(starting);
  }

  #refuse(record: ExtensionRecord, state: 'failed' | 'stopped', reason: PlinthError | undefined): undefined {
    // A duplicate keeps the id of the copy that won: list it under its folder so neither hides the other.
    const key = this.#unstarted.has(record.id) || this.#extensions.has(record.id) ? `${record.id} (${record.dir})` : record.id;
    this.#unstarted.set(key, {
      id: record.id,
      version: record.version ?? '',
      runtime: record.runtime ?? '',
      state,
      reason: reason ? reason.toJSON() : null,
      since: new Date().toISOString(),
      restarts: 0,
      breaker: 'closed',
      path: record.dir,
    });
    if (reason) this.log.error({ extension: record.id, code: reason.code, state }, reason.message);
    return undefined;
  }

  #prepare(record: ExtensionRecord): ManagedExtension | undefined {
    if (record.state === 'failed' || !record.pkg) return this.#refuse(record, 'failed', record.error);
    const pkg = record.pkg;
    const settings = this.config.extensions[pkg.id];
    if (settings?.enabled === false) return this.#refuse(record, 'stopped', undefined);

    if (record.trust?.status !== 'trusted' && pkg.manifest.runtime === 'worker') {
      return this.#refuse(
        record,
        'failed',
        new PlinthError('PLINTH_ERR_RUNTIME_NOT_ALLOWED', `extension ${pkg.id} is not signed by a trusted publisher, so it may run only as "isolate", not "worker"`, {
          extension: pkg.id,
          file: path.join(pkg.dir, 'package.json'),
          hint: 'sign it with a key in the trust store, or set "runtime": "isolate"',
        }),
      );
    }

    const config = structuredClone(settings?.config ?? {}) as Record<string, Json>;
    if (pkg.schemas.config && !pkg.schemas.config(config)) {
      return this.#refuse(
        record,
        'failed',
        new PlinthError('PLINTH_ERR_EXTENSION_CONFIG_INVALID', `extension ${pkg.id}: its config does not match its configSchema`, {
          extension: pkg.id,
          ...(this.config.file ? { file: this.config.file } : {}),
          problems: toProblems(pkg.schemas.config.errors).map((p) => ({ ...p, path: `/extensions/${pkg.id}/config${p.path}` })),
        }),
      );
    }

    const limits = { ...this.config.defaults.limits, ...pkg.manifest.limits };
    try {
      this.#budget.reserve(pkg.id, pkg.id, { memoryMb: limits.memoryMb, concurrency: limits.concurrency });
    } catch (err) {
      return this.#refuse(record, 'failed', err as PlinthError);
    }

    const dataDir = path.join(this.config.dataDir, 'extensions', topicWord(pkg.id));
    let kv = this.#kv.get(pkg.id);
    if (!kv) this.#kv.set(pkg.id, (kv = new Map<string, Json>()));
    const log = this.log.child({ extension: pkg.id });
    const context = createContextHandler({
      extension: pkg.id,
      dataDir,
      permissions: pkg.manifest.permissions,
      emit: (topic, payload) => this.bus.publish(topic, payload, pkg.id),
      log: (level, message, fields) => log[level]({ ...fields, from: 'extension' }, message),
      kv,
      env: this.#options.env ?? process.env,
    });
    const managed = new ManagedExtension({
      pkg,
      config,
      defaults: this.config.defaults,
      makeSandbox: this.#options.makeSandbox ?? ((spec, ctx) => createSandbox(pkg.manifest.runtime, spec, ctx)),
      context: async (op) => {
        if (op.op.startsWith('fs.')) await mkdir(dataDir, { recursive: true });
        return context(op);
      },
      events: this.bus,
      log: (level, message, fields) => this.log[level]({ ...fields }, message),
      ...(this.#options.backoff ? { backoff: this.#options.backoff } : {}),
    });
    this.#extensions.set(pkg.id, managed);
    return managed;
  }

  get(id: string): ManagedExtension | undefined {
    return this.#extensions.get(id);
  }

  /** Every extension the host knows, supervised or not, sorted by id. */
  list(): HostExtensionInfo[] {
    const all = [...[...this.#extensions.values()].map((e) => ({ ...e.info(), path: e.pkg.dir })), ...this.#unstarted.values()];
    return all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Finds active extensions by capability (seed `find_by_capability`). */
  findByCapability(capability: string): ManagedExtension[] {
    return [...this.#extensions.values()].filter((e) => (e.state === 'active' || e.state === 'degraded') && e.pkg.manifest.capabilities.includes(capability));
  }

  async call(id: string, stage: string, input: Json, request: CallRequest = {}): Promise<Json> {
    const ext = this.#extensions.get(id);
    if (!ext) {
      const known = this.#unstarted.get(id);
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
    return ext.call(stage, input, request);
  }

  /** Stops every extension (each time-boxed, in parallel), then the sandbox processes. Never throws. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(
      [...this.#extensions.values()].map((e) =>
        e.stop(timeoutMs).catch((err: unknown) => this.log.error({ extension: e.id, code: isPlinthError(err) ? err.code : undefined }, `stop failed: ${String(err)}`)),
      ),
    );
    if (this.#options.stopSandboxProcesses !== false) await IsolateProcess.shutdownAll();
  }
}

export async function startHost(config: HostConfig, options: HostOptions & { only?: string[] } = {}): Promise<Host> {
  const host = new Host(config, options);
  await host.start(options.only);
  return host;
}
