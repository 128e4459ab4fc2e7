// The registry of extensions (DESIGN.md §2): lifecycle states, and the records `plinth ls` shows.
import { pino } from 'pino';
import type { PlinthError } from '../errors.ts';
import type { ExtensionPackage, Runtime } from '../manifest/index.ts';
import { emptyTrustStore, loadTrustStore, type TrustPolicy, type TrustStore } from '../trust/index.ts';
import { loadHostConfig, type HostConfig } from '../config/index.ts';
import { DurableBus } from '../events/index.ts';
import { Budget } from '../resilience/index.ts';
import { KvStore } from '../policy/index.ts';
import { Registry, type RegistryOptions } from './registry.ts';

/** DESIGN.md §2 lifecycle states, in order. */
export const STATES = ['discovered', 'validated', 'verified', 'resolved', 'starting', 'active', 'degraded', 'stopping', 'stopped', 'failed'] as const;
export type ExtensionState = (typeof STATES)[number];

export type TrustStatus =
  /** `scope`: the entry of the publisher's trust-store `scopes` that lets it sign this id (absent: it may sign any id). */
  | { status: 'trusted'; publisher: string; keyId: string; scope?: string }
  /** The policy let it through although verification failed (policy `warn`): it may only run as `isolate`. */
  | { status: 'untrusted'; error: PlinthError }
  /** Policy `off`: not checked. */
  | { status: 'unchecked' };

export interface ExtensionRecord {
  id: string;
  version: string | undefined;
  runtime: Runtime | undefined;
  dir: string;
  state: ExtensionState;
  trust: TrustStatus | undefined;
  error: PlinthError | undefined;
  /** As validated from the snapshot. After `scanExtensions` its `dir` (a temp snapshot) is gone; `sourceDir` is `dir` above. */
  pkg: ExtensionPackage | undefined;
}

export interface ScanResult {
  extensions: ExtensionRecord[];
  /** Problems with plugin directories themselves. */
  directoryErrors: PlinthError[];
}

export async function loadTrustStoreFor(storeFile: string | undefined, policy: TrustPolicy): Promise<TrustStore> {
  return storeFile === undefined || policy === 'off' ? emptyTrustStore() : loadTrustStore(storeFile);
}

/**
 * The one place a Registry is assembled (the host, `plinth ls` and `plinth lock` all come here): what is not given
 * gets its default — a private bus and budget from the config, in-memory kv stores, no environment, a silent log.
 */
export function createRegistry(config: HostConfig, parts: Partial<RegistryOptions> & { trustStore: TrustStore }): Registry {
  return new Registry({
    log: pino({ level: 'silent' }),
    bus: new DurableBus(),
    budget: new Budget(config.budget),
    kv: () => new KvStore(),
    env: {},
    ...parts,
    config,
  });
}

/**
 * Everything short of starting: discovers, validates and verifies every copy, and resolves dependencies.
 * A copy that would be started is `verified` — it passed everything starting checks before running its code
 * (host config, trust and runtime, an isolate's imports); a disabled one is `stopped`; anything else is `failed`
 * with its reason (shadowed copies with PLINTH_ERR_DUPLICATE_EXTENSION). Never throws for one extension's fault.
 */
export async function scanExtensions(
  pluginDirs: string[],
  store: TrustStore,
  policy: TrustPolicy,
  /** The host's data directory and per-extension settings, so publisher bindings and assignments are checked as the host would. */
  host: Partial<Pick<HostConfig, 'dataDir' | 'extensions' | 'file'>> = {},
): Promise<ScanResult> {
  const config = await loadHostConfig({ env: {}, noFile: true });
  return createRegistry({ ...config, ...host, plugins: pluginDirs, trust: { store: undefined, policy } }, { trustStore: store }).inspect();
}

export { Registry, HOST_API_VERSION, type RegistryEntry, type RegistryOptions, type RunnerSession } from './registry.ts';
