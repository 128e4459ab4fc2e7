// An extension's key-value store. It knows its own size (keys and values as JSON bytes), so the key-count and
// total-size quotas are checked before a value is stored, never after (issue 7 §4: one call used to add 950 MB
// to the host's heap). Values go in and out as copies. Given a backing (the store's kv table, issue 10) every
// set and delete is committed there before it returns, so ctx.kv survives a restart; the Map is the read cache.
import type { Json } from '../sdk/index.ts';

/** Where a KvStore persists (src/store `Store#kv(id)` returns one). */
export interface KvPersistence {
  entries(): Array<[string, string]>;
  set(key: string, json: string): void;
  delete(key: string): void;
}

export class KvStore {
  readonly #values: Map<string, Json>;
  readonly #sizes = new Map<string, number>();
  readonly #backing: KvPersistence | undefined;
  #bytes = 0;

  /** A store persisted in `backing`, its entries loaded (and counted against the quotas) now. */
  static durable(backing: KvPersistence): KvStore {
    const values = new Map<string, Json>();
    for (const [key, json] of backing.entries()) values.set(key, JSON.parse(json) as Json);
    return new KvStore(values, backing);
  }

  /** `values`: an existing map to keep the store in (its entries are counted against the quotas from now on). */
  constructor(values: Map<string, Json> = new Map(), backing?: KvPersistence) {
    this.#values = values;
    this.#backing = backing;
    for (const [key, value] of values) {
      const size = KvStore.entryBytes(key, JSON.stringify(value) ?? 'null');
      this.#sizes.set(key, size);
      this.#bytes += size;
    }
  }

  /** Keys stored. */
  get size(): number {
    return this.#values.size;
  }

  /** Keys and values as UTF-8 JSON bytes: what `quotas.kv.maxBytes` limits. */
  get bytes(): number {
    return this.#bytes;
  }

  static entryBytes(key: string, json: string): number {
    return Buffer.byteLength(key) + Buffer.byteLength(json);
  }

  has(key: string): boolean {
    return this.#values.has(key);
  }

  get(key: string): Json | undefined {
    const value = this.#values.get(key);
    return value === undefined ? undefined : structuredClone(value);
  }

  /** What the store would hold after `set(key, json)`: for the quota check before the write. */
  sizeAfterSet(key: string, json: string): { keys: number; bytes: number } {
    const old = this.#sizes.get(key);
    return { keys: this.#values.size + (old === undefined ? 1 : 0), bytes: this.#bytes - (old ?? 0) + KvStore.entryBytes(key, json) };
  }

  /** Stores the value `json` (serialised JSON text) under `key`. Quotas are the caller's (the ctx handler's) to check. */
  set(key: string, json: string): void {
    const value = JSON.parse(json) as Json;
    this.#backing?.set(key, json); // committed first: a failed write changes nothing
    const size = KvStore.entryBytes(key, json);
    this.#bytes += size - (this.#sizes.get(key) ?? 0);
    this.#sizes.set(key, size);
    this.#values.set(key, value);
  }

  delete(key: string): boolean {
    const old = this.#sizes.get(key);
    if (old === undefined) return false;
    this.#backing?.delete(key);
    this.#bytes -= old;
    this.#sizes.delete(key);
    return this.#values.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.#values.keys();
  }
}
