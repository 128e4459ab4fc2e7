// Topic matching for fan-out (issue 10 "Topics and matching"): which subscriptions does a topic reach?
// A trie of patterns matched as an automaton (trie.ts; why our own and not qlobber is said there), so a publish
// walks the topic's words instead of testing every subscription's pattern, and subscribing or unsubscribing
// touches only that pattern's path. The rules stay those of topics.ts.
import { PatternTrie } from './trie.ts';
import { isValidPattern, isValidTopic } from './topics.ts';

/** What the bus needs of a matcher; a second implementation (e.g. for Redis) can fill it. */
export interface TopicMatcher<T> {
  /** Adds `value` under `pattern`. Adding the same pair twice needs two removes. */
  add(pattern: string, value: T): void;
  /** Removes one `add` of the pair; removing a pair never added does nothing. */
  remove(pattern: string, value: T): void;
  /** Every value whose pattern matches `topic`, each once (a value under two matching patterns comes once). */
  match(topic: string): T[];
  /** Number of (pattern, value) pairs held. */
  readonly size: number;
}

/**
 * The same pattern in its shortest spelling: in a run of wildcards, the `#`s collapse into one placed after the
 * `*`s (`#.#` → `#`, `#.*.#` → `*.#`, `#.*` → `*.#`). Each spelling matches exactly the same topics.
 */
export function normalizePattern(pattern: string): string {
  const out: string[] = [];
  let stars = 0;
  let some = false;
  const flush = () => {
    for (let i = 0; i < stars; i++) out.push('*');
    if (some) out.push('#');
    stars = 0;
    some = false;
  };
  for (const word of pattern.split('.')) {
    if (word === '*') stars++;
    else if (word === '#') some = true;
    else {
      flush();
      out.push(word);
    }
  }
  flush();
  return out.join('.');
}

export interface TopicMatcherOptions {
  /**
   * Distinct topics whose match is remembered until the next add or remove (default 4096; 0 = none). Busy buses
   * publish the same few topics again and again; a hostile publisher's endless new topics only evict entries.
   */
  cacheSize?: number;
}

class TrieTopicMatcher<T> implements TopicMatcher<T> {
  readonly #trie = new PatternTrie<T>();
  /** How many times each value was added under each (normalized) pattern. */
  readonly #counts = new Map<string, Map<T, number>>();
  #size = 0;
  readonly #cacheSize: number;
  #cache = new Map<string, T[]>();

  constructor(options: TopicMatcherOptions) {
    this.#cacheSize = options.cacheSize ?? 4096;
  }

  #changed(): void {
    if (this.#cache.size > 0) this.#cache = new Map();
  }

  add(pattern: string, value: T): void {
    if (!isValidPattern(pattern)) throw new TypeError(`not a valid topic pattern: ${JSON.stringify(pattern)}`);
    const key = normalizePattern(pattern);
    let values = this.#counts.get(key);
    if (!values) this.#counts.set(key, (values = new Map<T, number>()));
    const n = values.get(value) ?? 0;
    values.set(value, n + 1);
    this.#size++;
    if (n > 0) return;
    this.#changed();
    this.#trie.add(key, value);
  }

  remove(pattern: string, value: T): void {
    if (!isValidPattern(pattern)) return;
    const key = normalizePattern(pattern);
    const values = this.#counts.get(key);
    const n = values?.get(value);
    if (!values || n === undefined) return;
    this.#size--;
    if (n > 1) {
      values.set(value, n - 1);
      return;
    }
    values.delete(value);
    if (values.size === 0) this.#counts.delete(key);
    this.#changed();
    this.#trie.remove(key, value);
  }

  match(topic: string): T[] {
    const cached = this.#cache.get(topic);
    // A copy: callers may change the array they get.
    if (cached) return cached.slice();
    if (!isValidTopic(topic)) return [];
    const found = this.#lookup(topic);
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(topic, found);
      return found.slice();
    }
    return found;
  }

  #lookup(topic: string): T[] {
    return this.#trie.match(topic);
  }

  get size(): number {
    return this.#size;
  }
}

/** A matcher from AMQP-style patterns (`*` one word, `#` zero or more) to values, e.g. subscriptions. */
export function createTopicMatcher<T>(options: TopicMatcherOptions = {}): TopicMatcher<T> {
  return new TrieTopicMatcher<T>(options);
}
