// An extension's key-value store. Values are kept as the JSON text the extension sent, so every get is a copy and
// the store knows its own size: the key-count and total-size quotas are checked before a value is stored, never
// after (issue 7 §4: one call used to add 950 MB to the host's heap). In memory for now; a later issue makes it
// durable behind this same class.
import type { Json } from '../sdk/index.ts';

export class KvStore {
  readonly #entries = new Map<string, string>();
  #bytes = 0;

  /** Keys stored. */
  get size(): number {
    return this.#entries.size;
  }

  /** Keys and values as UTF-8 JSON bytes: what `quotas.kv.maxBytes` limits. */
  get bytes(): number {
    return this.#bytes;
  }

  static entryBytes(key: string, json: string): number {
    return Buffer.byteLength(key) + Buffer.byteLength(json);
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  get(key: string): Json | undefined {
    const json = this.#entries.get(key);
    return json === undefined ? undefined : (JSON.parse(json) as Json);
  }

  /** What the store would hold after `set(key, json)`: for the quota check before the write. */
  sizeAfterSet(key: string, json: string): { keys: number; bytes: number } {
    const old = this.#entries.get(key);
    return {
      keys: this.#entries.size + (old === undefined ? 1 : 0),
      bytes: this.#bytes - (old === undefined ? 0 : KvStore.entryBytes(key, old)) + KvStore.entryBytes(key, json),
    };
  }

  /** Stores `json` (already-serialised JSON text) under `key`. Quotas are the caller's (the ctx handler's) to check. */
  set(key: string, json: string): void {
    this.#bytes = this.sizeAfterSet(key, json).bytes;
    this.#entries.set(key, json);
  }

  delete(key: string): boolean {
    const old = this.#entries.get(key);
    if (old === undefined) return false;
    this.#bytes -= KvStore.entryBytes(key, old);
    return this.#entries.delete(key);
  }

  keys(): IterableIterator<string> {
    return this.#entries.keys();
  }
}
