// The embedded store (issue 10, DESIGN.md §1 "store"): event journal, pending deliveries, dead letters and each
// extension's kv, in one SQLite file in the host's data dir. Callers use the `Store` interface only.
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { PlinthError } from '../errors.ts';
import { SqliteStore } from './sqlite.ts';
import type { Store } from './types.ts';

export type { Store, CommitParticipant, AttemptRecord, PendingDelivery, DeadLetter, DeadLetterFilter, KnownSubscription, KvBacking, RunJournalBacking, RunRow, RunRowChange, StageRow } from './types.ts';
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

/**
 * The data dir's store, opened on first use: a host that is only constructed (and never started or published
 * on) leaves the data dir untouched. `open()` opens it now, so a refused file fails where the caller expects.
 */
export function openStoreLazily(dataDir: string): Store & { open(): void } {
  let store: Store | undefined;
  let closed = false;
  const get = (): Store => {
    if (closed) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `the store ${storeFile(dataDir)} is closed`, { file: storeFile(dataDir) });
    return (store ??= openStore(dataDir));
  };
  return new Proxy({} as Store & { open(): void }, {
    get(_target, prop) {
      if (prop === 'location') return storeFile(dataDir);
      if (prop === 'open') return () => void get();
      if (prop === 'close') {
        return () => {
          closed = true;
          store?.close();
        };
      }
      const s = get();
      const value: unknown = Reflect.get(s, prop, s);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(s) : value;
    },
  });
}
