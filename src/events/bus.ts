// The event bus (issue 10, DESIGN.md §6): publish → middleware → journal (group commit) → per-subscriber queues.
// Nothing sees an event before it is committed: every subscriber, in-memory ones too, gets it after the group
// commit that journals it. Delivery is at-least-once: a durable subscriber's pending deliveries are rows in the
// store until acknowledged (its handler returned), so a host killed with SIGKILL redelivers them after restart.
// Each attempt is bounded by `events.deliveryTimeout`: a handler that never returns is a failed attempt
// (PLINTH_ERR_EVENT_DELIVERY_TIMEOUT), retried, then dead-lettered, so it cannot pin a pending row forever. Order holds per topic per
// subscriber: the next event on a topic waits until the previous one was acknowledged or dead-lettered. Each
// subscriber has its own queue and in-flight bound, so a slow or failing one never delays the others; a
// publisher that outruns a subscriber's queue bound gets PLINTH_ERR_EVENT_QUEUE_FULL (nothing is stored, memory
// stays bounded). Failed attempts are retried with exponential backoff and jitter, then dead-lettered.
import { randomUUID } from 'node:crypto';
import { eventId } from './ids.ts';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { DeliveredEvent, EventHeaders, Json, PlinthEvent } from '../sdk/index.ts';
import { SqliteStore, type AttemptRecord, type DeadLetter, type DeadLetterFilter, type Store } from '../store/index.ts';
import { isValidPattern, isValidTopic, matchTopic } from './topics.ts';
import { createTopicMatcher, type TopicMatcher } from './matcher.ts';
import { systemClock, type Clock } from './clock.ts';
import { runMiddleware, type Middleware } from './middleware.ts';

export type EventHandler = (event: DeliveredEvent) => void | Promise<void>;

export interface RetryPolicy {
  /** Attempts in all, the first included; after the last failure the event is dead-lettered. */
  maxAttempts: number;
  backoff: 'exponential' | 'fixed';
  baseMs: number;
  maxMs: number;
  /** Randomise each delay between half and all of it, so failing subscribers do not retry in lockstep. */
  jitter: boolean;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, backoff: 'exponential', baseMs: 200, maxMs: 30_000, jitter: true };

export interface SubscribeOptions {
  /** A durable subscriber's stable name (an extension's id): its pending deliveries live in the store under it. */
  name?: string;
  /** Keep pending deliveries in the store across restarts (needs `name` and a bus with a store). Default: true when named. */
  durable?: boolean;
  retry?: Partial<RetryPolicy>;
  /** Handler calls running at once (different topics; one topic is always one at a time). */
  maxInFlight?: number;
  /** Events waiting for this subscriber before a publish is refused with PLINTH_ERR_EVENT_QUEUE_FULL. */
  maxQueued?: number;
  /** Bound on one handler call (ms); past it the attempt failed with PLINTH_ERR_EVENT_DELIVERY_TIMEOUT. Default: the bus's. */
  deliveryTimeoutMs?: number;
}

export type Unsubscribe = () => void;

export interface EventPublisher {
  publish(topic: string, payload: Json, source?: string, headers?: EventHeaders): Promise<unknown>;
}

/** The bus as its callers see it; a Redis implementation (later issue) fills the same shape. */
export interface EventBus extends EventPublisher {
  /** Resolves with the event once it is in the store (durable bus) and queued for every subscriber it matches. */
  publish(topic: string, payload: Json, source?: string, headers?: EventHeaders): Promise<PlinthEvent>;
  subscribe(patterns: string | readonly string[], handler: EventHandler, options?: SubscribeOptions): Unsubscribe;
  /** Adds a link at the end of the middleware chain around publish (middleware.ts); returns its removal. */
  use(middleware: Middleware): () => void;
  listDeadLetters(filter?: DeadLetterQuery): DeadLetter[];
  getDeadLetter(id: number): DeadLetter | undefined;
  /** Sends a dead letter's event again, to its original subscriber or to every current subscriber of its topic. */
  replayDeadLetter(id: number, to?: 'original' | 'all'): { replayedTo: string[] };
  purgeDeadLetters(filter?: DeadLetterQuery): number;
  /** Removes the dead letters past `events.deadLetterTtl` (also done on a timer). */
  expireDeadLetters(): number;
  /** Events waiting or in flight for a subscriber (by name). */
  queued(subscriber: string): number;
  /** Resolves once every subscriber's queue is empty (or rejects after `timeoutMs`). */
  idle(timeoutMs?: number): Promise<void>;
  /** Commits what was published, stops retries and timers; in-flight handlers' acks still count if they return. */
  close(): Promise<void>;
}

