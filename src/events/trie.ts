// A trie of AMQP topic patterns matched as an automaton (issue 10 "Topics and matching"). Each pattern is a path
// of words, `*` and `#` edges; a topic is matched by walking every path that can still match, one topic word at
// a time, with a set of live nodes (a `#` node stays live while it eats words, and is live as soon as its parent
// is, since `#` also matches zero words). Each node enters the set at most once per word, so a match costs at
// most (topic words × trie nodes) steps whatever the patterns — no backtracking, no blow-up with many `#` — and
// in practice a handful of nodes per word.
//
// Why our own rather than qlobber (which this replaced): qlobber's recursive walk branches at every `#` (it
// refuses patterns with more than 3 by default, so they needed a side list), allocates a Set per match, and
// matched 350k topics/s on bench/matching.bench.ts's 10 000 wildcard subscriptions against a 1 M/s target; this
// automaton does several million on the same run (README "Events"). Semantics are checked against RabbitMQ's
// topic-exchange vectors and against topics.ts's word-position matcher on random patterns (test/events/matcher.test.ts).

interface TrieNode<T> {
  /** Children by literal word, keyed by the word's number (PatternTrie #words). */
  words: Map<number, TrieNode<T>> | undefined;
  /** Child by `*` (exactly one word). */
  one: TrieNode<T> | undefined;
  /** Child by `#` (zero or more words). */
  some: TrieNode<T> | undefined;
  /** Reached by a `#` edge: stays live while it eats words. */
  readonly isSome: boolean;
  /** Values of the patterns that end here. */
  values: Set<T> | undefined;
  /** The same as an array, made on the first match after a change (an array copies out fastest). */
  list: T[] | undefined;
  readonly parent: TrieNode<T> | undefined;
  readonly edge: string;
  /** The number of `edge` when it is a literal word. */
  readonly wordId: number;
  /** The step at which this node last entered the live set (no node twice per step). */
  mark: number;
}

function node<T>(parent: TrieNode<T> | undefined, edge: string, wordId = -1): TrieNode<T> {
  return { words: undefined, one: undefined, some: undefined, isSome: edge === '#', values: undefined, list: undefined, parent, edge, wordId, mark: 0 };
}

export class PatternTrie<T> {
  readonly #root: TrieNode<T> = node<T>(undefined, '');
  /**
   * Every literal word of the trie, numbered, with how many nodes use it. A match looks each topic word up here
   * once, then walks children by number: one string lookup per topic word instead of one per live node (the
   * string lookups were half the time). A word no pattern names matches only `*` and `#`.
   */
  readonly #words = new Map<string, { id: number; nodes: number }>();
  #nextWordId = 0;
  #step = 0;
  // Scratch arrays reused by every match (match is synchronous and never re-entered).
  #live: Array<TrieNode<T>> = [];
  #next: Array<TrieNode<T>> = [];

  /** Adds `value` under `pattern` (already valid and normalized); adding the same pair twice keeps one. */
  add(pattern: string, value: T): void {
    let n = this.#root;
    for (const word of pattern.split('.')) {
      let child: TrieNode<T> | undefined;
      if (word === '*') child = n.one ??= node(n, '*');
      else if (word === '#') child = n.some ??= node(n, '#');
      else {
        let entry = this.#words.get(word);
        if (!entry) this.#words.set(word, (entry = { id: this.#nextWordId++, nodes: 0 }));
        n.words ??= new Map();
        child = n.words.get(entry.id);
        if (!child) {
          n.words.set(entry.id, (child = node(n, word, entry.id)));
          entry.nodes++;
        }
      }
      n = child;
    }
    (n.values ??= new Set()).add(value);
    n.list = undefined;
  }

  /** Removes the pair; prunes nodes left with no values and no children. */
  remove(pattern: string, value: T): void {
    let n: TrieNode<T> | undefined = this.#root;
    for (const word of pattern.split('.')) {
      if (word === '*') n = n.one;
      else if (word === '#') n = n.some;
      else {
        const id = this.#words.get(word)?.id;
        n = id === undefined ? undefined : n.words?.get(id);
      }
      if (!n) return;
    }
    if (!n.values?.delete(value)) return;
    n.list = undefined;
    if (n.values.size === 0) n.values = undefined;
    while (n.parent && !n.values && !n.one && !n.some && (!n.words || n.words.size === 0)) {
      const p: TrieNode<T> = n.parent;
      if (n.edge === '*') p.one = undefined;
      else if (n.edge === '#') p.some = undefined;
      else {
        p.words!.delete(n.wordId);
        if (p.words!.size === 0) p.words = undefined;
        const entry = this.#words.get(n.edge)!;
        if (--entry.nodes === 0) this.#words.delete(n.edge);
      }
      n = p;
    }
  }

  /** Every value whose pattern matches `topic` (a valid topic), each once, in no particular order. */
  match(topic: string): T[] {
    const words = topic.split('.');
    const dictionary = this.#words;
    // Live nodes are written by index with a count (never `length = 0`, which can drop the backing store).
    let live = this.#live;
    let next = this.#next;
    let liveCount = 0;
    let step = ++this.#step;
    // `#` matches zero words too: a node's `#` child is live whenever the node is (and so on down its `#`s).
    for (let m: TrieNode<T> | undefined = this.#root; m !== undefined && m.mark !== step; m = m.some) {
      m.mark = step;
      live[liveCount++] = m;
    }
    for (let w = 0; w < words.length && liveCount > 0; w++) {
      const id = dictionary.get(words[w]!)?.id ?? -1;
      step = ++this.#step;
      let nextCount = 0;
      for (let i = 0; i < liveCount; i++) {
        const n = live[i]!;
        // Up to three ways on: the literal word, `*`, and (for a `#` node) staying put to eat this word too. A
        // node entering brings its `#` child (and that one's) along, as `#` may match nothing.
        let m: TrieNode<T> | undefined = id < 0 || n.words === undefined ? undefined : n.words.get(id);
        for (; m !== undefined && m.mark !== step; m = m.some) {
          m.mark = step;
          next[nextCount++] = m;
        }
        for (m = n.one; m !== undefined && m.mark !== step; m = m.some) {
          m.mark = step;
          next[nextCount++] = m;
        }
        if (n.isSome) {
          for (m = n; m !== undefined && m.mark !== step; m = m.some) {
            m.mark = step;
            next[nextCount++] = m;
          }
        }
      }
      const t = live;
      live = next;
      next = t;
      liveCount = nextCount;
    }
    this.#live = live;
    this.#next = next;
    // Most topics end on a node or two: concatenate their values, and remove repeats (a value under two matching
    // patterns) by scanning while the answer is small, with a Set only for big ones.
    let out: T[] | undefined;
    let several = false;
    for (let i = 0; i < liveCount; i++) {
      const n = live[i]!;
      if (!n.values) continue;
      const v = (n.list ??= [...n.values]);
      if (!out) {
        out = v.slice();
        continue;
      }
      several = true;
      for (let j = 0; j < v.length; j++) out.push(v[j]!);
    }
    if (!out) return [];
    if (!several) return out;
    if (out.length > 32) return [...new Set(out)];
    let kept = 0;
    for (let i = 0; i < out.length; i++) {
      const x = out[i]!;
      let seen = false;
      for (let j = 0; j < kept; j++) {
        if (out[j] === x) {
          seen = true;
          break;
        }
      }
      if (!seen) out[kept++] = x;
    }
    out.length = kept;
    return out;
  }
}
