// The registry (DESIGN.md §2, §3): every installed copy is discovered, validated and verified; dependency
// resolution picks one copy per id and the start order; extensions start level by level (a level in parallel),
// stop in reverse, and a re-scan is reconciled with what runs — added, removed, and changed extensions, the last
// swapped blue/green: the new version starts beside the old, takes new calls once active, and the old one stops
// after its in-flight calls finish. A broken new version never replaces a working old one.
// Order of checks per copy (issue 7 §1): snapshot (copy while hashing) → signature against the snapshot's hashes
// → manifest and schemas from the snapshot's package.json. The sandbox loads only from the snapshot.
import { mkdir, mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { HostConfig } from '../config/index.ts';
import { topicWord, patternCovers, type EventBus, type EventPublisher, type Unsubscribe } from '../events/index.ts';
import type { Json } from '../sdk/index.ts';
import type { Budget } from '../resilience/index.ts';
import { discoverExtensions, type DiscoveredExtension } from '../discovery/index.ts';
import { checkSignatureFile, verifyFiles, refuseEmptyFolders, type TrustStore, type TrustPolicy } from '../trust/index.ts';
import { takeSnapshot, pruneSnapshots, removeTree, snapshotsDir, type Snapshot } from '../snapshot/index.ts';
import { readPackageJson, isExtensionPackage, validateExtensionPackage, type ExtensionPackage, type Runtime } from '../manifest/index.ts';
import { extensionDataDir, publisherBindingFile, readPublisherBinding, writePublisherBinding, UNSIGNED_PUBLISHER, type PublisherBinding } from '../datadir/index.ts';
import { resolve, dependencyFailed, checkFrozen, readLockfile, writeLockfile as writeLockfileTo, buildLockfile, fileListDigest, type Candidate, type Resolution, type Lockfile } from '../resolve/index.ts';
import { checkIsolateModules, createSandbox, RunnerPool, type RegisterParams, type RegisterResult, type RunnerLink, type PoolInfo } from '../sandbox/index.ts';
import { randomUUID } from 'node:crypto';
import { createContextHandler, effectiveQuotas, type FetchBreakers, type KvStore, type Resolver } from '../policy/index.ts';
import { checkStartable } from './preflight.ts';
import { ManagedExtension, type ExtensionInfo } from './extension.ts';
import { resolveLimits, type Limits } from './limits.ts';
import type { ContextHandler, ContextOp, SandboxFactory } from '../sandbox/types.ts';
import { verifyRunner } from './remote.ts';
import type { ExtensionRecord, TrustStatus } from './index.ts';

/** The host API version extensions' `engines.plinth` ranges are matched against. */
export const HOST_API_VERSION = '1.0.0';

/** Listing entry: a supervised extension, or one that never got that far (failed, refused, shadowed, disabled). */
export type RegistryEntry = ExtensionInfo & {
  path: string;
  /** A remote extension's runners (docs/remote.md). */
  pool?: PoolInfo;
  /** A newer copy on disk that could not replace the running one (the running one keeps serving). */
  reloadError?: ReturnType<PlinthError['toJSON']>;
};

/** One installed copy that passed snapshot, trust and validation. */
interface Copy {
  found: DiscoveredExtension;
  /** Validated from the snapshot: `pkg.dir` is the snapshot, `pkg.sourceDir` the plugin folder. */
  pkg: ExtensionPackage;
  snapshot: Snapshot;
  trust: TrustStatus;
  /** Who it comes from, for the data binding: the verified publisher, UNSIGNED_PUBLISHER, or undefined under policy `off`. */
  publisher: string | undefined;
  digest: string;
  candidate: Candidate;
}

interface ScanResult {
  copies: Map<Candidate, Copy>;
  resolution: Resolution;
  /** Listing entries for copies that failed before resolution, and for shadowed copies. */
  rejected: RegistryEntry[];
  /** Ids whose copies on disk all failed validation or trust, with the first reason. */
  broken: Map<string, PlinthError>;
  directoryErrors: PlinthError[];
}

export interface RegistryOptions {
  config: HostConfig;
  log: Logger;
  bus: EventBus;
  budget: Budget;
  /** An extension's key-value store (a plain Map is taken as a store's backing). */
  kv: (id: string) => KvStore | Map<string, Json>;
  env: NodeJS.ProcessEnv;
  trustStore: TrustStore;
  makeSandbox?: SandboxFactory;
  backoff?: Partial<HostConfig['defaults']['restart']>;
  /** Refuse extensions that drift from this lockfile (`--frozen-lockfile`). */
  frozenLockfile?: string;
  /** How long an old version may take to finish in-flight calls during a swap, and to stop. */
  drainMs?: number;
  /** How ctx.fetch resolves host names (the system resolver unless a test injects one). */
  resolve?: Resolver;
  /** The host's ctx.fetch breakers per extension and origin. */
  fetchBreakers?: FetchBreakers;
  /** Plugin folders `plinth dev` serves: untrusted copies there may run as workers (preflight.ts). */
  devFolders?: ReadonlySet<string>;
}

function entry(found: { id: string; dir: string; version?: string; runtime?: string }, state: 'failed' | 'stopped', reason: PlinthError | undefined): RegistryEntry {
  return {
    id: found.id,
    version: found.version ?? '',
    runtime: found.runtime ?? '',
    state,
    reason: reason ? reason.toJSON() : null,
    since: new Date().toISOString(),
    restarts: 0,
    breaker: 'closed',
    path: found.dir,
  };
}

/** PLINTH_ERR_PUBLISHER_MISMATCH for `copy` of `id`, owned by `owner` (`where` says how we know). */
function publisherMismatch(id: string, copy: Copy, owner: string, where: string, dataDir: string): PlinthError {
  const from = copy.trust.status === 'trusted' ? `signed by publisher "${copy.publisher}"` : `not verified (publisher "${UNSIGNED_PUBLISHER}"${copy.trust.status === 'untrusted' ? `: ${copy.trust.error.code}` : ''})`;
  return new PlinthError(
    'PLINTH_ERR_PUBLISHER_MISMATCH',
    `extension ${id} ${copy.pkg.version} at ${copy.found.dir} is ${from}, but ${id} belongs to publisher "${owner}": ${where}; this copy is not started and ${id}'s data (${extensionDataDir(dataDir, id)}, kv) is left untouched`,
    {
      extension: id,
      file: copy.found.dir,
      hint: `remove this copy; if ${id} really passed from "${owner}" to "${copy.publisher ?? UNSIGNED_PUBLISHER}", re-assign it with extensions.${id}.publisher: ${copy.publisher ?? UNSIGNED_PUBLISHER} in the host config`,
    },
  );
}

/** The log fields of a refusal: its code, the file or path concerned, its problems and hint. */
function refusalFields(err: PlinthError): Record<string, unknown> {
  return {
    code: err.code,
    ...(err.file ? { file: err.file } : {}),
    ...(err.problems.length > 0 ? { problems: err.problems } : {}),
    ...(err.hint ? { hint: err.hint } : {}),
  };
}

/**
 * A runner's own breaker (extensions.<id>.pool.breaker) opens sooner than the extension's: one failing runner of a
 * pool is set aside (health-based) before the extension's breaker, which sees every runner's calls, would open.
 */
const RUNNER_BREAKER_DEFAULTS = { minimumCalls: 5, recoveryTimeoutMs: 10_000 };

/** One remote extension: the pool of its runners and the supervisor over it (which outlives disconnects). */
interface RemoteEntry {
  pool: RunnerPool;
  managed: ManagedExtension;
  publisher: string | undefined;
  digest: string;
}

/** What a registered runner connection may do next: ctx ops for its extension, and say it is draining. */
export interface RunnerSession {
  readonly id: string;
  ctx(op: ContextOp): Promise<Json | undefined>;
  drain(): void;
}

export class Registry {
  readonly #o: RegistryOptions;
  readonly #running = new Map<string, ManagedExtension>();
  /** What runs, as resolved: for dependency edges and stop order. */
  readonly #candidates = new Map<string, Candidate>();
  #levelOf = new Map<string, number>();
  #notRunning = new Map<string, RegistryEntry>();
  readonly #reloadErrors = new Map<string, PlinthError>();
  /** Each running extension's subscription to its manifest's `subscribes` (durable, named by its id). */
  readonly #subscriptions = new Map<string, Unsubscribe>();
  /** The host's own events: a refused publish (queue full, bus closed) is logged, never an unhandled rejection. */
  readonly #hostEvents: EventPublisher;
  #stopped = false;
  /** Start tasks in progress, by id (Host.call waits on the one it calls). */
  readonly #starting = new Map<string, Promise<void>>();
  /** Extensions whose start() is running, and old versions draining after a swap: stopAll() stops them too. */
  readonly #launching = new Set<ManagedExtension>();
  readonly #draining = new Set<ManagedExtension>();
  #creating: Promise<void> = Promise.resolve();
  /** Remote extensions by id (issue 13): registered by runners, not found in the plugin directories. */
  readonly #remote = new Map<string, RemoteEntry>();
  /** runner.register calls of one id run one at a time (the first creates the pool, the others join it). */
  readonly #registering = new Map<string, Promise<unknown>>();

  constructor(options: RegistryOptions) {
    this.#o = options;
    this.#hostEvents = {
      publish: (topic, payload, source) =>
        options.bus.publish(topic, payload, source).then(() => undefined, (err: unknown) => {
          options.log.warn({ topic, code: isPlinthError(err) ? err.code : undefined }, `host event ${topic} was not published: ${String((err as Error)?.message ?? err)}`);
        }),
    };
  }

  /**
   * Subscribes a started extension to its manifest's `subscribes`, delivered to handleEvent. The handler finds
   * the extension running under the id at delivery time, so a blue/green swap moves the subscription with it; an
   * id with nothing running rejects (a failed attempt, retried, then dead-lettered: never silently lost).
   */
  #subscribe(managed: ManagedExtension): void {
    const patterns = managed.pkg.manifest.subscribes;
    if (patterns.length === 0 || this.#subscriptions.has(managed.id)) return;
    const id = managed.id;
    const settings = this.#o.config.extensions[id]?.events;
    let unsubscribe: Unsubscribe;
    try {
      unsubscribe = this.#o.bus.subscribe(
      patterns,
      async (event) => {
        const current = this.#running.get(id);
        if (!current) throw new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${id} is not running`, { extension: id });
        await current.deliver(event);
      },
      { name: id, ...(settings?.retry ? { retry: settings.retry } : {}), maxInFlight: settings?.maxInFlight ?? managed.limits.concurrency },
      );
    } catch (err) {
      // One extension's subscription failing (its store rows unreadable, its name taken) never stops the others.
      this.#o.log.error({ extension: id, code: isPlinthError(err) ? err.code : undefined }, `extension ${id}: subscribing to ${patterns.join(', ')} failed: ${String((err as Error)?.message ?? err)}`);
      return;
    }
    this.#subscriptions.set(id, unsubscribe);
  }

  #unsubscribe(id: string): void {
    this.#subscriptions.get(id)?.();
    this.#subscriptions.delete(id);
  }

  get(id: string): ManagedExtension | undefined {
    return this.#running.get(id);
  }

  /** Why `id` is not running, if it is known at all. */
  notRunning(id: string): RegistryEntry | undefined {
    return this.#notRunning.get(id);
  }

  list(): RegistryEntry[] {
    const running = [...this.#running.values()].map((e): RegistryEntry => {
      const reloadError = this.#reloadErrors.get(e.id);
      const remote = this.#remote.get(e.id);
      return { ...e.info(), path: e.pkg.sourceDir, ...(reloadError ? { reloadError: reloadError.toJSON() } : {}), ...(remote?.managed === e ? { pool: remote.pool.info() } : {}) };
    });
    return [...running, ...this.#notRunning.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.path < b.path ? -1 : 1));
  }

  findByCapability(capability: string): ManagedExtension[] {
    return [...this.#running.values()].filter((e) => (e.state === 'active' || e.state === 'degraded') && e.pkg.manifest.capabilities.includes(capability));
  }

  /**
   * One copy: snapshot it (hashing what is copied), check its signature against those hashes, then validate the
   * manifest from the snapshot — in that order, so an unverified package's schemas are never compiled under
   * policy `required`, and nothing checked is read again from the plugin folder. Policy `warn`/`off` snapshot too:
   * what runs is what was hashed.
   */
  async #prepare(e: DiscoveredExtension, root: string): Promise<Copy> {
    const { trustStore } = this.#o;
    const policy: TrustPolicy = this.#o.config.trust.policy;
    // Under `required`, a package whose plinth.sig is missing, untrusted or forged is refused before anything is
    // copied (no disk filled by unsigned junk); the check that counts is the one against the snapshot below.
    if (policy === 'required') await checkSignatureFile({ dir: e.dir, store: trustStore, extension: e.id });
    const { maxFiles, maxMb } = this.#o.config.packages;
    const snapshot = await takeSnapshot(e.dir, root, e.id, { maxFiles, maxBytes: maxMb * 1024 * 1024 });
    let trust: TrustStatus;
    if (policy === 'off') trust = { status: 'unchecked' };
    else {
      try {
        const v = await verifyFiles({ dir: snapshot.dir, files: snapshot.files, emptyFolders: snapshot.emptyFolders, store: trustStore, extension: e.id, reportDir: e.dir });
        trust = { status: 'trusted', publisher: v.publisher, keyId: v.keyId, ...(v.scope === undefined ? {} : { scope: v.scope }) };
      } catch (err) {
        if (policy === 'required' || !isPlinthError(err)) throw err;
        trust = { status: 'untrusted', error: err };
      }
    }
    // What a package is does not depend on the policy (under `required` verifyFiles has already refused these).
    refuseEmptyFolders(snapshot.emptyFolders, e.id, e.dir);
    const raw = await readPackageJson(snapshot.dir, e.dir);
    if (raw === undefined || !isExtensionPackage(raw)) {
      throw new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `extension ${e.id} at ${e.dir}: package.json has no "plinth" block any more (it changed during the scan)`, {
        extension: e.id,
        file: path.join(e.dir, 'package.json'),
        hint: 'wait until the extension is completely written, then reload',
      });
    }
    const pkg = await validateExtensionPackage(snapshot.dir, raw, { sourceDir: e.dir, schemaLimits: this.#o.config.extensionSchemas });
    const candidate: Candidate = {
      id: pkg.id,
      version: pkg.version,
      dir: e.dir,
      dependencies: pkg.manifest.dependencies,
      order: e.order,
      ...(pkg.hostRange ? { hostRange: pkg.hostRange } : {}),
      ...(trust.status === 'untrusted' ? { trusted: false } : {}),
    };
    const publisher = trust.status === 'trusted' ? trust.publisher : trust.status === 'untrusted' ? UNSIGNED_PUBLISHER : undefined;
    return { found: e, pkg, snapshot, trust, publisher, digest: fileListDigest(snapshot.files), candidate };
  }

  /**
   * Discovers, snapshots, verifies, validates and resolves; snapshots go under `root`. `keep`: running extensions
   * whose copy on disk is now broken stay candidates.
   */
  async #scan(keep: Map<string, ManagedExtension>, root: string): Promise<ScanResult> {
    const { config, log } = this.#o;
    const found = await discoverExtensions(config.plugins);
    for (const e of found.directoryErrors) log.warn({ code: e.code, file: e.file }, e.message);
    const rejected: RegistryEntry[] = found.failures.map((f) => entry(f, 'failed', f.error));
    const broken = new Map<string, PlinthError>();
    for (const f of found.failures) if (!broken.has(f.id)) broken.set(f.id, f.error);

    const copies = new Map<Candidate, Copy>();
    const checked = await Promise.all(
      found.extensions.map(async (e): Promise<Copy | PlinthError> => {
        try {
          return await this.#prepare(e, root);
        } catch (err) {
          // Anything but a PlinthError is a file the host could not read (EACCES, EIO…), contained to this extension.
          if (isPlinthError(err)) return err;
          return new PlinthError('PLINTH_ERR_PLUGIN_DIR_UNREADABLE', `extension ${e.id} at ${e.dir}: cannot read it: ${(err as Error).message}`, {
            extension: e.id,
            file: (err as NodeJS.ErrnoException).path ?? e.dir,
            cause: err,
            hint: 'check that the host user may read every file and folder of the extension',
          });
        }
      }),
    );
    checked.forEach((c, i) => {
      const e = found.extensions[i]!;
      if (c instanceof PlinthError) {
        const id = c.extension ?? e.id;
        rejected.push(entry({ id, dir: e.dir }, 'failed', c));
        if (!broken.has(id)) broken.set(id, c);
      } else copies.set(c.candidate, c);
    });
    for (const refusal of await this.#checkOwners(copies)) {
      const c = refusal.copy;
      rejected.push(entry({ id: c.pkg.id, version: c.pkg.version, dir: c.found.dir, runtime: c.pkg.manifest.runtime }, refusal.state, refusal.error));
      copies.delete(refusal.copy.candidate);
      if (!broken.has(refusal.copy.pkg.id)) broken.set(refusal.copy.pkg.id, refusal.error);
    }
    const usable = new Set([...copies.values()].map((c) => c.pkg.id));
    for (const id of usable) broken.delete(id);

    // A running extension whose copies on disk are all broken keeps serving: it stays a candidate as it is.
    const candidates = [...copies.keys()];
    for (const id of keep.keys()) {
      if (!usable.has(id) && broken.has(id)) {
        const c = this.#candidates.get(id);
        if (c) candidates.push(c);
      }
    }

    const unusable = new Map([...broken].filter(([id]) => !keep.has(id) || usable.has(id)));
    let resolution = resolve(candidates, { hostVersion: HOST_API_VERSION, unusable });

    if (this.#o.frozenLockfile) {
      const lock = await readLockfile(this.#o.frozenLockfile);
      if (!lock) {
        throw new PlinthError('PLINTH_ERR_LOCKFILE_INVALID', `--frozen-lockfile: ${this.#o.frozenLockfile} does not exist`, { file: this.#o.frozenLockfile, hint: 'write it with `plinth lock`' });
      }
      const digests = new Map([...resolution.resolved].map(([id, c]) => [id, copies.get(c)?.digest ?? this.#running.get(id)?.digest ?? '']));
      const drift = checkFrozen(lock, resolution.resolved, digests, path.dirname(this.#o.frozenLockfile));
      const drifting = new Map<string, PlinthError>();
      for (const d of drift) {
        if (d.extension && resolution.resolved.has(d.extension)) drifting.set(d.extension, d);
        else log.warn({ code: d.code }, d.message);
      }
      if (drifting.size > 0) resolution = resolve(candidates.filter((c) => !drifting.has(c.id)), { hostVersion: HOST_API_VERSION, unusable: new Map([...unusable, ...drifting]) });
    }

    for (const s of resolution.shadowed) {
      const copy = copies.get(s.candidate);
      rejected.push(
        entry({ ...s.candidate, runtime: copy?.pkg.manifest.runtime ?? '' }, 'stopped', new PlinthError('PLINTH_ERR_DUPLICATE_EXTENSION', `extension ${s.candidate.id} ${s.candidate.version} at ${s.candidate.dir} is not used: ${s.reason}`, { extension: s.candidate.id, file: s.candidate.dir })),
      );
    }
    return { copies, resolution, rejected, broken, directoryErrors: found.directoryErrors };
  }

  /**
   * Issue 7 §2, before resolution: which copies may use an id's data at all. Per id: when a trusted copy is
   * installed, untrusted copies are out (they never shadow it, even when the trusted copy is itself refused
   * below); the id's owner is `extensions.<id>.publisher` if set, else the publisher recorded in its binding;
   * copies from anyone else are refused with PLINTH_ERR_PUBLISHER_MISMATCH. An id without an owner yet whose
   * trusted copies come from several publishers is refused as PLINTH_ERR_PUBLISHER_AMBIGUOUS: folder order must
   * not decide who gets an id. Policy `off` checks nothing.
   */
  async #checkOwners(copies: Map<Candidate, Copy>): Promise<Array<{ copy: Copy; state: 'failed' | 'stopped'; error: PlinthError }>> {
    const { config } = this.#o;
    if (config.trust.policy === 'off') return [];
    const byId = new Map<string, Copy[]>();
    for (const c of copies.values()) byId.set(c.pkg.id, [...(byId.get(c.pkg.id) ?? []), c]);
    const out: Array<{ copy: Copy; state: 'failed' | 'stopped'; error: PlinthError }> = [];
    /** Untrusted copies set aside; listed after the ownership refusals, so an id's reason is the latter when both apply. */
    const shadowed: typeof out = [];
    for (const [id, list] of byId) {
      const trusted = list.filter((c) => c.trust.status === 'trusted');
      let remaining = list;
      if (trusted.length > 0 && trusted.length < list.length) {
        const first = trusted[0]!;
        for (const c of list.filter((x) => x.trust.status !== 'trusted')) {
          shadowed.push({
            copy: c,
            state: 'stopped',
            error: new PlinthError(
              'PLINTH_ERR_DUPLICATE_EXTENSION',
              `extension ${id} ${c.pkg.version} at ${c.found.dir} is not used: it is not signed by a trusted publisher, and a trusted copy of ${id} is installed (${first.pkg.version} at ${first.found.dir}): an untrusted copy never replaces or shadows a trusted one`,
              { extension: id, file: c.found.dir, hint: `remove this copy, or have it signed by ${id}'s publisher` },
            ),
          });
        }
        remaining = trusted;
      }
      let owner: { publisher: string; where: string } | undefined;
      const pinned = config.extensions[id]?.publisher;
      if (pinned !== undefined) owner = { publisher: pinned, where: `the host config assigns ${id} to it (extensions.${id}.publisher${config.file ? ` in ${config.file}` : ''})` };
      else {
        let binding: PublisherBinding | undefined;
        try {
          binding = await readPublisherBinding(config.dataDir, id);
        } catch (err) {
          for (const c of remaining) out.push({ copy: c, state: 'failed', error: err as PlinthError });
          continue;
        }
        if (binding) owner = { publisher: binding.publisher, where: `its data belongs to it (${publisherBindingFile(config.dataDir, id)}${binding.since ? `, since ${binding.since}` : ''})` };
      }
      if (owner) {
        for (const c of remaining) if (c.publisher !== owner.publisher) out.push({ copy: c, state: 'failed', error: publisherMismatch(id, c, owner.publisher, owner.where, config.dataDir) });
        continue;
      }
      const publishers = [...new Set(remaining.filter((c) => c.trust.status === 'trusted').map((c) => c.publisher!))].sort();
      if (publishers.length > 1) {
        const offers = remaining.map((c) => `${c.publisher} (${c.pkg.version} at ${c.found.dir})`).join(', ');
        for (const c of remaining) {
          out.push({
            copy: c,
            state: 'failed',
            error: new PlinthError('PLINTH_ERR_PUBLISHER_AMBIGUOUS', `extension ${id} is offered by ${publishers.length} trusted publishers: ${offers}; it has no data yet and no assigned publisher, so none of them is started`, {
              extension: id,
              file: c.found.dir,
              hint: `choose one: set extensions.${id}.publisher to ${publishers.map((p) => `"${p}"`).join(' or ')} in the host config, or remove the other copies (trust-store scopes keep a publisher to its own ids)`,
            }),
          });
        }
      }
    }
    return [...out, ...shadowed];
  }

  /** What `plinth ls` shows: every copy, checked up to dependency resolution, nothing started. */
  async inspect(): Promise<{ extensions: ExtensionRecord[]; directoryErrors: PlinthError[] }> {
    return this.#withTempSnapshots((root) => this.#inspect(root));
  }

  /**
   * `plinth ls` and `plinth lock` run nothing: their snapshots go to a temp folder removed at the end, so they leave
   * nothing behind (records' `pkg.dir` then names a folder that is gone; `dir` is the plugin folder).
   */
  async #withTempSnapshots<T>(task: (root: string) => Promise<T>): Promise<T> {
    const root = await mkdtemp(path.join(tmpdir(), 'plinth-scan-'));
    try {
      return await task(root);
    } finally {
      await removeTree(root);
    }
  }

  async #inspect(root: string): Promise<{ extensions: ExtensionRecord[]; directoryErrors: PlinthError[] }> {
    const scan = await this.#scan(new Map(), root);
    const records: ExtensionRecord[] = [];
    for (const r of scan.rejected) {
      records.push({ id: r.id, version: r.version || undefined, runtime: (r.runtime || undefined) as Runtime | undefined, dir: r.path, state: 'failed', trust: undefined, error: r.reason ? PlinthError.fromJSON(r.reason) : undefined, pkg: undefined });
    }
    for (const copy of scan.copies.values()) {
      const c = copy.candidate;
      if (scan.resolution.shadowed.some((s) => s.candidate === c)) continue; // listed among the rejected
      const failure = scan.resolution.failed.get(c.id);
      const base = { id: c.id, version: c.version, runtime: copy.pkg.manifest.runtime, dir: c.dir, trust: copy.trust };
      if (scan.resolution.resolved.get(c.id) === c) {
        // What starting it would check before running any of its code (issue 9: `ls` agrees with `call`).
        const refusal = await this.#preflight(copy);
        if (refusal === 'disabled') records.push({ ...base, state: 'stopped', error: undefined, pkg: copy.pkg });
        else if (refusal) records.push({ ...base, state: 'failed', error: refusal, pkg: undefined });
        else records.push({ ...base, state: 'verified', error: undefined, pkg: copy.pkg });
      } else records.push({ ...base, state: 'failed', error: failure?.error, pkg: undefined });
    }
    records.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.dir < b.dir ? -1 : 1));
    return { extensions: records, directoryErrors: scan.directoryErrors };
  }

  /** Why a resolved copy would not start (host config, trust, runtime, an isolate's imports), without starting it. */
  async #preflight(copy: Copy): Promise<PlinthError | 'disabled' | undefined> {
    const pkg = copy.pkg;
    const check = checkStartable(pkg, copy.trust, this.#o.config, { devFolders: this.#o.devFolders });
    if (check.status === 'disabled') return 'disabled';
    if (check.status === 'refused') return check.error;
    if (pkg.manifest.runtime !== 'isolate') return undefined;
    try {
      await checkIsolateModules(pkg.id, pkg.dir, pkg.mainPath);
      return undefined;
    } catch (err) {
      const e = isPlinthError(err) ? err : new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${pkg.id}: ${String(err)}`, { extension: pkg.id, file: pkg.mainPath });
      // The check ran on the snapshot; people know the file by its place in the plugin folder.
      const inSnapshot = e.file !== undefined && pkg.dir !== pkg.sourceDir && (e.file === pkg.dir || e.file.startsWith(pkg.dir + path.sep));
      return inSnapshot ? PlinthError.fromJSON({ ...e.toJSON(), file: path.join(pkg.sourceDir, path.relative(pkg.dir, e.file)) }) : e;
    }
  }

  /** `plinth lock`: resolves and writes the lockfile; returns it with the extensions that could not be locked. */
  async writeLockfile(file: string): Promise<{ lock: Lockfile; failed: PlinthError[] }> {
    const scan = await this.#withTempSnapshots((root) => this.#scan(new Map(), root));
    const digests = new Map([...scan.resolution.resolved].map(([id, c]) => [id, scan.copies.get(c)!.digest]));
    const lock = buildLockfile(scan.resolution.resolved, digests, path.dirname(file), HOST_API_VERSION);
    await writeLockfileTo(file, lock);
    return { lock, failed: [...scan.resolution.failed.values()].map((f) => f.error) };
  }

  /**
   * Publishes the steps before `starting` for the copies about to start (DESIGN.md §2: every transition is an
   * event): `discovered`, `validated` (manifest and schemas), `verified` (trust), `resolved` (dependencies).
   * Failures before start are published as `failed` with their reason.
   */
  #announce(scan: ScanResult, ids: Set<string>): void {
    const bus = this.#hostEvents;
    const publish = (id: string, version: string, state: string, previous: string | null, reason: PlinthError | undefined) =>
      void bus.publish(`extension.${topicWord(id)}.${state}`, { id, version, state, previous, reason: reason ? (reason.toJSON() as Json) : null }, 'host');
    for (const [id, candidate] of scan.resolution.resolved) {
      if (!ids.has(id) || !scan.copies.has(candidate)) continue;
      let previous: string | null = null;
      for (const state of ['discovered', 'validated', 'verified', 'resolved']) {
        publish(id, candidate.version, state, previous, undefined);
        previous = state;
      }
    }
    for (const [id, f] of scan.resolution.failed) if (!this.#running.has(id)) publish(id, f.candidate?.version ?? '', 'failed', null, f.error);
  }

  /**
   * Scans and starts everything in dependency order. Never throws for one extension's fault. `background`:
   * resolves once every start has begun (each extension serves as soon as it is active; see starting()).
   */
  async load(options: { background?: boolean } = {}): Promise<void> {
    const scan = await this.#scan(new Map(), this.#snapshotRoot);
    this.#logRefusals(scan);
    this.#announce(scan, new Set(scan.resolution.resolved.keys()));
    this.#notRunning = new Map();
    for (const r of scan.rejected) this.#notRunning.set(`${r.id} (${r.path})`, r);
    for (const [id, f] of scan.resolution.failed) this.#notRunning.set(id, entry({ id, dir: f.candidate?.dir ?? '', version: f.candidate?.version ?? '' }, 'failed', f.error));
    // Unused snapshots are removed once every start has settled (restarts load from the snapshots they use).
    const started = this.#startAll(scan, new Set(scan.resolution.resolved.keys())).then(() => this.#prune(scan));
    if (!options.background) await started;
  }

  get #snapshotRoot(): string {
    return snapshotsDir(this.#o.config.dataDir);
  }

  /**
   * Removes the snapshots nothing refers to any more: kept are those of running extensions (restarts load from
   * them) and of every copy the last scan considered. Runs after load and after each reconcile, which never
   * overlap, so no snapshot of this host is being taken meanwhile.
   */
  async #prune(scan: ScanResult): Promise<void> {
    const keep = new Set<string>([...this.#running.values()].map((m) => m.pkg.dir));
    for (const c of scan.copies.values()) keep.add(c.snapshot.dir);
    try {
      const removed = await pruneSnapshots(this.#snapshotRoot, keep);
      if (removed.length > 0) this.#o.log.debug({ removed: removed.length }, 'removed unused snapshots');
    } catch (err) {
      this.#o.log.warn({ err }, `could not remove unused snapshots: ${String(err)}`);
    }
  }

  /** The start in progress of `id` (settles once it is active or failed), if it is being started. */
  starting(id: string): Promise<void> | undefined {
    return this.#starting.get(id);
  }

  /**
   * Starts the `ids` of a resolution, each as soon as its own dependencies are serving (issue 7 §4: one slow
   * extension delays only what depends on it, never a whole level). Independent extensions start in parallel.
   */
  async #startAll(scan: ScanResult, ids: Set<string>): Promise<void> {
    const { resolution } = scan;
    this.#levelOf = new Map(resolution.levels.flatMap((level, i) => level.map((id) => [id, i] as const)));
    const tasks = new Map<string, Promise<void>>();
    // Levels are in topological order, so a dependency's task exists before its dependents' begin.
    for (const level of resolution.levels) {
      for (const id of level) {
        if (!ids.has(id)) continue;
        const task = this.#startOne(scan, id, tasks).catch((err: unknown) => this.#o.log.error({ extension: id }, `start failed: ${String(err)}`));
        tasks.set(id, task);
        this.#starting.set(id, task);
        void task.finally(() => {
          if (this.#starting.get(id) === task) this.#starting.delete(id);
        });
      }
    }
    await Promise.all(tasks.values());
  }

  async #startOne(scan: ScanResult, id: string, tasks: Map<string, Promise<void>>): Promise<void> {
    const { resolution } = scan;
    const candidate = resolution.resolved.get(id)!;
    const copy = scan.copies.get(candidate);
    if (!copy) return; // a kept running extension: nothing to start
    for (const dep of Object.keys(candidate.dependencies)) await tasks.get(dep);
    if (this.#stopped) return;
    // Dependencies (required, and optional ones that resolved) must be serving first.
    for (const [dep, spec] of Object.entries(candidate.dependencies)) {
      if (spec.optional && !resolution.resolved.has(dep)) continue;
      const running = this.#running.get(dep);
      if (running && (running.state === 'active' || running.state === 'degraded')) continue;
      const cause = running?.info().reason ?? this.#notRunning.get(dep)?.reason;
      const err = dependencyFailed(candidate, dep, cause ? PlinthError.fromJSON(cause) : new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `${dep} is not running`));
      this.#notRunning.set(id, entry({ ...candidate, runtime: copy.pkg.manifest.runtime }, 'failed', err));
      this.#o.log.error({ ...refusalFields(err), extension: id, folder: candidate.dir }, err.message);
      return;
    }
    // Created (trust binding, config, budget reservation) one at a time, in start order: which extensions fit the
    // budget never depends on which file system call finished first. Their starts still run in parallel.
    const creating = this.#creating.then(() => this.#create(copy));
    this.#creating = creating.then(
      () => undefined,
      () => undefined,
    );
    const managed = await creating;
    if (!managed) return;
    this.#launching.add(managed);
    try {
      await managed.start();
    } finally {
      this.#launching.delete(managed);
    }
    if (managed.state !== 'active' || this.#stopped) {
      // Stopped too, so nothing of it (timers, a sandbox) outlives the refusal.
      await managed.stop(1000);
      return this.#retire(managed, this.#stopped ? 'stopped' : 'failed');
    }
    this.#running.set(id, managed);
    this.#candidates.set(id, candidate);
    this.#notRunning.delete(id);
    this.#subscribe(managed);
  }

  /**
   * Binds the id's data to the copy's publisher before any of its code runs (issue 7 §2): records the binding at
   * the first start, re-assigns it when `extensions.<id>.publisher` names this publisher, and refuses a copy
   * from anyone else. Returns the refusal, if any. Policy `off` checks and records nothing.
   */
  async #claim(copy: Copy): Promise<PlinthError | undefined> {
    const { config, log } = this.#o;
    const id = copy.pkg.id;
    const publisher = copy.publisher;
    if (config.trust.policy === 'off' || publisher === undefined) return undefined;
    const key = `extensions.${id}.publisher`;
    const pinned = config.extensions[id]?.publisher;
    if (pinned !== undefined && pinned !== publisher) return publisherMismatch(id, copy, pinned, `the host config assigns ${id} to it (${key})`, config.dataDir);
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const binding = await readPublisherBinding(config.dataDir, id);
        if (binding?.publisher === publisher) return undefined;
        if (binding && pinned !== publisher) return publisherMismatch(id, copy, binding.publisher, `its data belongs to it (${publisherBindingFile(config.dataDir, id)})`, config.dataDir);
        if (!binding) await this.#warnLegacyDataDir(id);
        const record: PublisherBinding = { id, publisher, since: new Date().toISOString(), ...(binding ? { assignedBy: key, previous: binding.publisher } : {}) };
        if (await writePublisherBinding(config.dataDir, record, { replace: binding !== undefined })) {
          if (binding) log.warn({ extension: id, publisher, previous: binding.publisher }, `${id}: data re-assigned from publisher "${binding.publisher}" to "${publisher}" by ${key}`);
          else log.info({ extension: id, publisher }, `${id}: data bound to publisher "${publisher}"`);
          return undefined;
        }
        // Someone recorded a binding between our read and our write: read it again and judge by it.
      }
      return publisherMismatch(id, copy, '(changing)', 'its binding changed while starting', config.dataDir);
    } catch (err) {
      return err instanceof PlinthError ? err : new PlinthError('PLINTH_ERR_PUBLISHER_BINDING_INVALID', `extension ${id}: cannot record its publisher binding: ${String(err)}`, { extension: id, file: publisherBindingFile(config.dataDir, id), cause: err });
    }
  }

  /**
   * Before this mapping, an id's folder was `topicWord(id)`, which several ids shared. Such a folder is never
   * adopted (its owner cannot be known): the operator is told where it is, once, when the id is first bound.
   */
  async #warnLegacyDataDir(id: string): Promise<void> {
    const { config, log } = this.#o;
    const legacy = path.join(config.dataDir, 'extensions', topicWord(id));
    const current = extensionDataDir(config.dataDir, id);
    if (legacy === current) return;
    const found = await stat(legacy).then((s) => s.isDirectory(), () => false);
    if (found) {
      log.warn(
        { extension: id, legacy, dataDir: current },
        `${id}: a data folder from an earlier Plinth version (${legacy}) is not used: that name was shared by every id that folds to it; if its contents are ${id}'s, move them to ${current}`,
      );
    }
  }

  /** The host side of an extension's ctx (src/policy): its grants, quotas, kv, events and log, the same for every runtime. */
  #contextFor(pkg: ExtensionPackage): ContextHandler {
    const { config, log, bus } = this.#o;
    const settings = config.extensions[pkg.id];
    const dataDir = extensionDataDir(config.dataDir, pkg.id);
    const extLog = log.child({ extension: pkg.id });
    const context = createContextHandler({
      extension: pkg.id,
      dataDir,
      permissions: pkg.manifest.permissions,
      emit: async (topic, payload) => void (await bus.publish(topic, payload, pkg.id)),
      // The extension's fields go under one key, so they can never overwrite the host's own (`extension`, `level`, …).
      log: (level, message, line) =>
        extLog[level]({ from: line.host ? 'host' : 'extension', ...(line.fields ? { fields: line.fields } : {}), ...(line.truncated ? { truncated: line.truncated } : {}), ...line.host }, message),
      kv: this.#o.kv(pkg.id),
      env: this.#o.env,
      quotas: effectiveQuotas(config.quotas, settings?.quotas, pkg.manifest.limits),
      ...(this.#o.resolve ? { resolve: this.#o.resolve } : {}),
      ...(this.#o.fetchBreakers ? { fetchBreakers: this.#o.fetchBreakers } : {}),
    });
    return async (op) => {
      if (op.op.startsWith('fs.')) await mkdir(dataDir, { recursive: true });
      return context(op);
    };
  }

  /** A ManagedExtension for a copy, or undefined (recorded as failed) when trust, ownership, config or budget refuse it. */
  async #create(copy: Copy, budgetKey = copy.pkg.id): Promise<ManagedExtension | undefined> {
    const { config, log, budget } = this.#o;
    const pkg = copy.pkg;
    const refuse = (state: 'failed' | 'stopped', reason: PlinthError | undefined): undefined => {
      this.#notRunning.set(pkg.id, entry({ id: pkg.id, version: pkg.version, dir: pkg.sourceDir, runtime: pkg.manifest.runtime }, state, reason));
      if (reason) log.error({ ...refusalFields(reason), extension: pkg.id, folder: pkg.sourceDir }, reason.message);
      return undefined;
    };
    const settings = config.extensions[pkg.id];
    const check = checkStartable(pkg, copy.trust, config, { devFolders: this.#o.devFolders });
    if (check.status === 'disabled') return refuse('stopped', undefined);
    const notOwner = await this.#claim(copy);
    if (notOwner) return refuse('failed', notOwner);
    if (check.status === 'refused') return refuse('failed', check.error);
    const extConfig = check.config;
    const notSubscribable = checkSubscribes(pkg.id, pkg.manifest.subscribes, pkg.manifest.permissions.events?.subscribe ?? [], path.join(pkg.sourceDir, 'package.json'));
    if (notSubscribable) return refuse('failed', notSubscribable);
    let limits: Limits;
    try {
      limits = resolveLimits(pkg, config);
      budget.reserve(budgetKey, pkg.id, { memoryMb: limits.memoryMb, concurrency: limits.concurrency });
    } catch (err) {
      return refuse('failed', err as PlinthError);
    }
    const isolateProcess = settings?.isolateProcess ?? (config.sandbox.isolateProcess === 'per-extension' ? 'dedicated' : 'shared');
    const context = this.#contextFor(pkg);
    const managed = new ManagedExtension({
      pkg,
      limits,
      digest: copy.digest,
      budgetKey,
      config: extConfig,
      defaults: config.defaults,
      makeSandbox: this.#o.makeSandbox ?? ((spec, ctx) => createSandbox(pkg.manifest.runtime, spec, ctx, { isolateProcess })),
      context,
      events: this.#hostEvents,
      log: (level, message, fields) => log[level]({ ...fields }, message),
      ...(this.#o.backoff ? { backoff: this.#o.backoff } : {}),
    });
    return managed;
  }

  /**
   * A runner's runner.register (issue 13): verified like a dropped-in copy (sandbox.remote, trust, publisher
   * binding, host config, ceilings), then the first runner of an id creates its pool and its supervisor (started:
   * the runner is initialized) and later ones join the pool, initialized before this resolves. A refusal is a
   * coded PlinthError and leaves what runs untouched. The runner's connection closing removes it from the pool;
   * the extension stays registered (degraded while no runner serves) and a reconnect restores it.
   */
  registerRunner(params: RegisterParams, link: RunnerLink): Promise<{ result: RegisterResult; session: RunnerSession }> {
    if (this.#stopped) return Promise.reject(new PlinthError('PLINTH_ERR_SHUTDOWN', 'the host is stopping: no runner is registered', { hint: 'register again once the host has started' }));
    const { config, trustStore } = this.#o;
    return verifyRunner(params, config, trustStore).then((verified) => {
      const id = verified.pkg.id;
      const before = this.#registering.get(id) ?? Promise.resolve();
      const task = before.then(
        () => this.#join(verified, params, link),
        () => this.#join(verified, params, link),
      );
      this.#registering.set(id, task);
      void task.finally(() => {
        if (this.#registering.get(id) === task) this.#registering.delete(id);
      }).catch(() => undefined);
      return task;
    });
  }

  async #join(verified: Awaited<ReturnType<typeof verifyRunner>>, params: RegisterParams, link: RunnerLink): Promise<{ result: RegisterResult; session: RunnerSession }> {
    const { config, log } = this.#o;
    const { pkg, trust } = verified;
    const id = pkg.id;
    if (this.#stopped) throw new PlinthError('PLINTH_ERR_SHUTDOWN', 'the host is stopping: no runner is registered', { extension: id });
    if (link.peer.closed) throw new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', `extension ${id}: the runner disconnected while it registered`, { extension: id });
    let remote = this.#remote.get(id);
    const local = this.#running.get(id);
    if (local && remote?.managed !== local) {
      throw new PlinthError('PLINTH_ERR_RUNNER_REFUSED', `extension ${id} is served by the dropped-in copy at ${local.pkg.sourceDir}: a runner cannot take over its id`, {
        extension: id,
        hint: 'remove or disable the dropped-in copy first, or give the runner\'s package another name',
      });
    }
    const check = checkStartable(pkg, trust, config, { remote: true });
    if (check.status === 'disabled') {
      throw new PlinthError('PLINTH_ERR_RUNNER_REFUSED', `extension ${id} is disabled on this host (extensions.${id}.enabled: false)`, { extension: id, hint: `enable it (plinth: extensions.enable ${id}) to let its runners register` });
    }
    if (check.status === 'refused') throw check.error;
    const notSubscribable = checkSubscribes(id, pkg.manifest.subscribes, pkg.manifest.permissions.events?.subscribe ?? [], `${pkg.sourceDir}/package.json`);
    if (notSubscribable) throw notSubscribable;
    // The id's data belongs to a publisher (issue 7 §2): a runner of another one is refused like a copy would be.
    const asCopy = { pkg, trust, publisher: verified.publisher, found: { dir: pkg.sourceDir } } as unknown as Copy;
    const notOwner = await this.#claim(asCopy);
    if (notOwner) throw notOwner;
    const limits = resolveLimits(pkg, config);
    const instanceKey = typeof params.instance === 'string' && params.instance !== '' ? params.instance.slice(0, 128) : randomUUID();

    if (remote && (remote.managed.state === 'failed' || remote.managed.state === 'stopped' || remote.managed.state === 'stopping')) {
      this.#remote.delete(id);
      if (this.#running.get(id) === remote.managed) this.#running.delete(id);
      remote = undefined;
    }
    if (remote && (remote.managed.version !== pkg.version || remote.digest !== verified.digest || remote.publisher !== verified.publisher)) {
      if (remote.pool.size > 0) {
        const what = remote.managed.version !== pkg.version ? `version ${pkg.version}` : remote.publisher !== verified.publisher ? `a build from publisher "${verified.publisher ?? 'unchecked'}"` : `another manifest of ${pkg.version}`;
        throw new PlinthError('PLINTH_ERR_RUNNER_VERSION_MISMATCH', `extension ${id}: this runner offers ${what}, but its pool serves ${remote.managed.version} with ${remote.pool.size} runner(s) connected`, {
          extension: id,
          hint: 'run the same build in every runner of a pool; once no runner of the old one is connected, a new version replaces it',
        });
      }
      // No runner of the old one left: the new one replaces it (its supervisor is stopped first).
      this.#remote.delete(id);
      this.#running.delete(id);
      this.#unsubscribe(id);
      await remote.managed.stop(1000);
      log.info({ extension: id, from: remote.managed.version, to: pkg.version }, `remote extension replaced: ${remote.managed.version} → ${pkg.version}`);
      remote = undefined;
    }

    if (remote) {
      const instance = await remote.pool.add(instanceKey, link);
      log.info({ extension: id, runner: instanceKey, connection: link.connection, runners: remote.pool.size }, `runner joined the pool of ${id} (${remote.pool.size} connected)`);
      return { result: { id, version: pkg.version, instance: instanceKey, trust: trust.status }, session: this.#runnerSession(id, remote.pool, instance) };
    }

    const strategy = config.extensions[id]?.pool?.strategy ?? 'round-robin';
    const pool = new RunnerPool(id, pkg.version, { strategy, breaker: { ...config.defaults.breaker, ...pkg.manifest.breaker, ...RUNNER_BREAKER_DEFAULTS, ...config.extensions[id]?.pool?.breaker } });
    const managed = new ManagedExtension({
      pkg,
      limits,
      digest: verified.digest,
      budgetKey: `${id}#remote`,
      config: check.config,
      defaults: config.defaults,
      makeSandbox: (spec, ctx) => createSandbox('remote', spec, ctx, { pool }),
      context: this.#contextFor(pkg),
      events: this.#hostEvents,
      log: (level, message, fields) => log[level]({ ...fields }, message),
      ...(this.#o.backoff ? { backoff: this.#o.backoff } : {}),
    });
    const entryOf: RemoteEntry = { pool, managed, publisher: verified.publisher, digest: verified.digest };
    this.#remote.set(id, entryOf);
    const instance = await pool.add(instanceKey, link);
    await managed.start();
    if (managed.state !== 'active' && managed.state !== 'degraded') {
      const reason = managed.info().reason;
      if (this.#remote.get(id) === entryOf) this.#remote.delete(id);
      await managed.stop(1000);
      pool.closeAll('the extension did not start');
      const err = reason ? PlinthError.fromJSON(reason) : new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${id}: its runner did not start it`, { extension: id });
      this.#notRunning.set(id, entry({ id, version: pkg.version, dir: pkg.sourceDir, runtime: 'remote' }, 'failed', err));
      throw err;
    }
    if (this.#stopped) {
      await managed.stop(1000);
      throw new PlinthError('PLINTH_ERR_SHUTDOWN', 'the host is stopping: no runner is registered', { extension: id });
    }
    this.#running.set(id, managed);
    this.#notRunning.delete(id);
    this.#subscribe(managed);
    log.info({ extension: id, version: pkg.version, runner: instanceKey, connection: link.connection, trust: trust.status }, `remote extension ${id} ${pkg.version} registered by runner ${instanceKey}`);
    return { result: { id, version: pkg.version, instance: instanceKey, trust: trust.status }, session: this.#runnerSession(id, pool, instance) };
  }

  #runnerSession(id: string, pool: RunnerPool, instance: ReturnType<RunnerPool['instances']>[number]): RunnerSession {
    return {
      id,
      ctx: async (op) => {
        const binding = pool.binding;
        if (!binding || instance.state === 'idle' || !pool.instances().includes(instance)) {
          throw new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${id}: this runner is not initialized (ctx is for an extension the host has initialized)`, { extension: id });
        }
        return binding.context(op);
      },
      drain: () => pool.drain(instance),
    };
  }

  /**
   * Stops a running extension now and lists it as stopped (the control channel's extensions.disable; the caller
   * sets `extensions.<id>.enabled: false` first so reloads keep it stopped). Dependents keep running and fail
   * their calls into it with PLINTH_ERR_EXTENSION_UNAVAILABLE.
   */
  async disable(id: string): Promise<void> {
    const managed = this.#running.get(id);
    if (!managed) return;
    this.#running.delete(id);
    this.#candidates.delete(id);
    this.#unsubscribe(id);
    await managed.stop(this.#o.drainMs ?? 5000);
    this.#retire(managed, 'stopped');
    const remote = this.#remote.get(id);
    if (remote?.managed === managed) {
      this.#remote.delete(id);
      remote.pool.closeAll(`extension ${id} was disabled on the host`);
    }
    this.#o.log.info({ extension: id }, 'disabled: stopped');
  }

  /** Records a ManagedExtension that is no longer (or never was) serving, and releases its budget. */
  #retire(managed: ManagedExtension, state: 'failed' | 'stopped'): void {
    this.#o.budget.release(managed.budgetKey);
    const info = managed.info();
    // A stop does not hide an earlier failure.
    this.#notRunning.set(managed.id, { ...info, state: info.state === 'failed' ? 'failed' : state, path: managed.pkg.sourceDir });
  }

  /**
   * Re-scans the plugin directories and brings what runs in line: removed extensions (and dependents that no
   * longer resolve) stop, dependents first; changed ones are swapped blue/green; new ones start in order.
   */
  async reconcile(): Promise<void> {
    if (this.#stopped) return;
    const { log } = this.#o;
    const scan = await this.#scan(new Map(this.#running), this.#snapshotRoot);
    this.#logRefusals(scan);
    const { resolution } = scan;
    const rejected = new Map<string, RegistryEntry>();
    for (const r of scan.rejected) rejected.set(`${r.id} (${r.path})`, r);

    // Running extensions whose copy on disk is broken keep serving; remember why the new one was refused.
    this.#reloadErrors.clear();
    for (const [id, err] of scan.broken) if (this.#running.has(id) && resolution.resolved.has(id)) this.#reloadErrors.set(id, err);

    // 1. Stop what no longer resolves, dependents (higher levels) first.
    const leaving = [...this.#running.keys()].filter((id) => !resolution.resolved.has(id) && !this.#remote.has(id)).sort((a, b) => (this.#levelOf.get(b) ?? 0) - (this.#levelOf.get(a) ?? 0));
    for (const id of leaving) {
      const managed = this.#running.get(id)!;
      const failure = resolution.failed.get(id);
      this.#running.delete(id);
      this.#candidates.delete(id);
      this.#unsubscribe(id);
      await managed.stop(this.#o.drainMs ?? 5000);
      this.#o.budget.release(managed.budgetKey);
      if (failure) log.warn({ extension: id, code: failure.error.code }, `stopped: ${failure.error.message}`);
      else log.info({ extension: id }, 'removed from the plugin directories: stopped');
    }

    // 2. Listing entries for what did not make it this time (removed extensions are dropped).
    this.#notRunning = rejected;
    for (const [id, f] of resolution.failed) if (!this.#running.has(id)) this.#notRunning.set(id, entry({ id, dir: f.candidate?.dir ?? '', version: f.candidate?.version ?? '' }, 'failed', f.error));

    // 3. Swap changed extensions and start new ones, in dependency order.
    const starting = new Set<string>();
    const swaps: Array<[string, Candidate]> = [];
    for (const [id, candidate] of resolution.resolved) {
      const running = this.#running.get(id);
      const copy = scan.copies.get(candidate);
      if (this.#remote.has(id)) {
        // Served by registered runners: a dropped-in copy of the id does not replace them.
        if (copy) this.#notRunning.set(`${id} (${candidate.dir})`, entry({ id, version: candidate.version, dir: candidate.dir, runtime: copy.pkg.manifest.runtime }, 'stopped', new PlinthError('PLINTH_ERR_DUPLICATE_EXTENSION', `extension ${id} ${candidate.version} at ${candidate.dir} is not used: ${id} is served by registered remote runners`, { extension: id, file: candidate.dir, hint: 'stop its runners (then reload), or remove this copy' })));
        continue;
      }
      if (!running) starting.add(id);
      // The snapshot folder names the contents, plinth.sig included: a re-signed package is swapped too.
      else if (copy && (copy.found.dir !== running.pkg.sourceDir || copy.pkg.version !== running.version || copy.snapshot.dir !== running.pkg.dir)) swaps.push([id, candidate]);
    }
    this.#levelOf = new Map(resolution.levels.flatMap((level, i) => level.map((id) => [id, i] as const)));
    swaps.sort(([a], [b]) => (this.#levelOf.get(a) ?? 0) - (this.#levelOf.get(b) ?? 0));
    this.#announce(scan, new Set([...starting, ...swaps.map(([id]) => id)]));
    for (const [id, candidate] of swaps) await this.#swap(id, candidate, scan.copies.get(candidate)!);
    if (starting.size > 0) await this.#startAll(scan, starting);
    await this.#prune(scan);
  }

  /** Blue/green: start the new copy beside the old; once active it takes new calls and the old one drains and stops. */
  async #swap(id: string, candidate: Candidate, copy: Copy): Promise<void> {
    const { log } = this.#o;
    const old = this.#running.get(id)!;
    const next = await this.#create(copy, `${id}#${path.basename(copy.snapshot.dir)}`);
    if (!next) {
      // #create recorded the refusal under the id; the old version keeps serving and keeps its listing.
      const refusal = this.#notRunning.get(id);
      this.#notRunning.delete(id);
      if (refusal?.reason) this.#reloadErrors.set(id, PlinthError.fromJSON(refusal.reason));
      return;
    }
    this.#launching.add(next);
    try {
      await next.start();
    } finally {
      this.#launching.delete(next);
    }
    if (next.state !== 'active' || this.#stopped) {
      const reason = next.info().reason;
      await next.stop(1000);
      this.#o.budget.release(next.budgetKey);
      const err = reason ? PlinthError.fromJSON(reason) : new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${id} ${copy.pkg.version} did not start`, { extension: id });
      this.#reloadErrors.set(id, err);
      log.error({ ...refusalFields(err), extension: id, version: copy.pkg.version, folder: copy.found.dir }, `new version refused, ${old.version} keeps serving: ${err.message}`);
      return;
    }
    this.#running.set(id, next);
    this.#candidates.set(id, candidate);
    // The subscription follows the running copy; a new version with other `subscribes` gets its own patterns
    // (pending deliveries stay in the store under the id and come to the new one).
    const before = old.pkg.manifest.subscribes;
    const after = next.pkg.manifest.subscribes;
    if (before.length !== after.length || before.some((p, i) => p !== after[i])) {
      this.#unsubscribe(id);
      this.#subscribe(next);
    }
    log.info({ extension: id, from: old.version, to: next.version }, `swapped ${old.version} → ${next.version}`);
    this.#draining.add(old);
    try {
      const drained = await old.drain(this.#o.drainMs ?? 5000);
      if (!drained) log.warn({ extension: id, version: old.version }, 'old version still had calls in flight when its drain time ran out');
      await old.stop(this.#o.drainMs ?? 5000);
    } finally {
      this.#draining.delete(old);
    }
    this.#o.budget.release(old.budgetKey);
  }

  /**
   * Every copy refused this round — at start and on every reload — at warn (shadowed, loaded untrusted) or error,
   * with its code, folder and the file or path concerned: nothing is refused silently (issue 9). Running
   * extensions that no longer resolve are logged by reconcile() as it stops them.
   */
  #logRefusals(scan: ScanResult): void {
    const { log } = this.#o;
    for (const r of scan.rejected) {
      if (!r.reason) continue;
      const fields = { ...refusalFields(PlinthError.fromJSON(r.reason)), extension: r.id, folder: r.path };
      if (r.state === 'failed') log.error(fields, `refused: ${String(r.reason.message)}`);
      else log.warn(fields, `not used: ${String(r.reason.message)}`);
    }
    for (const [id, f] of scan.resolution.failed) {
      // Broken copies were logged above; running ones that no longer resolve, by reconcile() as it stops them.
      if (this.#running.has(id) || scan.broken.get(id) === f.error) continue;
      const folder = f.candidate?.dir ?? [...scan.copies.values()].find((c) => c.found.id === id)?.found.dir;
      log.error({ ...refusalFields(f.error), extension: id, ...(folder ? { folder } : {}) }, `cannot start: ${f.error.message}`);
    }
    for (const copy of scan.copies.values()) {
      if (copy.trust.status === 'untrusted' && scan.resolution.resolved.get(copy.found.id) === copy.candidate) {
        log.warn({ ...refusalFields(copy.trust.error), extension: copy.found.id, folder: copy.found.dir }, `loading untrusted (trust policy warn): ${copy.trust.error.message}`);
      }
    }
  }

  /**
   * Stops everything in reverse dependency order within one overall bound (`timeoutMs` for the whole host, not per
   * level): each level gets what is left. Extensions still starting and old versions still draining after a swap
   * are stopped too. Never throws.
   */
  async stopAll(timeoutMs: number): Promise<void> {
    this.#stopped = true;
    // No new deliveries start; what is pending stays in the store for the next start.
    for (const id of [...this.#subscriptions.keys()]) this.#unsubscribe(id);
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const stop = (m: ManagedExtension) => m.stop(left()).catch((err: unknown) => this.#o.log.error({ extension: m.id }, `stop failed: ${String(err)}`));
    // Not part of the dependency order: they serve nobody yet, or nobody any more.
    const aside = Promise.all([...this.#launching, ...this.#draining].map(stop));
    const byLevel = new Map<number, ManagedExtension[]>();
    for (const [id, m] of this.#running) {
      const level = this.#levelOf.get(id) ?? 0;
      byLevel.set(level, [...(byLevel.get(level) ?? []), m]);
    }
    for (const level of [...byLevel.keys()].sort((a, b) => b - a)) await Promise.all(byLevel.get(level)!.map(stop));
    await aside;
    for (const m of this.#running.values()) this.#retire(m, 'stopped');
    this.#running.clear();
  }
}

/**
 * Every pattern of a manifest's `subscribes` must be covered by a `permissions.events.subscribe` grant (issue 10):
 * otherwise the extension does not start, and the error names the pattern and the grants.
 */
export function checkSubscribes(id: string, subscribes: readonly string[], grants: readonly string[], file: string): PlinthError | undefined {
  for (const pattern of subscribes) {
    if (grants.some((g) => patternCovers(g, pattern))) continue;
    return new PlinthError(
      'PLINTH_ERR_SUBSCRIBE_NOT_GRANTED',
      `extension ${id}: subscribes "${pattern}", which no permissions.events.subscribe grant covers (grants: ${grants.length > 0 ? grants.map((g) => `"${g}"`).join(', ') : 'none'})`,
      { extension: id, file, hint: `add "${pattern}" (or a wider pattern) to permissions.events.subscribe, or narrow the subscribes pattern` },
    );
  }
  return undefined;
}