export type DeadLetterQuery = Omit<DeadLetterFilter, 'topicMatches'> & { topic?: string };

export interface BusOptions {
  /** Where events, pending deliveries and dead letters go. Without one the bus is in-memory only. */
  store?: Store;
  maxPayloadBytes?: number;
  deadLetterTtlMs?: number;
  retry?: Partial<RetryPolicy>;
  maxQueuedPerSubscriber?: number;
  maxInFlightPerSubscriber?: number;
  /** Bound on every handler call (ms), `events.deliveryTimeout`; a subscriber may set its own. */
  deliveryTimeoutMs?: number;
  /** How long fully delivered events stay in the journal. */
  journalRetentionMs?: number;
  clock?: Clock;
  random?: () => number;
  matcher?: TopicMatcher<Subscriber>;
  /** Told about failures nobody awaits (a store write after an ack, a dead letter). */
  onError?: (message: string, fields: Record<string, unknown>) => void;
  /** Told when an event is dead-lettered. */
  onDeadLetter?: (letter: DeadLetter) => void;
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
export const DEFAULT_DEAD_LETTER_TTL_MS = 24 * 60 * 60 * 1000;
export const DEFAULT_MAX_QUEUED = 10_000;
export const DEFAULT_MAX_IN_FLIGHT = 8;
export const DEFAULT_DELIVERY_TIMEOUT_MS = 60_000;

interface Delivery {
  seq: number | undefined;
  event: PlinthEvent;
  attempts: AttemptRecord[];
  redelivered: boolean;
}

/** One subscription: its queue per topic and its bounds. */
class Subscriber {
  readonly name: string;
  readonly patterns: readonly string[];
  readonly handler: EventHandler;
  readonly durable: boolean;
  readonly retry: RetryPolicy;
  readonly maxInFlight: number;
  readonly maxQueued: number;
  readonly deliveryTimeoutMs: number;
  /** FIFO per topic; the head is in flight or waiting for its retry, unless the topic is in `ready`. */
  readonly queues = new Map<string, Delivery[]>();
  /** Topics whose head may be attempted now. */
  readonly ready: string[] = [];
  readonly timers = new Set<unknown>();
  queued = 0;
  reserved = 0;
  inFlight = 0;
  pumping = false;
  closed = false;

  constructor(name: string, patterns: readonly string[], handler: EventHandler, durable: boolean, retry: RetryPolicy, maxInFlight: number, maxQueued: number, deliveryTimeoutMs: number) {
    this.deliveryTimeoutMs = deliveryTimeoutMs;
    this.name = name;
    this.patterns = patterns;
    this.handler = handler;
    this.durable = durable;
    this.retry = retry;
    this.maxInFlight = maxInFlight;
    this.maxQueued = maxQueued;
  }
}

export type { Subscriber };

interface PendingPublish {
  event: PlinthEvent;
  payloadJson: string;
  subscribers: Subscriber[];
  resolve: (event: PlinthEvent) => void;
  reject: (err: unknown) => void;
}

/** Marks a settled attempt that did not fail (a handler may throw `undefined`). */
const NO_ERROR = Symbol('no error');

function errorRecord(err: unknown): AttemptRecord['error'] {
  if (isPlinthError(err)) return { code: err.code, message: err.message };
  return { message: err instanceof Error ? err.message : String(err) };
}

export function retryDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = policy.backoff === 'fixed' ? policy.baseMs : Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(policy.jitter ? ceiling / 2 + (random() * ceiling) / 2 : ceiling);
}

/** What the bus has done since it was made (the control channel's /metrics reads them). */
export interface BusCounters {
  published: number;
  delivered: number;
  retried: number;
  deadLettered: number;
}

