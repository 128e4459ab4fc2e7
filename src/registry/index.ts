// The registry of extensions. For now: the first lifecycle steps (discovered → validated → verified, or
// failed with its reason) that `plinth ls` shows; starting and hot reload build on these records.
import { PlinthError, isPlinthError } from '../errors.ts';
import { discoverExtensions } from '../discovery/index.ts';
import type { ExtensionPackage, Runtime } from '../manifest/index.ts';
import { verifyExtension, emptyTrustStore, loadTrustStore, type TrustPolicy, type TrustStore } from '../trust/index.ts';

/** DESIGN.md §2 lifecycle states, in order. */
export const STATES = ['discovered', 'validated', 'verified', 'resolved', 'starting', 'active', 'degraded', 'stopping', 'stopped', 'failed'] as const;
export type ExtensionState = (typeof STATES)[number];

export type TrustStatus =
  | { status: 'trusted'; publisher: string; keyId: string }
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

/** Discovers, validates and verifies every extension of `pluginDirs`; never throws for one extension's fault. */
export async function scanExtensions(pluginDirs: string[], store: TrustStore, policy: TrustPolicy): Promise<ScanResult> {
  const found = await discoverExtensions(pluginDirs);
  const records: ExtensionRecord[] = found.failures.map((f) => ({
    id: f.id,
    version: undefined,
    runtime: undefined,
    dir: f.dir,
    state: 'failed',
    trust: undefined,
    error: f.error,
    pkg: undefined,
  }));
  const verified = await Promise.all(
    found.extensions.map(async (e): Promise<ExtensionRecord> => {
      const base = { id: e.id, version: e.version, runtime: e.pkg.manifest.runtime, dir: e.dir, pkg: e.pkg };
      if (policy === 'off') return { ...base, state: 'verified', trust: { status: 'unchecked' }, error: undefined };
      try {
        const v = await verifyExtension(e.dir, store, e.id);
        return { ...base, state: 'verified', trust: { status: 'trusted', publisher: v.publisher, keyId: v.keyId }, error: undefined };
      } catch (err) {
        const error = isPlinthError(err) ? err : new PlinthError('PLINTH_ERR_SIG_MALFORMED', `extension ${e.id}: ${(err as Error).message}`, { extension: e.id, file: e.dir, cause: err });
        if (policy === 'warn') return { ...base, state: 'verified', trust: { status: 'untrusted', error }, error: undefined };
        // Refused: the record keeps no package, so nothing downstream can start it.
        return { ...base, pkg: undefined, state: 'failed', trust: undefined, error };
      }
    }),
  );
  records.push(...verified);
  records.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.dir < b.dir ? -1 : 1));
  return { extensions: records, directoryErrors: found.directoryErrors };
}
