// `plinth dlq ls|show|replay|purge`: the dead letters in the data dir's store, while no host runs (issue 10; the
// control-channel issue makes these talk to a running host). A replay puts the event back as a pending delivery
// for its original subscriber (or every subscriber the store knows for its topic); the host delivers it at its
// next start.
import { existsSync } from 'node:fs';
import { loadHostConfig, durationMs, type ConfigFlags } from '../../config/index.ts';
import { isValidPattern, matchTopic } from '../../events/index.ts';
import { openStore, storeFile, type DeadLetter, type DeadLetterFilter, type Store } from '../../store/index.ts';
import { PlinthError } from '../../errors.ts';
import { EXIT, table, usageError, type Io, type Outcome } from '../output.ts';

export interface DlqFlags extends ConfigFlags {
  json?: boolean;
  topic?: string;
  subscriber?: string;
  since?: string;
  until?: string;
  limit?: string;
  to?: string;
  all?: boolean;
}

/** `--since 1h` (that long ago) or an ISO 8601 time. */
function timeFlag(name: string, value: string | undefined, now: number): string | undefined {
  if (value === undefined) return undefined;
  if (/^\d+(ms|s|m|h|d)$/.test(value)) return new Date(now - durationMs(value)).toISOString();
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw usageError(`--${name} ${JSON.stringify(value)} is neither a time nor a duration`, 'give an ISO 8601 time (2026-01-01T10:00:00Z) or a duration ago (30m, 24h)');
  return new Date(t).toISOString();
}

function filterOf(flags: DlqFlags, ids: string[], now: number): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  if (flags.topic !== undefined) {
    if (!isValidPattern(flags.topic)) throw usageError(`--topic ${JSON.stringify(flags.topic)} is not a topic pattern`, 'words, `*` and `#` separated by dots');
    const pattern = flags.topic;
    filter.topicMatches = (t) => matchTopic(pattern, t);
  }
  if (flags.subscriber !== undefined) filter.subscriber = flags.subscriber;
  const since = timeFlag('since', flags.since, now);
  const until = timeFlag('until', flags.until, now);
  if (since !== undefined) filter.since = since;
  if (until !== undefined) filter.until = until;
  if (flags.limit !== undefined) {
    if (!/^\d+$/.test(flags.limit)) throw usageError(`--limit ${JSON.stringify(flags.limit)} is not a count`);
    filter.limit = Number(flags.limit);
  }
  if (ids.length > 0) filter.ids = ids.map(parseId);
  return filter;
}

function parseId(raw: string): number {
  if (!/^\d+$/.test(raw)) throw usageError(`${JSON.stringify(raw)} is not a dead-letter id`, 'ids are the numbers `plinth dlq ls` shows');
  return Number(raw);
}

function letterJson(d: DeadLetter): Record<string, unknown> {
  return { id: d.id, subscriber: d.subscriber, event: d.event, attempts: d.attempts, deadAt: d.deadAt, expiresAt: d.expiresAt };
}

/** Opens the data dir's store if there is one; expired dead letters are dropped first (`events.deadLetterTtl`). */
async function withStore<T>(flags: DlqFlags, fn: (store: Store | undefined, now: number) => T): Promise<T> {
  const config = await loadHostConfig({ flags });
  const now = Date.now();
  if (!existsSync(storeFile(config.dataDir))) return fn(undefined, now);
  const store = openStore(config.dataDir);
  try {
    store.expireDeadLetters(new Date(now));
    return fn(store, now);
  } finally {
    store.close();
  }
}

export function dlqLs(io: Io, flags: DlqFlags): Promise<Outcome> {
  return withStore(flags, (store, now) => {
    const letters = store ? store.listDeadLetters(filterOf(flags, [], now)) : [];
    if (flags.json) {
      // --json: the envelope carries the data
    } else if (letters.length === 0) io.out('no dead letters');
    else {
      io.out(
        table(
          ['ID', 'SUBSCRIBER', 'TOPIC', 'ATTEMPTS', 'DEAD AT', 'LAST ERROR'],
          letters.map((d) => [String(d.id), d.subscriber, d.event.topic, String(d.attempts.length), d.deadAt, d.attempts.at(-1)?.error.message.split('\n')[0]?.slice(0, 80) ?? '']),
        ),
      );
    }
    return { code: EXIT.ok, data: { deadLetters: letters.map(letterJson) } };
  });
}

export function dlqShow(io: Io, id: string, flags: DlqFlags): Promise<Outcome> {
  const n = parseId(id);
  return withStore(flags, (store) => {
    const d = store?.getDeadLetter(n);
    if (!d) {
      throw new PlinthError('PLINTH_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter ${n}`, { hint: 'list them with `plinth dlq ls`' });
    }
    if (!flags.json) {
      io.out(`dead letter ${d.id}: ${d.event.topic} for ${d.subscriber}\n  event ${d.event.id} from ${d.event.source ?? '?'} at ${d.event.time}\n  dead at ${d.deadAt}, expires ${d.expiresAt}`);
      io.out(`  payload: ${JSON.stringify(d.event.payload)}`);
      for (const a of d.attempts) io.out(`  attempt ${a.attempt} ${a.startedAt} → ${a.failedAt}: ${a.error.code ? `${a.error.code}: ` : ''}${a.error.message}`);
    }
    return { code: EXIT.ok, data: { deadLetter: letterJson(d) } };
  });
}

export function dlqReplay(io: Io, ids: string[], flags: DlqFlags): Promise<Outcome> {
  const to = flags.to ?? 'original';
  if (to !== 'original' && to !== 'all') throw usageError(`--to ${JSON.stringify(to)}: give original or all`);
  if (ids.length === 0 && !flags.all && flags.topic === undefined && flags.subscriber === undefined) throw usageError('which dead letters? give ids, --topic/--subscriber, or --all');
  return withStore(flags, (store, now) => {
    const replayed: Array<{ id: number; to: string[] }> = [];
    if (store) {
      const known = store.knownSubscriptions();
      for (const d of store.listDeadLetters(filterOf(flags, ids, now))) {
        const targets = to === 'original' ? [d.subscriber] : known.filter((k) => k.patterns.some((p) => matchTopic(p, d.event.topic))).map((k) => k.subscriber);
        if (store.replayDeadLetter(d.id, targets)) replayed.push({ id: d.id, to: targets });
      }
    }
    if (!flags.json) io.out(replayed.length === 0 ? 'no dead letters matched' : replayed.map((r) => `replayed ${r.id} → ${r.to.join(', ') || '(no subscriber of its topic)'}`).join('\n') + '\n(delivered when the host starts)');
    return { code: EXIT.ok, data: { replayed } };
  });
}

export function dlqPurge(io: Io, ids: string[], flags: DlqFlags): Promise<Outcome> {
  if (ids.length === 0 && !flags.all && flags.topic === undefined && flags.subscriber === undefined && flags.since === undefined && flags.until === undefined) {
    throw usageError('which dead letters? give ids, filters (--topic, --subscriber, --since, --until), or --all');
  }
  return withStore(flags, (store, now) => {
    const purged = store ? store.purgeDeadLetters(filterOf(flags, ids, now)) : 0;
    if (!flags.json) io.out(`purged ${purged} dead letter(s)`);
    return { code: EXIT.ok, data: { purged } };
  });
}
