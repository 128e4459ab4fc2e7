// The calls in flight of one link or sandbox, by id. A plain null-prototype object, not a Map, on purpose: a Map
// whose entries churn (one set and one delete per call) rehashes its table every few dozen calls, and V8 links
// each obsolete table to its successor (for live iterators). Once one of those tables has been promoted to the
// old generation, every later table and every call record in it survives each scavenge until the next full
// collection: at 64 calls in flight the host's young generation kept 70 % of what it allocated, its scavenges took
// 40-90 ms and its heap swung 25 → 140 MB (issue 14). An object's dictionary has no such chain.
export class CallTable<K extends string | number, V> {
  #entries = Object.create(null) as Partial<Record<K, V>>;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(id: K): V | undefined {
    return this.#entries[id];
  }

  has(id: K): boolean {
    return this.#entries[id] !== undefined;
  }

  /** `value` must not be undefined (undefined marks an absent id). */
  set(id: K, value: V): void {
    if (this.#entries[id] === undefined) this.#size++;
    this.#entries[id] = value;
  }

  delete(id: K): boolean {
    if (this.#entries[id] === undefined) return false;
    delete this.#entries[id];
    this.#size--;
    return true;
  }

  /** A snapshot: safe to settle (and so delete) entries while walking it. */
  values(): V[] {
    return Object.values(this.#entries) as V[];
  }

  clear(): void {
    this.#entries = Object.create(null) as Partial<Record<K, V>>;
    this.#size = 0;
  }
}
