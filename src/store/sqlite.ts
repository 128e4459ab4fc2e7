// The embedded store: one SQLite file in the host's data dir through Node's built-in `node:sqlite` (no native
// build). WAL journal with synchronous=NORMAL: a commit survives the process being killed (SIGKILL, crash); the
// last commits before a power loss or kernel panic may be lost (README "Durability"). Numbered migrations run at
// open; a file from a newer Plinth, a file that is not a Plinth store, and a corrupt file are refused with the
// path named, and never written to.
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import { PlinthError } from '../errors.ts';
import type { PlinthEvent } from '../sdk/index.ts';
import type { AttemptRecord, CommitParticipant, DeadLetter, DeadLetterFilter, KnownSubscription, KvBacking, PendingDelivery, RunJournalBacking, RunRow, RunRowChange, StageRow, Store } from './types.ts';

/** `PRAGMA application_id` of a Plinth store ("Plnt"): how a Plinth file is told from any other SQLite file. */
export const APPLICATION_ID = 0x506c6e74;

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/** Migration n (1-based) brings `user_version` from n-1 to n. Append only: never edit a shipped one. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, topic TEXT NOT NULL, time TEXT NOT NULL, source TEXT, payload TEXT NOT NULL, headers TEXT);
   CREATE INDEX events_id ON events(id);
   CREATE TABLE deliveries (subscriber TEXT NOT NULL, seq INTEGER NOT NULL, attempts TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (subscriber, seq)) WITHOUT ROWID;
   CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, subscriber TEXT NOT NULL, topic TEXT NOT NULL, event TEXT NOT NULL, attempts TEXT NOT NULL, dead_at TEXT NOT NULL, expires_at TEXT NOT NULL);
   CREATE INDEX dead_letters_expiry ON dead_letters(expires_at);
   CREATE TABLE subscriptions (subscriber TEXT PRIMARY KEY, patterns TEXT NOT NULL, seen_at TEXT NOT NULL);
   CREATE TABLE kv (extension TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (extension, key)) WITHOUT ROWID;`,
  // 2 (issue 11): the pipeline run journal. A run row carries the definition it executes; a stage row its record.
  `CREATE TABLE pipeline_runs (id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL, created_at TEXT NOT NULL, record TEXT NOT NULL, definition TEXT NOT NULL, owner TEXT NOT NULL);
   CREATE INDEX pipeline_runs_created ON pipeline_runs(created_at);
   CREATE INDEX pipeline_runs_state ON pipeline_runs(state);
   CREATE TABLE pipeline_stages (run_id TEXT NOT NULL, stage_id TEXT NOT NULL, position INTEGER NOT NULL, state TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (run_id, stage_id)) WITHOUT ROWID;`,
];

export const STORE_VERSION = MIGRATIONS.length;

function invalid(file: string, why: string, cause?: unknown): PlinthError {
  return new PlinthError('PLINTH_ERR_STORE_INVALID', `${file} ${why}; it was left as it is`, {
    file,
    ...(cause ? { cause } : {}),
    hint: 'move it away (or restore a backup) and start again, or point dataDir elsewhere',
  });
}

/** Reads the first bytes without SQLite: a file that is not a database is refused before anything opens it. */
function checkHeader(file: string): boolean {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return false; // does not exist: a new store
  }
  if (size === 0) return false;
  const head = Buffer.alloc(SQLITE_HEADER.length);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (!head.equals(SQLITE_HEADER)) throw invalid(file, 'is not a Plinth store (not an SQLite database)');
  return true;
}

interface Row {
  [key: string]: unknown;
}

function toEvent(row: Row): PlinthEvent {
  const event: PlinthEvent = { id: row.id as string, topic: row.topic as string, time: row.time as string, payload: JSON.parse(row.payload as string) as PlinthEvent['payload'] };
  if (row.source !== null && row.source !== undefined) event.source = row.source as string;
  if (row.headers !== null && row.headers !== undefined) event.headers = JSON.parse(row.headers as string) as NonNullable<PlinthEvent['headers']>;
  return event;
}

function toDeadLetter(row: Row): DeadLetter {
  return {
    id: Number(row.id),
    subscriber: row.subscriber as string,
    event: JSON.parse(row.event as string) as PlinthEvent,
    attempts: JSON.parse(row.attempts as string) as AttemptRecord[],
    deadAt: row.dead_at as string,
    expiresAt: row.expires_at as string,
  };
}