export class DurableBus implements EventBus {
  readonly counters: BusCounters = { published: 0, delivered: 0, retried: 0, deadLettered: 0 };
  readonly #store: Store | undefined;
  /** Dead letters of an in-memory bus live in an in-memory SQLite database, so both kinds answer the same API. */
  readonly #letters: Store;
  readonly #o: Required<Pick<BusOptions, 'maxPayloadBytes' | 'deadLetterTtlMs' | 'maxQueuedPerSubscriber' | 'maxInFlightPerSubscriber' | 'journalRetentionMs' | 'deliveryTimeoutMs'>> & { retry: RetryPolicy };
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #matcher: TopicMatcher<Subscriber>;
  readonly #subscribers = new Map<string, Subscriber>();
  readonly #middleware: Middleware[] = [];
  readonly #onError: NonNullable<BusOptions['onError']>;
  readonly #onDeadLetter: BusOptions['onDeadLetter'];
  #batch: PendingPublish[] = [];
  #acks: Array<{ subscriber: string; seq: number }> = [];
  #flushScheduled = false;
  #closed = false;
  #idleWaiters: Array<() => void> = [];
  #housekeeping: unknown;

  constructor(options: BusOptions = {}) {
    this.#store = options.store;
    this.#letters = options.store ?? SqliteStore.open(':memory:');
    this.#o = {
      maxPayloadBytes: options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
      deadLetterTtlMs: options.deadLetterTtlMs ?? DEFAULT_DEAD_LETTER_TTL_MS,
      maxQueuedPerSubscriber: options.maxQueuedPerSubscriber ?? DEFAULT_MAX_QUEUED,
      maxInFlightPerSubscriber: options.maxInFlightPerSubscriber ?? DEFAULT_MAX_IN_FLIGHT,
      journalRetentionMs: options.journalRetentionMs ?? 60 * 60 * 1000,
      deliveryTimeoutMs: options.deliveryTimeoutMs ?? DEFAULT_DELIVERY_TIMEOUT_MS,
      retry: { ...DEFAULT_RETRY, ...options.retry },
    };
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#matcher = options.matcher ?? createTopicMatcher<Subscriber>();
    this.#onError = options.onError ?? (() => {});
    this.#onDeadLetter = options.onDeadLetter;
    this.#scheduleHousekeeping();
  }

  /** True when events and pending deliveries are kept in a store. */
  get durable(): boolean {
    return this.#store !== undefined;
  }

  use(middleware: Middleware): () => void {
    this.#middleware.push(middleware);
    return () => {
      const i = this.#middleware.indexOf(middleware);
      if (i >= 0) this.#middleware.splice(i, 1);
    };
  }

  /** Returns the payload as JSON: the store writes that same text. */
  #checkSize(event: PlinthEvent): string {
    const json = JSON.stringify(event.payload) ?? 'null';
    const bytes = json.length > this.#o.maxPayloadBytes / 3 ? Buffer.byteLength(json) : json.length; // ≤ 3 bytes per UTF-16 unit
    if (bytes > this.#o.maxPayloadBytes) {
      throw new PlinthError('PLINTH_ERR_EVENT_TOO_LARGE', `event on "${event.topic}"${event.source ? ` from ${event.source}` : ''}: its payload is ${bytes} bytes, over the ${this.#o.maxPayloadBytes}-byte limit (events.maxPayloadBytes)`, {
        ...(event.source && event.source !== 'host' ? { extension: event.source } : {}),
        hint: 'publish a smaller payload (a reference to the data instead of the data), or raise events.maxPayloadBytes in the host config',
      });
    }
    return json;
  }

  async publish(topic: string, payload: Json, source?: string, headers?: EventHeaders): Promise<PlinthEvent> {
    if (this.#closed) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `the event bus is closed: "${topic}" was not published`);
    if (!isValidTopic(topic)) throw new PlinthError('PLINTH_ERR_EVENT_TOPIC_INVALID', `not a valid topic: ${JSON.stringify(topic)}`, { hint: 'topics are dot-separated words of letters, digits, _ and -' });
    const now = this.#clock.now();
    const event: PlinthEvent = { id: eventId(now), topic, time: new Date(now).toISOString(), payload, ...(source ? { source } : {}) };
    if (headers) event.headers = checkHeaders(headers);
    const payloadJson = this.#checkSize(event);
    if (this.#middleware.length === 0) return this.#commit(event, payloadJson);
    return runMiddleware(this.#middleware, event, (next) => {
      if (next === event) return this.#commit(event, payloadJson);
      // A link changed it: the same checks again on what it passed on.
      if (next.headers) next.headers = checkHeaders(next.headers);
      return this.#commit(next, this.#checkSize(next));
    });
  }

  /** Queues the event for the next group commit; resolves once it is committed (or at once on a bus without a store). */
  #commit(event: PlinthEvent, payloadJson: string): Promise<PlinthEvent> {
    if (this.#closed) return Promise.reject(new PlinthError('PLINTH_ERR_SHUTDOWN', `the event bus is closed: "${event.topic}" was not published`));
    const subscribers = this.#matcher.match(event.topic);
    for (const s of subscribers) {
      if (s.queued + s.reserved >= s.maxQueued) {
        return Promise.reject(new PlinthError('PLINTH_ERR_EVENT_QUEUE_FULL', `subscriber ${s.name} has ${s.queued + s.reserved} events waiting (events.maxQueuedPerSubscriber = ${s.maxQueued}): "${event.topic}" was not published`, {
          ...(event.source && event.source !== 'host' ? { extension: event.source } : {}),
          hint: `slow down, or raise events.maxQueuedPerSubscriber; see why ${s.name} is slow`,
        }));
      }
    }
    if (!this.#store) {
      // Nothing to commit: an in-memory bus delivers at once.
      this.counters.published++;
      for (const s of subscribers) this.#enqueue(s, { seq: undefined, event, attempts: [], redelivered: false });
      return Promise.resolve(event);
    }
    // Every subscriber, in-memory listeners included, gets the event once it is committed: nothing observes an
    // event that a crash could still take back. Reserved places keep the queue bound exact meanwhile.
    for (const s of subscribers) s.reserved++;
    return new Promise<PlinthEvent>((resolve, reject) => {
      this.#batch.push({ event, payloadJson, subscribers, resolve, reject });
      this.#scheduleFlush();
    });
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Group commit: everything published in this turn of the event loop goes into one transaction — shared with
    // the store's other writers of the turn (the run journal) when the store offers that.
    const store = this.#store;
    if (store?.groupCommit) {
      let taken: { batch: PendingPublish[]; acks: Array<{ subscriber: string; seq: number }> } | undefined;
      let seqs: number[] = [];
      store.groupCommit({
        write: () => {
          taken = this.#take();
          seqs = this.#write(taken.batch, taken.acks);
        },
        done: (err) => {
          if (!taken) taken = this.#take(); // the transaction never began (a closed store): fail what is waiting
          this.#written(taken.batch, taken.acks, err === undefined ? { seqs } : { err });
        },
      });
      return;
    }
    setImmediate(() => this.#flush());
  }

  /** What the next commit writes: the events published and the acknowledgements recorded since the last one. */
  #take(): { batch: PendingPublish[]; acks: Array<{ subscriber: string; seq: number }> } {
    this.#flushScheduled = false;
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length === 0 || !this.#store) return { batch, acks: [] };
    const acks = this.#acks;
    this.#acks = [];
    return { batch, acks };
  }

  #write(batch: PendingPublish[], acks: Array<{ subscriber: string; seq: number }>): number[] {
    if (batch.length === 0 || !this.#store) return [];
    // Acknowledgements and new events in one transaction: one commit per turn of the event loop.
    return this.#store.appendEvents(batch.map((b) => ({ event: b.event, payloadJson: b.payloadJson, subscribers: durableNames(b.subscribers) })), acks);
  }

  /** After the commit: the events go to their subscribers and the publishers hear; or every publisher hears why not. */
  #written(batch: PendingPublish[], acks: Array<{ subscriber: string; seq: number }>, outcome: { seqs: number[] } | { err: unknown }): void {
    if (batch.length === 0 || !this.#store) {
      this.#flushAcks();
      return;
    }
    if ('err' in outcome) {
      const err = outcome.err;
      this.#acks.push(...acks);
      for (const b of batch) {
        for (const s of b.subscribers) s.reserved--;
        b.reject(isPlinthError(err) ? err : new PlinthError('PLINTH_ERR_STORE_FAILED', `the event store could not journal "${b.event.topic}": ${(err as Error).message}`, { ...(this.#store ? { file: this.#store.location } : {}), cause: err }));
      }
      return;
    }
    const { seqs } = outcome;
    this.counters.published += batch.length;
    batch.forEach((b, i) => {
      for (const s of b.subscribers) {
        s.reserved--;
        this.#enqueue(s, { seq: s.durable ? seqs[i] : undefined, event: b.event, attempts: [], redelivered: false });
      }
      b.resolve(b.event);
    });
  }

  #flush(): void {
    const { batch, acks } = this.#take();
    let seqs: number[];
    try {
      seqs = this.#write(batch, acks);
    } catch (err) {
      this.#written(batch, acks, { err });
      return;
    }
    this.#written(batch, acks, { seqs });
  }

  #flushAcks(): void {
    if (this.#acks.length === 0 || !this.#store) return;
    const acks = this.#acks;
    this.#acks = [];
    try {
      this.#store.acknowledge(acks);
    } catch (err) {
      // Not lost: the deliveries stay pending and come again after a restart (at-least-once).
      this.#onError(`recording ${acks.length} acknowledgement(s) failed: ${(err as Error).message}`, { code: 'PLINTH_ERR_STORE_FAILED' });
    }
  }

  #enqueue(s: Subscriber, d: Delivery): void {
    if (s.closed) return;
    let q = s.queues.get(d.event.topic);
    if (!q) {
      s.queues.set(d.event.topic, (q = []));
      s.ready.push(d.event.topic);
    }
    q.push(d);
    s.queued++;
    this.#pump(s);
  }

  #pump(s: Subscriber): void {
    // Re-entered from a handler that settled synchronously: the loop below goes on, no recursion.
    if (s.pumping) return;
    s.pumping = true;
    try {
      while (!s.closed && !this.#closed && s.inFlight < s.maxInFlight && s.ready.length > 0) {
        const topic = s.ready.shift()!;
        const head = s.queues.get(topic)?.[0];
        if (!head) continue;
        s.inFlight++;
        this.#attempt(s, topic, head);
      }
    } finally {
      s.pumping = false;
    }
  }

  /**
   * Calls the handler; a handler that returns no promise settles at once (no microtask, no timer per event). A
   * promise is raced against the subscriber's delivery timeout: whichever comes first settles the attempt, and the
   * other is ignored (a late return after a timeout does not acknowledge what is being retried).
   */
  #attempt(s: Subscriber, topic: string, d: Delivery): void {
    const attempt = d.attempts.length + 1;
    const startedAt = new Date(this.#clock.now()).toISOString();
    let result: void | Promise<void>;
    try {
      result = s.handler({ ...d.event, attempt, redelivered: d.redelivered || attempt > 1 });
    } catch (err) {
      this.#settle(s, topic, d, attempt, startedAt, err);
      return;
    }
    if (result === undefined || typeof (result as { then?: unknown }).then !== 'function') {
      this.#settle(s, topic, d, attempt, startedAt, NO_ERROR);
      return;
    }
    let settled = false;
    const timer = this.#clock.setTimeout(() => {
      s.timers.delete(timer);
      if (settled) return;
      settled = true;
      this.#settle(s, topic, d, attempt, startedAt, new PlinthError('PLINTH_ERR_EVENT_DELIVERY_TIMEOUT', `subscriber ${s.name}: its handler did not return within ${s.deliveryTimeoutMs} ms for "${d.event.topic}" (events.deliveryTimeout), counted as a failed attempt`, {
        hint: 'make the handler return (or fail) sooner, or raise events.deliveryTimeout',
      }));
    }, s.deliveryTimeoutMs);
    s.timers.add(timer);
    const finish = (err: unknown) => {
      if (settled) return;
      settled = true;
      s.timers.delete(timer);
      this.#clock.clearTimeout(timer);
      this.#settle(s, topic, d, attempt, startedAt, err);
    };
    result.then(() => finish(NO_ERROR), finish);
  }

  #settle(s: Subscriber, topic: string, d: Delivery, attempt: number, startedAt: string, err: unknown): void {
    s.inFlight--;
    if (err !== NO_ERROR) {
      this.#failed(s, topic, d, { attempt, startedAt, failedAt: new Date(this.#clock.now()).toISOString(), error: errorRecord(err) });
      return;
    }
    this.counters.delivered++;
    if (s.durable && d.seq !== undefined) {
      this.#acks.push({ subscriber: s.name, seq: d.seq });
      this.#scheduleFlush();
    }
    this.#done(s, topic);
  }

  #failed(s: Subscriber, topic: string, d: Delivery, record: AttemptRecord): void {
    d.attempts.push(record);
    if (s.closed) return;
    if (d.attempts.length >= s.retry.maxAttempts) {
      try {
        const letter = this.#letters.deadLetter(s.name, s.durable ? d.seq : undefined, d.event, d.attempts, new Date(this.#clock.now()), this.#o.deadLetterTtlMs);
        this.counters.deadLettered++;
        this.#onDeadLetter?.(letter);
      } catch (err) {
        this.#onError(`dead-lettering event ${d.event.id} for ${s.name} failed: ${(err as Error).message}`, { code: 'PLINTH_ERR_STORE_FAILED' });
      }
      this.#done(s, topic);
      return;
    }
    if (s.durable && d.seq !== undefined && this.#store) {
      try {
        this.#store.recordFailure(s.name, d.seq, record);
      } catch (err) {
        this.#onError(`recording a failed attempt for ${s.name} failed: ${(err as Error).message}`, { code: 'PLINTH_ERR_STORE_FAILED' });
      }
    }
    this.counters.retried++;
    // The topic stays blocked while it waits (order), but frees its in-flight slot for other topics.
    const timer = this.#clock.setTimeout(() => {
      s.timers.delete(timer);
      if (s.closed || this.#closed) return;
      s.ready.unshift(topic);
      this.#pump(s);
    }, retryDelay(d.attempts.length, s.retry, this.#random));
    s.timers.add(timer);
    this.#pump(s);
  }

  #done(s: Subscriber, topic: string): void {
    const q = s.queues.get(topic);
    q?.shift();
    s.queued--;
    if (q && q.length > 0) s.ready.push(topic);
    else s.queues.delete(topic);
    this.#pump(s);
    if (this.#idleWaiters.length > 0 && this.#isIdle()) for (const w of this.#idleWaiters.splice(0)) w();
  }

  subscribe(patterns: string | readonly string[], handler: EventHandler, options: SubscribeOptions = {}): Unsubscribe {
    const list = typeof patterns === 'string' ? [patterns] : [...patterns];
    for (const p of list) if (!isValidPattern(p)) throw new PlinthError('PLINTH_ERR_EVENT_TOPIC_INVALID', `not a valid topic pattern: ${JSON.stringify(p)}`, { hint: 'words, `*` (one word) and `#` (zero or more), separated by dots' });
    const name = options.name ?? `listener:${randomUUID()}`;
    if (this.#subscribers.has(name)) throw new PlinthError('PLINTH_ERR_USAGE', `a subscriber named ${name} is already subscribed`);
    const durable = this.#store !== undefined && options.name !== undefined && options.durable !== false;
    const s = new Subscriber(name, list, handler, durable, { ...this.#o.retry, ...options.retry }, options.maxInFlight ?? this.#o.maxInFlightPerSubscriber, options.maxQueued ?? this.#o.maxQueuedPerSubscriber, options.deliveryTimeoutMs ?? this.#o.deliveryTimeoutMs);
    this.#subscribers.set(name, s);
    for (const p of list) this.#matcher.add(p, s);
    if (durable && this.#store) {
      // Acknowledgements of an earlier incarnation first, so they are not delivered again.
      this.#flushAcks();
      this.#store.rememberSubscription({ subscriber: name, patterns: list });
      for (const p of this.#store.pending(name)) this.#enqueue(s, { seq: p.seq, event: p.event, attempts: p.attempts, redelivered: true });
    }
    return () => {
      if (s.closed) return;
      s.closed = true;
      for (const t of s.timers) this.#clock.clearTimeout(t);
      s.timers.clear();
      for (const p of list) this.#matcher.remove(p, s);
      if (this.#subscribers.get(name) === s) this.#subscribers.delete(name);
      if (this.#idleWaiters.length > 0 && this.#isIdle()) for (const w of this.#idleWaiters.splice(0)) w();
    };
  }

  queued(subscriber: string): number {
    const s = this.#subscribers.get(subscriber);
    return s ? s.queued + s.reserved : 0;
  }

  #isIdle(): boolean {
    return this.#batch.length === 0 && [...this.#subscribers.values()].every((s) => s.queued === 0 && s.reserved === 0);
  }

  /** Resolves once every queue is empty, with the acknowledgements committed. */
  idle(timeoutMs = 10_000): Promise<void> {
    if (this.#isIdle()) {
      this.#flushAcks();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the bus still had events queued after ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        this.#flushAcks();
        resolve();
      });
    });
  }

  #query(filter: DeadLetterQuery = {}): DeadLetterFilter {
    const { topic, ...rest } = filter;
    if (topic !== undefined && !isValidPattern(topic)) throw new PlinthError('PLINTH_ERR_EVENT_TOPIC_INVALID', `not a valid topic pattern: ${JSON.stringify(topic)}`);
    return topic !== undefined ? { ...rest, topicMatches: (t) => matchTopic(topic, t) } : rest;
  }

  listDeadLetters(filter: DeadLetterQuery = {}): DeadLetter[] {
    this.expireDeadLetters();
    return this.#letters.listDeadLetters(this.#query(filter));
  }

  getDeadLetter(id: number): DeadLetter | undefined {
    this.expireDeadLetters();
    return this.#letters.getDeadLetter(id);
  }

  replayDeadLetter(id: number, to: 'original' | 'all' = 'original'): { replayedTo: string[] } {
    const letter = this.getDeadLetter(id);
    if (!letter) throw new PlinthError('PLINTH_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter ${id}`, { hint: 'list them with `plinth dlq ls`' });
    let targets: Subscriber[];
    let names: string[];
    if (to === 'all') {
      targets = [...new Set(this.#matcher.match(letter.event.topic))];
      names = targets.map((s) => s.name);
    } else {
      const s = this.#subscribers.get(letter.subscriber);
      targets = s ? [s] : [];
      names = [letter.subscriber];
    }
    for (const s of targets) {
      if (s.queued + s.reserved >= s.maxQueued) throw new PlinthError('PLINTH_ERR_EVENT_QUEUE_FULL', `subscriber ${s.name} has ${s.queued} events waiting (events.maxQueuedPerSubscriber = ${s.maxQueued}): dead letter ${id} was not replayed`, { hint: 'replay it later' });
    }
    // Durable targets get pending rows (an absent original gets it when it subscribes again).
    const durableNames = names.filter((n) => this.#subscribers.get(n)?.durable ?? this.#store !== undefined);
    const replayed = this.#letters.replayDeadLetter(id, this.#store ? durableNames : []);
    if (!replayed) throw new PlinthError('PLINTH_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter ${id}`);
    for (const s of targets) this.#enqueue(s, { seq: this.#store ? replayed.seq : undefined, event: replayed.event, attempts: [], redelivered: true });
    return { replayedTo: names };
  }

  purgeDeadLetters(filter: DeadLetterQuery = {}): number {
    return this.#letters.purgeDeadLetters(this.#query(filter));
  }

  expireDeadLetters(): number {
    return this.#letters.expireDeadLetters(new Date(this.#clock.now()));
  }

  #scheduleHousekeeping(): void {
    const every = Math.min(this.#o.deadLetterTtlMs, 60_000);
    this.#housekeeping = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      try {
        this.expireDeadLetters();
        this.#store?.compact(new Date(this.#clock.now() - this.#o.journalRetentionMs));
      } catch (err) {
        this.#onError(`store housekeeping failed: ${(err as Error).message}`, { code: 'PLINTH_ERR_STORE_FAILED' });
      }
      this.#scheduleHousekeeping();
    }, every);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    // What was published in this turn is committed before the bus closes.
    if (this.#batch.length > 0) this.#flush();
    this.#flushAcks();
    this.#closed = true;
    this.#clock.clearTimeout(this.#housekeeping);
    for (const s of this.#subscribers.values()) {
      for (const t of s.timers) this.#clock.clearTimeout(t);
      s.timers.clear();
    }
    if (!this.#store) this.#letters.close();
    return Promise.resolve();
  }
}

function durableNames(subscribers: readonly Subscriber[]): string[] {
  const names: string[] = [];
  for (const s of subscribers) if (s.durable) names.push(s.name);
  return names;
}

const MAX_HEADERS = 32;
const MAX_HEADER_BYTES = 1024;

function checkHeaders(headers: EventHeaders): EventHeaders {
  const out: EventHeaders = Object.create(null) as EventHeaders;
  const entries = Object.entries(headers).filter(([, v]) => v !== undefined);
  if (entries.length > MAX_HEADERS) throw new PlinthError('PLINTH_ERR_EVENT_HEADERS_INVALID', `an event may carry at most ${MAX_HEADERS} headers, not ${entries.length}`);
  for (const [k, v] of entries) {
    if (typeof v !== 'string' || Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_HEADER_BYTES) {
      throw new PlinthError('PLINTH_ERR_EVENT_HEADERS_INVALID', `event header ${JSON.stringify(k.slice(0, 64))} must be a string of at most ${MAX_HEADER_BYTES} bytes with its name`);
    }
    out[k] = v;
  }
  return { ...out };
}
