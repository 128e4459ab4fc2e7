// An extension's key-value store. It knows its own size (keys and values as JSON bytes), so the key-count and
// total-size quotas are checked before a value is stored, never after (issue 7 §4: one call used to add 950 MB
// to the host's heap). Values go in and out as copies. In memory for now; a later issue makes it durable behind
// this same class.
import type { Json } from '../sdk/index.ts';

export class KvStore {
  readonly #values: Map<string, Json>;
  readonly #sizes = new Map<string, number>();
  #bytes = 0;

  /** `values`: an existing map to keep the store in (its entries are counted against the quotas from now on). */
  constructor(values: Map<string, Json> = new Map()) {
    this.#values = values;
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
    const size = KvStore.entryBytes(key, json);
    this.#bytes += size - (this.#sizes.get(key) ?? 0);
    this.#sizes.set(key, size);
    this.#values.set(key, JSON.parse(json) as Json);
  }

  delete(key: string): boolean {
    const old = this.#sizes.get(key);
    if (old === undefined) return false;
    this.#bytes -= old;
    this.#sizes.delete(key);
    return this.#values.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.#values.keys();
  }
}
