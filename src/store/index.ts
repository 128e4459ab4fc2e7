// The embedded store (issue 10, DESIGN.md §1 "store"): event journal, pending deliveries, dead letters and each
// extension's kv, in one SQLite file in the host's data dir. Callers use the `Store` interface only.
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { SqliteStore } from './sqlite.ts';
import type { Store } from './types.ts';

export type { Store, AttemptRecord, PendingDelivery, DeadLetter, DeadLetterFilter, KnownSubscription, KvBacking } from './types.ts';
export { SqliteStore, APPLICATION_ID, STORE_VERSION, MIGRATIONS } from './sqlite.ts';

/** The store file of a data dir. */
export function storeFile(dataDir: string): string {
  return path.join(dataDir, 'plinth.db');
}

/** Opens the data dir's store (creating the folder and the file when missing). */
export function openStore(dataDir: string): Store {
  mkdirSync(dataDir, { recursive: true });
  return SqliteStore.open(storeFile(dataDir));
}