function toRunRow(row: Row): RunRow {
  return { id: row.id as string, pipeline: row.pipeline as string, state: row.state as string, createdAt: row.created_at as string, record: row.record as string, definition: row.definition as string, owner: row.owner as string };
}

function toStageRow(row: Row): StageRow {
  return { runId: row.run_id as string, stageId: row.stage_id as string, position: Number(row.position), state: row.state as string, record: row.record as string };
}

export class SqliteStore implements Store {
  readonly location: string;
  readonly #db: DatabaseSync;
  readonly #s: Record<string, StatementSync>;
  #closed = false;
  /** Writers waiting for the next group commit, and whether one is under way (store calls then join it). */
  #group: CommitParticipant[] = [];
  #inGroup = false;

  /** Opens (or creates) the store in `file`. Throws PLINTH_ERR_STORE_INVALID / PLINTH_ERR_STORE_NEWER. */
  static open(file: string): SqliteStore {
    return new SqliteStore(file);
  }

  private constructor(file: string) {
    this.location = file;
    const existed = checkHeader(file);
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(file);
    } catch (err) {
      throw invalid(file, `cannot be opened as a store: ${(err as Error).message}`, err);
    }
    try {
      // Read-only checks first: nothing is written to a file we may refuse.
      let appId: number;
      let version: number;
      try {
        appId = Number((db.prepare('PRAGMA application_id').get() as Row).application_id);
        version = Number((db.prepare('PRAGMA user_version').get() as Row).user_version);
      } catch (err) {
        throw invalid(file, `is corrupt (${(err as Error).message})`, err);
      }
      const tables = Number((db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as Row).n);
      if (existed && appId !== APPLICATION_ID && (appId !== 0 || tables > 0 || version > 0)) throw invalid(file, 'is not a Plinth store (an SQLite database of something else)');
      if (version > STORE_VERSION) {
        throw new PlinthError('PLINTH_ERR_STORE_NEWER', `${file} was written by a newer Plinth (store version ${version}; this one knows up to ${STORE_VERSION}); it was left as it is`, {
          file,
          hint: 'run the Plinth version that wrote it, or point dataDir elsewhere',
        });
      }
      if (existed) {
        let check: string;
        try {
          check = String((db.prepare('PRAGMA quick_check').get() as Row).quick_check);
        } catch (err) {
          throw invalid(file, `is corrupt (${(err as Error).message})`, err);
        }
        if (check !== 'ok') throw invalid(file, `is corrupt (quick_check: ${check})`);
      }
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
      for (let v = version; v < STORE_VERSION; v++) {
        db.exec('BEGIN IMMEDIATE');
        try {
          db.exec(MIGRATIONS[v]!);
          db.exec(`PRAGMA user_version = ${v + 1}; PRAGMA application_id = ${APPLICATION_ID};`);
          db.exec('COMMIT');
        } catch (err) {
          db.exec('ROLLBACK');
          throw err;
        }
      }
    } catch (err) {
      db.close();
      throw err;
    }
    this.#db = db;
    const p = (sql: string) => db.prepare(sql);
    this.#s = {
      insertEvent: p('INSERT INTO events (id, topic, time, source, payload, headers) VALUES (?, ?, ?, ?, ?, ?)'),
      insertDelivery: p('INSERT OR IGNORE INTO deliveries (subscriber, seq) VALUES (?, ?)'),
      deleteDelivery: p('DELETE FROM deliveries WHERE subscriber = ? AND seq = ?'),
      getDelivery: p('SELECT attempts FROM deliveries WHERE subscriber = ? AND seq = ?'),
      setAttempts: p('UPDATE deliveries SET attempts = ? WHERE subscriber = ? AND seq = ?'),
      pending: p('SELECT d.seq AS seq, d.attempts AS attempts, e.id AS id, e.topic AS topic, e.time AS time, e.source AS source, e.payload AS payload, e.headers AS headers FROM deliveries d JOIN events e ON e.seq = d.seq WHERE d.subscriber = ? ORDER BY d.seq'),
      pendingCounts: p('SELECT subscriber, count(*) AS n FROM deliveries GROUP BY subscriber'),
      eventById: p('SELECT * FROM events WHERE id = ? ORDER BY seq DESC LIMIT 1'),
      insertDead: p('INSERT INTO dead_letters (subscriber, topic, event, attempts, dead_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id'),
      getDead: p('SELECT * FROM dead_letters WHERE id = ?'),
      deleteDead: p('DELETE FROM dead_letters WHERE id = ?'),
      expireDead: p('DELETE FROM dead_letters WHERE expires_at <= ?'),
      rememberSub: p('INSERT INTO subscriptions (subscriber, patterns, seen_at) VALUES (?, ?, ?) ON CONFLICT (subscriber) DO UPDATE SET patterns = excluded.patterns, seen_at = excluded.seen_at'),
      knownSubs: p('SELECT subscriber, patterns FROM subscriptions ORDER BY subscriber'),
      // Below the oldest pending delivery every event was acknowledged by all (no extra index on deliveries).
      compact: p('DELETE FROM events WHERE time < ? AND seq < (SELECT coalesce(min(seq), 9223372036854775807) FROM deliveries)'),
      kvEntries: p('SELECT key, value FROM kv WHERE extension = ? ORDER BY key'),
      kvSet: p('INSERT INTO kv (extension, key, value) VALUES (?, ?, ?) ON CONFLICT (extension, key) DO UPDATE SET value = excluded.value'),
      kvDelete: p('DELETE FROM kv WHERE extension = ? AND key = ?'),
      runSave: p('INSERT INTO pipeline_runs (id, pipeline, state, created_at, record, definition, owner) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record, owner = excluded.owner'),
      stageSave: p('INSERT INTO pipeline_stages (run_id, stage_id, position, state, record) VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, stage_id) DO UPDATE SET state = excluded.state, record = excluded.record'),
      runUpdate: p('UPDATE pipeline_runs SET state = ?, record = ?, owner = ? WHERE id = ?'),
      runGet: p('SELECT * FROM pipeline_runs WHERE id = ?'),
      stagesOf: p('SELECT * FROM pipeline_stages WHERE run_id = ? ORDER BY position'),
      // Prepared once: BEGIN/COMMIT run several times per turn under load, db.exec would parse them every time.
      begin: p('BEGIN IMMEDIATE'),
      commit: p('COMMIT'),
      savepoint: p('SAVEPOINT plinth_writer'),
      release: p('RELEASE plinth_writer'),
      rollbackTo: p('ROLLBACK TO plinth_writer'),
    };
    this.runs = {
      save: (run, stages) => this.#saveRun(run, stages),
      groupCommit: (participant) => this.groupCommit(participant),
      get: (id) => {
        const row = this.#s.runGet!.get(id) as Row | undefined;
        if (!row) return undefined;
        return { run: toRunRow(row), stages: (this.#s.stagesOf!.all(id) as Row[]).map(toStageRow) };
      },
      list: (filter = {}) => {
        const where: string[] = [];
        const args: Array<string | number> = [];
        if (filter.pipeline !== undefined) {
          where.push('pipeline = ?');
          args.push(filter.pipeline);
        }
        if (filter.states !== undefined) {
          if (filter.states.length === 0) return [];
          where.push(`state IN (${filter.states.map(() => '?').join(', ')})`);
          args.push(...filter.states);
        }
        const limit = filter.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(filter.limit))}` : '';
        const sql = `SELECT * FROM pipeline_runs${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, rowid DESC${limit}`;
        return (this.#db.prepare(sql).all(...args) as Row[]).map(toRunRow);
      },
    };
  }

  readonly runs: RunJournalBacking;

  #saveRun(run: RunRowChange | undefined, stages: readonly StageRow[]): void {
    const write = () => {
      if (run?.definition !== undefined) this.#s.runSave!.run(run.id, run.pipeline, run.state, run.createdAt, run.record, run.definition, run.owner);
      else if (run && Number(this.#s.runUpdate!.run(run.state, run.record, run.owner, run.id).changes) !== 1) {
        throw new PlinthError('PLINTH_ERR_STORE_FAILED', `the store ${this.location} has no row for run ${run.id} to update`, { file: this.location, hint: 'the run row was removed from under the host: start the run again' });
      }
      for (const st of stages) this.#s.stageSave!.run(st.runId, st.stageId, st.position, st.state, st.record);
    };
    // One statement is its own transaction; several share one commit.
    if ((run ? 1 : 0) + stages.length > 1) return this.#tx(write);
    if (this.#closed) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `the store ${this.location} is closed`, { file: this.location });
    write();
  }

  #tx<T>(fn: () => T): T {
    if (this.#closed) throw new PlinthError('PLINTH_ERR_SHUTDOWN', `the store ${this.location} is closed`, { file: this.location });
    // Inside a group commit: the group's transaction (and the writer's savepoint) makes this atomic.
    if (this.#inGroup) return fn();
    this.#s.begin!.run();
    try {
      const result = fn();
      this.#s.commit!.run();
      return result;
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  /**
   * Group commit shared by every writer of a turn (issue 11: the bus and the run journal each committed on their
   * own, two commits per turn where one does): the writers that joined run inside one transaction at the end of
   * the turn (setImmediate), each in a savepoint of its own so one writer's failure undoes only its writes; then,
   * after COMMIT, each hears its outcome. Nothing a writer wrote is visible to its callers before its `done`.
   */
  groupCommit(participant: CommitParticipant): void {
    this.#group.push(participant);
    if (this.#group.length === 1) setImmediate(() => this.#commitGroup());
  }

  #commitGroup(): void {
    const group = this.#group;
    this.#group = [];
    if (group.length === 0) return;
    const failed = new Map<CommitParticipant, unknown>();
    let commitError: unknown;
    if (this.#closed) commitError = new PlinthError('PLINTH_ERR_SHUTDOWN', `the store ${this.location} is closed`, { file: this.location });
    else {
      try {
        this.#s.begin!.run();
        this.#inGroup = true;
        if (group.length === 1) group[0]!.write();
        else {
          for (const p of group) {
            this.#s.savepoint!.run();
            try {
              p.write();
              this.#s.release!.run();
            } catch (err) {
              this.#s.rollbackTo!.run();
              this.#s.release!.run();
              failed.set(p, err);
            }
          }
        }
        this.#inGroup = false;
        this.#s.commit!.run();
      } catch (err) {
        this.#inGroup = false;
        commitError = err;
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      }
    }
    // Outcomes after the transaction has ended: a writer's `done` may write again (in a transaction of its own).
    let thrown: { err: unknown } | undefined;
    for (const p of group) {
      try {
        p.done(commitError ?? failed.get(p));
      } catch (err) {
        thrown ??= { err };
      }
    }
    if (thrown) throw thrown.err;
  }

  appendEvents(batch: ReadonlyArray<{ event: PlinthEvent; subscribers: readonly string[]; payloadJson?: string }>, acks: ReadonlyArray<{ subscriber: string; seq: number }> = []): number[] {
    return this.#tx(() => {
      for (const a of acks) this.#s.deleteDelivery!.run(a.subscriber, a.seq);
      return batch.map(({ event, subscribers, payloadJson }) => {
        const seq = Number(this.#s.insertEvent!.run(event.id, event.topic, event.time, event.source ?? null, payloadJson ?? JSON.stringify(event.payload), event.headers ? JSON.stringify(event.headers) : null).lastInsertRowid);
        for (const s of subscribers) this.#s.insertDelivery!.run(s, seq);
        return seq;
      });
    });
  }

  acknowledge(acks: ReadonlyArray<{ subscriber: string; seq: number }>): void {
    if (acks.length === 0) return;
    this.#tx(() => {
      for (const a of acks) this.#s.deleteDelivery!.run(a.subscriber, a.seq);
    });
  }

  recordFailure(subscriber: string, seq: number, attempt: AttemptRecord): void {
    this.#tx(() => {
      const row = this.#s.getDelivery!.get(subscriber, seq) as Row | undefined;
      if (!row) return;
      const attempts = JSON.parse(row.attempts as string) as AttemptRecord[];
      attempts.push(attempt);
      this.#s.setAttempts!.run(JSON.stringify(attempts), subscriber, seq);
    });
  }

  pending(subscriber: string): PendingDelivery[] {
    return (this.#s.pending!.all(subscriber) as Row[]).map((row) => ({ seq: Number(row.seq), event: toEvent(row), attempts: JSON.parse(row.attempts as string) as AttemptRecord[] }));
  }

  pendingCounts(): Map<string, number> {
    return new Map((this.#s.pendingCounts!.all() as Row[]).map((r) => [r.subscriber as string, Number(r.n)]));
  }

  deadLetter(subscriber: string, seq: number | undefined, event: PlinthEvent, attempts: AttemptRecord[], deadAt: Date, ttlMs: number): DeadLetter {
    return this.#tx(() => {
      if (seq !== undefined) this.#s.deleteDelivery!.run(subscriber, seq);
      const expiresAt = new Date(deadAt.getTime() + ttlMs).toISOString();
      const { id } = this.#s.insertDead!.get(subscriber, event.topic, JSON.stringify(event), JSON.stringify(attempts), deadAt.toISOString(), expiresAt) as Row;
      return { id: Number(id), subscriber, event, attempts, deadAt: deadAt.toISOString(), expiresAt };
    });
  }

  #selectDead(filter: DeadLetterFilter): DeadLetter[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    const add = (clause: string, arg: string) => {
      where.push(clause);
      args.push(arg);
    };
    if (filter.subscriber !== undefined) add('subscriber = ?', filter.subscriber);
    if (filter.since !== undefined) add('dead_at >= ?', filter.since);
    if (filter.until !== undefined) add('dead_at < ?', filter.until);
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return [];
      where.push(`id IN (${filter.ids.map(() => '?').join(', ')})`);
      args.push(...filter.ids);
    }
    const sql = `SELECT * FROM dead_letters${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id`;
    let rows = (this.#db.prepare(sql).all(...args) as Row[]).map(toDeadLetter);
    // Topic patterns are matched by the caller's function (the bus's AMQP rules): SQL LIKE has other semantics.
    if (filter.topicMatches) rows = rows.filter((d) => filter.topicMatches!(d.event.topic));
    return filter.limit !== undefined ? rows.slice(0, filter.limit) : rows;
  }

  listDeadLetters(filter: DeadLetterFilter = {}): DeadLetter[] {
    return this.#selectDead(filter);
  }

  getDeadLetter(id: number): DeadLetter | undefined {
    const row = this.#s.getDead!.get(id) as Row | undefined;
    return row ? toDeadLetter(row) : undefined;
  }

  purgeDeadLetters(filter: DeadLetterFilter = {}): number {
    return this.#tx(() => {
      const found = this.#selectDead(filter);
      for (const d of found) this.#s.deleteDead!.run(d.id);
      return found.length;
    });
  }

  expireDeadLetters(now: Date): number {
    return this.#tx(() => Number(this.#s.expireDead!.run(now.toISOString()).changes));
  }

  replayDeadLetter(id: number, subscribers: readonly string[]): { seq: number; event: PlinthEvent } | undefined {
    return this.#tx(() => {
      const row = this.#s.getDead!.get(id) as Row | undefined;
      if (!row) return undefined;
      const event = JSON.parse(row.event as string) as PlinthEvent;
      const seq = Number(this.#s.insertEvent!.run(event.id, event.topic, event.time, event.source ?? null, JSON.stringify(event.payload), event.headers ? JSON.stringify(event.headers) : null).lastInsertRowid);
      for (const s of subscribers) this.#s.insertDelivery!.run(s, seq);
      this.#s.deleteDead!.run(id);
      return { seq, event };
    });
  }

  rememberSubscription(subscription: KnownSubscription): void {
    this.#tx(() => void this.#s.rememberSub!.run(subscription.subscriber, JSON.stringify(subscription.patterns), new Date().toISOString()));
  }

  knownSubscriptions(): KnownSubscription[] {
    return (this.#s.knownSubs!.all() as Row[]).map((r) => ({ subscriber: r.subscriber as string, patterns: JSON.parse(r.patterns as string) as string[] }));
  }

  compact(before: Date): number {
    return this.#tx(() => Number(this.#s.compact!.run(before.toISOString()).changes));
  }

  getEvent(id: string): PlinthEvent | undefined {
    const row = this.#s.eventById!.get(id) as Row | undefined;
    return row ? toEvent(row) : undefined;
  }

  kv(extension: string): KvBacking {
    return {
      entries: () => (this.#s.kvEntries!.all(extension) as Row[]).map((r) => [r.key as string, r.value as string]),
      // One statement is one transaction: committed before ctx.kv.set resolves.
      set: (key, json) => void this.#s.kvSet!.run(extension, key, json),
      delete: (key) => void this.#s.kvDelete!.run(extension, key),
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}
