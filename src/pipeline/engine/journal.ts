// The run journal (issue 11): runs and stage records in the store, each change committed before the engine takes
// the step that depends on it (a stage's output before its dependents start, a stage's `running` before its call).
// A run row carries the definition it executes and which process owns it, so a resume (in this process or a later
// one) runs what was started, and a run whose owner is gone is told from a live one.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { RunJournalBacking, RunRowChange, StageRow } from '../../store/index.ts';
import type { PipelineDefinition, RunRecord, RunState, StageRecord } from '../types.ts';

/**
 * When a process started, in clock ticks since boot (`/proc/<pid>/stat` field 22), where the system has /proc: with
 * the pid it names one process for good, even after the pid is reused. undefined when there is no such process
 * or no /proc.
 */
export function processStartTicks(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Journals a run's `owner`: `<pid>.<start ticks>@<host>` (`<pid>@<host>` where there is no /proc). */
export function ownerOf(pid: number | 'self', host = hostname()): string {
  const ticks = processStartTicks(pid);
  return `${pid === 'self' ? process.pid : pid}${ticks ? `.${ticks}` : ''}@${host}`;
}

/** This process, as journaled in a run's `owner`. */
export const SELF_OWNER = ownerOf('self');

export const TERMINAL_RUN_STATES: ReadonlySet<RunState> = new Set(['succeeded', 'failed', 'cancelled', 'compensated']);

/** Runs an engine of this process is executing now (several hosts may share one process, as tests do). */
export const LIVE_RUNS = new Set<string>();

/**
 * Is the process that owns a run still running it? Only answerable on the same machine: another machine's run
 * counts as live. The owner's start time tells its pid from the same pid reused by a later process (without /proc,
 * or in an owner journaled before it was recorded, a reused pid makes a dead run look live).
 */
export function ownerAlive(owner: string, runId: string): boolean {
  const at = owner.indexOf('@');
  if (owner.slice(at + 1) !== hostname()) return true;
  const [pidText = '', ticks] = owner.slice(0, at).split('.');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid && (ticks === undefined || ticks === processStartTicks('self'))) return LIVE_RUNS.has(runId);
  if (ticks !== undefined) {
    const now = processStartTicks(pid);
    if (now !== undefined) return now === ticks;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface JournaledRun {
  record: RunRecord;
  definition: PipelineDefinition;
  owner: string;
}

export class RunJournal {
  readonly #backing: () => RunJournalBacking;
  readonly #positions = new Map<string, Map<string, number>>();
  /** Runs whose row (with its definition) this journal has written: later saves update the row, not the definition. */
  readonly #written = new Set<string>();
  /**
   * Group commit: stage changes queued within one turn of the event loop go in one transaction (a commit costs
   * ~40 µs on these machines, more than the engine's own work per stage). The engine awaits `committed()` before
   * any step that depends on a change, so the journal is never behind what it acts on.
   */
  #queued = new Map<string, { record: RunRecord; stages: Map<string, StageRecord> }>();
  #flush: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | undefined;

  constructor(backing: () => RunJournalBacking) {
    this.#backing = backing;
  }

  #position(runId: string, stageId: string, record?: RunRecord): number {
    let map = this.#positions.get(runId);
    if (!map && record) {
      map = new Map(record.stages.map((s, i) => [s.id, i]));
      this.#positions.set(runId, map);
    }
    return map?.get(stageId) ?? 0;
  }

  #stageRow(runId: string, stage: StageRecord, record?: RunRecord): StageRow {
    return { runId, stageId: stage.id, position: this.#position(runId, stage.id, record), state: stage.state, record: JSON.stringify(stage) };
  }

  /** The run row, those stage rows and every queued one, in one commit now. */
  saveRun(record: RunRecord, definition: string, owner: string, stages: readonly StageRecord[] = []): void {
    const { stages: _omitted, ...rest } = record;
    void _omitted;
    this.#position(record.id, '', record);
    this.queue(record, stages);
    const first = !this.#written.has(record.id);
    const row: RunRowChange = { id: record.id, pipeline: record.pipeline, state: record.state, createdAt: record.createdAt, record: JSON.stringify(rest), owner, ...(first ? { definition } : {}) };
    this.flushNow(row);
    this.#written.add(record.id);
  }

  /** Stage changes for the next group commit (serialised then: the latest state of each stage is written). */
  queue(record: RunRecord, stages: readonly StageRecord[]): void {
    if (stages.length === 0) return;
    let entry = this.#queued.get(record.id);
    if (!entry) this.#queued.set(record.id, (entry = { record, stages: new Map() }));
    for (const s of stages) entry.stages.set(s.id, s);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flush) return;
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Callers that queue but never wait must not see an unhandled rejection; waiters get it through committed().
    promise.catch(() => undefined);
    const flush = (this.#flush = { promise, resolve, reject });
    const backing = this.#backing();
    if (backing.groupCommit) {
      // The store's group commit: these rows share the turn's one transaction with the bus's events. The rows are
      // taken when the transaction runs (everything queued by then), and committed() resolves after its COMMIT.
      let taken = false;
      backing.groupCommit({
        write: () => {
          // A synchronous flushNow() (saveRun) in between already wrote them and settled `flush`.
          if (this.#flush !== flush) return;
          this.#flush = undefined;
          taken = true;
          const rows = this.#takeRows();
          if (rows.length > 0) backing.save(undefined, rows);
        },
        done: (err) => {
          if (!taken && this.#flush === flush) {
            // The transaction never ran (a closed store): what is queued was not written.
            this.#flush = undefined;
            this.#queued.clear();
          } else if (!taken) return;
          if (err === undefined) flush.resolve();
          else flush.reject(err);
        },
      });
      return;
    }
    setImmediate(() => {
      try {
        this.flushNow();
      } catch {
        // flushNow rejected the waiters
      }
    });
  }

  #takeRows(): StageRow[] {
    const rows: StageRow[] = [];
    for (const { record, stages } of this.#queued.values()) for (const s of stages.values()) rows.push(this.#stageRow(record.id, s, record));
    this.#queued.clear();
    return rows;
  }

  /** Resolves once everything queued so far is committed (rejects if the commit failed). */
  committed(): Promise<void> {
    if (!this.#flush) return Promise.resolve();
    return this.#flush.promise;
  }

  /** Commits what is queued (and `run`, when given) in one transaction, now. */
  flushNow(run?: RunRowChange): void {
    const flush = this.#flush;
    this.#flush = undefined;
    const rows = this.#takeRows();
    try {
      if (run || rows.length > 0) this.#backing().save(run, rows);
    } catch (err) {
      flush?.reject(err);
      throw err;
    }
    flush?.resolve();
  }

  load(runId: string): JournaledRun | undefined {
    const found = this.#backing().get(runId);
    if (!found) return undefined;
    const rest = JSON.parse(found.run.record) as Omit<RunRecord, 'stages'>;
    const definition = JSON.parse(found.run.definition) as PipelineDefinition;
    // Every stage of the definition, in its order: one that has no row yet has not changed since the run began.
    const rows = new Map(found.stages.map((s) => [s.stageId, JSON.parse(s.record) as StageRecord]));
    const stages: StageRecord[] = definition.stages.map((d) => rows.get(d.id) ?? { id: d.id, state: 'pending', attempts: [] });
    const record: RunRecord = { ...rest, state: found.run.state as RunState, stages };
    return { record, definition, owner: found.run.owner };
  }

  /** Run rows (without stages unless `withStages`), newest first. */
  list(filter: { pipeline?: string; states?: readonly RunState[]; limit?: number } = {}): Array<{ record: RunRecord; owner: string }> {
    return this.#backing()
      .list(filter)
      .map((row) => {
        const rest = JSON.parse(row.record) as Omit<RunRecord, 'stages'>;
        return { record: { ...rest, state: row.state as RunState, stages: [] }, owner: row.owner };
      });
  }

  forget(runId: string): void {
    this.#positions.delete(runId);
    this.#written.delete(runId);
  }
}
