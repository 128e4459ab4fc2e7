// The StageCatalog the pre-run check reads, built from a registry scan: each usable extension's declared stage
// schemas (manifest `plinth.stages`), and why each unusable one cannot be used. Usable means what `plinth ls`
// calls verified (it passed everything starting checks before running its code) or already active.
import type { HostConfig } from '../../config/index.ts';
import { loadTrustStoreFor, scanExtensions, type ExtensionRecord } from '../../registry/index.ts';
import type { Json } from '../../sdk/index.ts';
import type { StageCatalog } from '../types.ts';

type Entry = { version: string; stages: Record<string, { input: Json; output: Json }> };

const USABLE = new Set(['verified', 'resolved', 'starting', 'active', 'degraded']);

export function catalogFromRecords(records: ExtensionRecord[]): StageCatalog {
  const usable = new Map<string, Entry>();
  const reasons = new Map<string, string>();
  for (const r of records) {
    if (USABLE.has(r.state) && r.pkg && r.version !== undefined) {
      const stages: Entry['stages'] = {};
      for (const [name, s] of Object.entries(r.pkg.manifest.stages)) {
        Object.defineProperty(stages, name, { value: { input: s.input as Json, output: s.output as Json }, enumerable: true });
      }
      usable.set(r.id, { version: r.version, stages });
    } else if (!usable.has(r.id) && !reasons.has(r.id)) {
      reasons.set(r.id, r.state === 'stopped' ? 'it is disabled in the host config (extensions.<id>.enabled: false)' : r.error ? `${r.error.code}: ${r.error.message}` : `it is ${r.state}`);
    }
  }
  return {
    extension: (id) => usable.get(id),
    ids: () => [...usable.keys()],
    unavailable: (id) => (usable.has(id) ? undefined : reasons.get(id)),
  };
}

/** Scans the configured plugin directories as `plinth ls` does and returns their catalog. */
export async function loadStageCatalog(config: HostConfig): Promise<{ catalog: StageCatalog; records: ExtensionRecord[] }> {
  const store = await loadTrustStoreFor(config.trust.store, config.trust.policy);
  const { extensions } = await scanExtensions(config.plugins, store, config.trust.policy, { dataDir: config.dataDir, extensions: config.extensions, file: config.file });
  return { catalog: catalogFromRecords(extensions), records: extensions };
}
