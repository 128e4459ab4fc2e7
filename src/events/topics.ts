// Topics are dot-separated words; patterns use AMQP wildcards: `*` exactly one word, `#` zero or more (DESIGN.md §6).

const WORD = /^[A-Za-z0-9_-]+$/;
const TOPIC = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;

/**
 * First words of the topics the host publishes on (DESIGN.md §6): no extension may publish under them, whatever
 * its grant. Compared case-insensitively, so `Host.started` cannot pass for the host's either.
 */
export const RESERVED_TOPIC_ROOTS: readonly string[] = ['extension', 'pipeline', 'host'];

/** The `source` of events the host publishes itself; no extension may have this id (it would forge it). */
export const HOST_SOURCE = 'host';

/** True for a topic under a reserved root (`extension.csv.failed`, `HOST.x`). */
export function isReservedTopic(topic: string): boolean {
  return RESERVED_TOPIC_ROOTS.includes(topic.split('.', 1)[0]!.toLowerCase());
}

/** True for a concrete topic (no wildcards) such as `orders.created`. */
export function isValidTopic(topic: string): boolean {
  // One linear-time regex over the whole topic (no split): the matcher checks every topic it is asked about.
  return typeof topic === 'string' && topic.length > 0 && topic.length <= 255 && TOPIC.test(topic);
}

/** True for a pattern such as `orders.*` or `security.#`. */
export function isValidPattern(pattern: string): boolean {
  return typeof pattern === 'string' && pattern.length > 0 && pattern.length <= 255 && pattern.split('.').every((w) => w === '*' || w === '#' || WORD.test(w));
}

/** Does `topic` match `pattern`? Iterative over word positions, so hostile patterns cannot blow up. */
export function matchTopic(pattern: string, topic: string): boolean {
  const p = pattern.split('.');
  const t = topic.split('.');
  // reachable[j]: the first i pattern words can match the first j topic words.
  let reachable = new Array<boolean>(t.length + 1).fill(false);
  reachable[0] = true;
  for (const word of p) {
    const next = new Array<boolean>(t.length + 1).fill(false);
    for (let j = 0; j <= t.length; j++) {
      if (!reachable[j]) continue;
      if (word === '#') {
        for (let k = j; k <= t.length; k++) next[k] = true;
        break;
      }
      if (j < t.length && (word === '*' || word === t[j])) next[j + 1] = true;
    }
    reachable = next;
  }
  return reachable[t.length] === true;
}

/** An extension id as one topic word (`@acme/csv.v2` → `acme_csv_v2`); event payloads carry the real id. */
export function topicWord(id: string): string {
  return id.replace(/^@/, '').replace(/[^A-Za-z0-9_-]/g, '_');
}
