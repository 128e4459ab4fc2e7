// The store's public shape (issue 10): what the event bus, the CLI and the kv quota code need, behind one
// interface so a second implementation (Redis, a later issue) can fill it without touching its callers.
import type { Json, PlinthEvent } from '../sdk/index.ts';

/** One failed delivery attempt, as kept with a pending delivery and in a dead letter. */
export interface AttemptRecord {
  attempt: number;
  /** ISO 8601 times the attempt started and failed. */
  startedAt: string;
  failedAt: string;
  error: { code?: string; message: string };
}

/** An event a durable subscriber has not acknowledged yet. */
export interface PendingDelivery {
  seq: number;
  event: PlinthEvent;
  /** Failed attempts so far (persisted, so a restart keeps counting). */
  attempts: AttemptRecord[];
}

export interface DeadLetter {
  id: number;
  subscriber: string;
  event: PlinthEvent;
  attempts: AttemptRecord[];
  /** When it was dead-lettered and when it expires (`events.deadLetterTtl`), ISO 8601. */
  deadAt: string;
  expiresAt: string;
}

export interface DeadLetterFilter {
  /** Keeps dead letters whose event topic this accepts (the bus passes its AMQP pattern match). */
  topicMatches?: (topic: string) => boolean;
  subscriber?: string;
  /** Dead-lettered at or after / before these ISO 8601 times. */
  since?: string;
  until?: string;
  ids?: number[];
  limit?: number;
}

/** A durable subscription as last seen: what "all current subscribers" means when no host runs. */
export interface KnownSubscription {
  subscriber: string;
  patterns: string[];
}

/** The persisted side of one extension's kv (src/policy KvStore keeps the quotas and the in-memory view). */
export interface KvBacking {
  entries(): Array<[string, string]>;
  set(key: string, json: string): void;
  delete(key: string): void;
}

/**
 * A writer in a shared group commit (Store.groupCommit): every writer that joins within one turn of the event loop
 * (the bus's events, the run journal's stage rows) shares one transaction, so the turn costs one commit, not one
 * per writer.
 */
export interface CommitParticipant {
  /** Its writes, inside the shared transaction (the store's methods called here join it). A throw undoes its writes only. */
  write(): void;
  /** Called once the transaction has ended: with `err` when its writes or the commit failed (then none of them is in the store). */
  done(err?: unknown): void;
}

export interface Store {
  /** The file (or other address) this store lives in: for messages. */
  readonly location: string;
  /**
   * Joins the next group commit (at the end of this turn of the event loop). Optional: a store without it leaves
   * each writer to commit on its own.
   */
  groupCommit?(participant: CommitParticipant): void;
  /**
   * Journals events and the pending deliveries of each, and records `acks`, in one transaction (a group commit):
   * when it returns, every one is in the store. Returns each event's sequence number. `payloadJson`, when given,
   * is the payload already serialised (the size check did it).
   */
  appendEvents(batch: ReadonlyArray<{ event: PlinthEvent; subscribers: readonly string[]; payloadJson?: string }>, acks?: ReadonlyArray<{ subscriber: string; seq: number }>): number[];
  /** Records acknowledgements: the subscriber's delivery of `seq` is done. One transaction. */
  acknowledge(acks: ReadonlyArray<{ subscriber: string; seq: number }>): void;
  /** Records a failed attempt with the pending delivery (committed before the retry is scheduled). */
  recordFailure(subscriber: string, seq: number, attempt: AttemptRecord): void;
  /** Pending deliveries of a subscriber, in publish order. */
  pending(subscriber: string): PendingDelivery[];
  /** Every subscriber with a pending delivery, and how many. */
  pendingCounts(): Map<string, number>;
  /** Moves a delivery to the dead letters, removing its pending row if `seq` has one (one transaction). */
  deadLetter(subscriber: string, seq: number | undefined, event: PlinthEvent, attempts: AttemptRecord[], deadAt: Date, ttlMs: number): DeadLetter;
  listDeadLetters(filter?: DeadLetterFilter): DeadLetter[];
  getDeadLetter(id: number): DeadLetter | undefined;
  /** Removes dead letters; returns how many. */
  purgeDeadLetters(filter?: DeadLetterFilter): number;
  /** Removes dead letters past their expiry; returns how many. */
  expireDeadLetters(now: Date): number;
  /**
   * Replays a dead letter: its event goes back to `subscribers` as new pending deliveries and the dead letter is
   * removed, in one transaction. Returns the pending deliveries' sequence number.
   */
  replayDeadLetter(id: number, subscribers: readonly string[]): { seq: number; event: PlinthEvent } | undefined;
  /** Remembers a durable subscription's patterns (for replay to all subscribers while no host runs). */
  rememberSubscription(subscription: KnownSubscription): void;
  knownSubscriptions(): KnownSubscription[];
  /** Drops journalled events that every subscriber has acknowledged and that are older than `before`. */
  compact(before: Date): number;
  /** The event with this id, while it is journalled. */
  getEvent(id: string): PlinthEvent | undefined;
  kv(extension: string): KvBacking;
  /** The pipeline run journal (issue 11): runs and their stages, each write one transaction. */
  runs: RunJournalBacking;
  close(): void;
}

export type { Json };

/** A pipeline run as journaled: the engine's record (JSON) plus the columns runs are listed and found by. */
/** A run row to save: without `definition`, an update of the row already there. */
export type RunRowChange = Omit<RunRow, 'definition'> & { definition?: string };

export interface RunRow {
  id: string;
  pipeline: string;
  state: string;
  createdAt: string;
  /** The run record without its stages, as JSON. */
  record: string;
  /** The normalised pipeline definition the run executes, as JSON (a resume runs what was started, not the file as it is now). */
  definition: string;
  /** Which process runs it (`pid@hostname`), so another process can tell a live run from an interrupted one. */
  owner: string;
}

export interface StageRow {
  runId: string;
  stageId: string;
  /** The stage's position in the definition (listing order). */
  position: number;
  state: string;
  /** The stage record, as JSON. */
  record: string;
}

/** Where the pipeline engine journals runs (src/pipeline/engine/journal.ts reads and writes through this). */
export interface RunJournalBacking {
  /** Inserts or replaces the run row and the given stage rows in one transaction. */
  /**
   * One commit: the run row (when given) and the stage rows. A run row without `definition` updates the row
   * written before (state, record, owner), so a large definition is written once, not at every run change.
   */
  save(run: RunRowChange | undefined, stages: readonly StageRow[]): void;
  /** The store's group commit (Store.groupCommit), when it has one: the journal's queued rows share it with the bus. */
  groupCommit?(participant: CommitParticipant): void;
  get(id: string): { run: RunRow; stages: StageRow[] } | undefined;
  /** Newest first. */
  list(filter?: { pipeline?: string; states?: readonly string[]; limit?: number }): RunRow[];
}
