// Topic matching for fan-out (issue 10 "Topics and matching"): which subscriptions does a topic reach?
// Built on qlobber, a trie made for AMQP topic semantics (it passes RabbitMQ's own topic-exchange tests), so
// a publish walks the trie along the topic's words instead of testing every subscription's pattern, and
// subscribing or unsubscribing touches only that pattern's path. The rules stay those of topics.ts.
import { QlobberDedup } from 'qlobber';
import { isValidPattern, isValidTopic, matchTopic } from './topics.ts';

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

// A topic is at most 255 characters, so at most 128 words: qlobber must accept every valid topic.
const MAX_WORDS = 128;
// qlobber's walk branches at every `#`, so its cost grows with the number of `#` words in one pattern (it
// refuses more than 3 by default). Patterns with more are rare; they are kept beside the trie and matched by
// topics.ts's word-position matcher, which is polynomial whatever the pattern, so a hostile pattern costs
// little and never changes what matches.
const MAX_TRIE_WILDCARD_SOMES = 3;

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

function countSomes(pattern: string): number {
  let n = 0;
  for (const word of pattern.split('.')) if (word === '#') n++;
  return n;
}

export interface TopicMatcherOptions {
  /**
   * Distinct topics whose match is remembered until the next add or remove (default 4096; 0 = none). Busy buses
   * publish the same few topics again and again; a hostile publisher's endless new topics only evict entries.
   */
  cacheSize?: number;
}

class QlobberTopicMatcher<T> implements TopicMatcher<T> {
  readonly #trie = new QlobberDedup<T>({ separator: '.', wildcard_one: '*', wildcard_some: '#', max_words: MAX_WORDS, max_wildcard_somes: MAX_TRIE_WILDCARD_SOMES });
  /** How many times each value was added under each (normalized) pattern. */
  readonly #counts = new Map<string, Map<T, number>>();
  /** Patterns with too many `#` for the trie, matched one by one (see MAX_TRIE_WILDCARD_SOMES). */
  readonly #side = new Map<string, Set<T>>();
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
    if (countSomes(key) > MAX_TRIE_WILDCARD_SOMES) {
      let side = this.#side.get(key);
      if (!side) this.#side.set(key, (side = new Set()));
      side.add(value);
    } else {
      this.#trie.add(key, value);
    }
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
    const side = this.#side.get(key);
    if (side) {
      side.delete(value);
      if (side.size === 0) this.#side.delete(key);
    } else {
      this.#trie.remove(key, value);
    }
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
    // qlobber may hand back a Set it keeps inside its trie (when one node matched): read it, never change it.
    const inTrie = this.#trie.match(topic);
    if (this.#side.size === 0) return [...inTrie];
    const found = new Set(inTrie);
    for (const [pattern, values] of this.#side) {
      if (matchTopic(pattern, topic)) for (const v of values) found.add(v);
    }
    return [...found];
  }

  get size(): number {
    return this.#size;
  }
}

/** A matcher from AMQP-style patterns (`*` one word, `#` zero or more) to values, e.g. subscriptions. */
export function createTopicMatcher<T>(options: TopicMatcherOptions = {}): TopicMatcher<T> {
  return new QlobberTopicMatcher<T>(options);
}
