// The pipeline engine (issue 11 "Execution"): runs checked definitions over the host's stage calls. Owns the
// host-wide stage scheduler, per-pipeline `concurrency` gates with bounded queues, the run journal, progress
// listeners and the `pipeline.<name>.run.<state>` / `pipeline.<name>.stage.<stage>.<state>` events.
// It knows no registry and no host: the service (src/pipeline/index.ts) hands it a call function and a store.
import { randomUUID } from 'node:crypto';
import { PlinthError } from '../../errors.ts';
import type { Json } from '../../sdk/index.ts';
import { systemClock, type Clock } from '../../events/clock.ts';
import { topicWord } from '../../events/topics.ts';
import type { RunJournalBacking } from '../../store/index.ts';
import type { PipelineDefinition, RunProgress, RunRecord, RunScope, RunState } from '../types.ts';
import { LIVE_RUNS, RunJournal, SELF_OWNER, TERMINAL_RUN_STATES, ownerAlive } from './journal.ts';
import { RunExecution, type StageCall } from './run.ts';
import { StageScheduler } from './scheduler.ts';

export { NEVER_RETRIED, isRetryable, maxAttempts, retryDelayMs } from './retry.ts';
export { StageScheduler } from './scheduler.ts';
export { RunJournal, ownerAlive, TERMINAL_RUN_STATES } from './journal.ts';
export { LIVE_RUNS } from './journal.ts';
export type { StageCall } from './run.ts';

/** A progress change, with the wait before the next attempt when an attempt failed and will be retried. */
export type EngineProgress = RunProgress & { retryInMs?: number };

export interface EngineOptions {
  call: StageCall;
  /** The store's run journal (a function: the host opens its store lazily). */
  journal: () => RunJournalBacking;
  /** Publishes the host's `pipeline.*` events; failures are reported to `onError`, never fail a run. */
  publish?: (topic: string, payload: Json, runId: string) => Promise<unknown>;
  resolveTemplate: (template: Json, scope: RunScope) => Json;
  evaluateCondition: (expr: string, scope: RunScope) => boolean;
  /** Retry delays and the overall timeout; tests move a ManualClock. */
  clock?: Clock;
  random?: () => number;
  /** Stage attempts in flight over all runs (`pipelines.maxConcurrentStages`). */
  maxConcurrentStages?: number;
  /** Runs waiting per pipeline behind its `concurrency` (`pipelines.maxQueuedRuns`). */
  maxQueuedRuns?: number;
  onError?: (message: string, fields: Record<string, unknown>) => void;
}

interface Gate {
  active: number;
  queue: RunExecution[];
}

export class PipelineEngine {
  readonly #options: EngineOptions;
  readonly #journal: RunJournal;
  readonly #scheduler: StageScheduler;
  readonly #clock: Clock;
  readonly #live = new Map<string, RunExecution>();
  readonly #gates = new Map<string, Gate>();
  readonly #listeners = new Set<(p: EngineProgress) => void>();
  #closed = false;

  constructor(options: EngineOptions) {
    this.#options = options;
    this.#journal = new RunJournal(options.journal);
    this.#scheduler = new StageScheduler(options.maxConcurrentStages ?? 16);
    this.#clock = options.clock ?? systemClock;
  }

  #environment() {
    return {
      call: this.#options.call,
      journal: this.#journal,
      scheduler: this.#scheduler,
      clock: this.#clock,
      random: this.#options.random ?? Math.random,
      owner: SELF_OWNER,
      resolveTemplate: this.#options.resolveTemplate,
      evaluateCondition: this.#options.evaluateCondition,
      report: (change: EngineProgress) => this.#report(change),
      ended: (run: RunExecution) => this.#ended(run),
    };
  }

  #report(change: EngineProgress): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.#options.onError?.('a pipeline progress listener threw', { err, runId: change.runId });
      }
    }
    const publish = this.#options.publish;
    if (!publish) return;
    const pipeline = topicWord(change.pipeline);
    const state = change.retryInMs !== undefined ? 'retrying' : change.state;
    const topic = change.stage === undefined ? `pipeline.${pipeline}.run.${state}` : `pipeline.${pipeline}.stage.${topicWord(change.stage)}.${state}`;
    const payload: Record<string, Json> = { runId: change.runId, pipeline: change.pipeline, state: change.state };
    if (change.stage !== undefined) payload.stage = change.stage;
    if (change.attempt !== undefined) payload.attempt = change.attempt;
    if (change.durationMs !== undefined) payload.durationMs = change.durationMs;
    if (change.retryInMs !== undefined) payload.retryInMs = change.retryInMs;
    if (change.error) payload.error = { code: change.error.code, message: change.error.message };
    publish(topic, payload, change.runId).catch((err: unknown) => this.#options.onError?.(`could not publish ${topic}`, { err, runId: change.runId }));
  }

  onProgress(listener: (p: EngineProgress) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  #gate(name: string): Gate {
    let gate = this.#gates.get(name);
    if (!gate) this.#gates.set(name, (gate = { active: 0, queue: [] }));
    return gate;
  }

  /** Journals a new run of a checked definition and starts it (or queues it behind the pipeline's `concurrency`). */
  start(definition: PipelineDefinition, options: { variables?: Record<string, Json>; trigger?: RunRecord['trigger'] } = {}): { runId: string } {
    this.#assertOpen();
    const gate = this.#gate(definition.name);
    const limit = definition.concurrency;
    const queued = limit !== undefined && gate.active >= limit;
    const maxQueued = this.#options.maxQueuedRuns ?? 100;
    if (queued && gate.queue.length >= maxQueued) {
      throw new PlinthError('PLINTH_ERR_RUN_QUEUE_FULL', `pipeline ${definition.name}: ${gate.active} run(s) at its concurrency ${limit} and ${gate.queue.length} waiting (pipelines.maxQueuedRuns = ${maxQueued}); the run was not started`, {
        hint: 'wait for runs to finish, or raise the pipeline\'s `concurrency` or pipelines.maxQueuedRuns',
      });
    }
    const record: RunRecord = {
      id: randomUUID(),
      pipeline: definition.name,
      version: definition.version,
      ...(definition.file ? { file: definition.file } : {}),
      state: 'pending',
      variables: options.variables ?? {},
      trigger: options.trigger ?? { type: 'manual' },
      createdAt: new Date(this.#clock.now()).toISOString(),
      stages: [],
    };
    const run = new RunExecution(definition, record, this.#environment());
    this.#live.set(record.id, run);
    LIVE_RUNS.add(record.id);
    run.journalNew();
    if (queued) gate.queue.push(run);
    else this.#begin(run, gate);
    return { runId: record.id };
  }

  #begin(run: RunExecution, gate: Gate): void {
    gate.active++;
    run.begin();
  }

  #ended(run: RunExecution): void {
    this.#live.delete(run.id);
    LIVE_RUNS.delete(run.id);
    this.#journal.forget(run.id);
    const gate = this.#gate(run.definition.name);
    const wasQueued = gate.queue.indexOf(run);
    if (wasQueued >= 0) {
      gate.queue.splice(wasQueued, 1);
      return;
    }
    gate.active--;
    if (this.#closed) return;
    const limit = run.definition.concurrency;
    while (gate.queue.length > 0 && (limit === undefined || gate.active < limit)) this.#begin(gate.queue.shift()!, gate);
  }

  #assertOpen(): void {
    if (this.#closed) throw new PlinthError('PLINTH_ERR_SHUTDOWN', 'the pipeline engine is stopping: no run starts now');
  }

  /** The run as it is now: live from memory, else from the journal (a run no live process owns is `interrupted`). */
  get(runId: string): RunRecord | undefined {
    const live = this.#live.get(runId);
    if (live) return structuredClone(live.record);
    return readRun(this.#journal, runId);
  }

  list(filter: RunFilter = {}): RunRecord[] {
    return listRuns(this.#journal, filter, (id) => this.get(id));
  }

  /** Runs a dead process left unfinished; each is journaled as `interrupted` (what `plinth serve` lists at start). */
  interrupted(): RunRecord[] {
    const found = this.list({ state: 'interrupted' });
    for (const record of found) {
      const loaded = this.#journal.load(record.id);
      if (loaded && loaded.record.state !== 'interrupted') {
        loaded.record.state = 'interrupted';
        this.#journal.saveRun(loaded.record, JSON.stringify(loaded.definition), loaded.owner);
      }
    }
    return found;
  }

  async wait(runId: string, signal?: AbortSignal): Promise<RunRecord> {
    const live = this.#live.get(runId);
    if (!live) {
      const record = this.get(runId);
      if (!record) throw notFound(runId);
      return record;
    }
    if (!signal) return structuredClone(await live.done);
    signal.throwIfAborted();
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      void live.done.then((record) => {
        signal.removeEventListener('abort', onAbort);
        resolve(structuredClone(record));
      });
    });
  }

  cancel(runId: string, options: { force?: boolean } = {}): Promise<void> {
    const live = this.#live.get(runId);
    if (!live) {
      if (!this.#journal.load(runId)) return Promise.reject(notFound(runId));
      return Promise.resolve(); // ended already, or not ours to cancel
    }
    const gate = this.#gate(live.definition.name);
    const queuedAt = gate.queue.indexOf(live);
    // A queued run never started: it ends cancelled at once.
    live.cancel(options.force === true || queuedAt >= 0);
    return Promise.resolve();
  }

  /** Resumes an interrupted run from the journal: completed stages keep their outputs; running ones run again. */
  resume(runId: string): { runId: string } {
    this.#assertOpen();
    if (this.#live.has(runId)) throw notResumable(runId, 'it is running in this host');
    const found = this.#journal.load(runId);
    if (!found) throw notFound(runId);
    const { record, definition, owner } = found;
    if (TERMINAL_RUN_STATES.has(record.state)) throw notResumable(runId, `it has ended (${record.state})`);
    if (ownerAlive(owner, runId)) throw notResumable(runId, `process ${owner} is still running it`);
    const run = new RunExecution(definition, record, this.#environment(), JSON.stringify(definition));
    this.#live.set(runId, run);
    LIVE_RUNS.add(runId);
    const gate = this.#gate(definition.name);
    if (definition.concurrency !== undefined && gate.active >= definition.concurrency) {
      record.state = 'pending';
      gate.queue.push(run);
    } else this.#begin(run, gate);
    return { runId };
  }

  get liveRuns(): number {
    return this.#live.size;
  }

  /** The host is stopping: runs in flight stay in the journal as they are (interrupted, resumable). */
  close(): void {
    this.#closed = true;
    for (const run of [...this.#live.values()]) run.detach();
    try {
      this.#journal.flushNow();
    } catch (err) {
      this.#options.onError?.('the run journal could not be written at stop', { err });
    }
  }
}

export interface RunFilter {
  pipeline?: string;
  state?: RunState;
  limit?: number;
}

function asSeen(record: RunRecord, owner: string): RunRecord {
  if (!TERMINAL_RUN_STATES.has(record.state) && record.state !== 'interrupted' && !ownerAlive(owner, record.id)) record.state = 'interrupted';
  return record;
}

/** A run from the journal alone (no engine needed: `plinth runs show`). */
export function readRun(journal: RunJournal, runId: string): RunRecord | undefined {
  const found = journal.load(runId);
  return found ? asSeen(found.record, found.owner) : undefined;
}

/** Runs from the journal, newest first, each with its stages. */
export function listRuns(journal: RunJournal, filter: RunFilter = {}, get: (id: string) => RunRecord | undefined = (id) => readRun(journal, id)): RunRecord[] {
  const wanted = filter.state;
  // `interrupted` is mostly seen, not journaled: look among every unfinished state for it.
  const states: RunState[] | undefined = wanted === undefined ? undefined : wanted === 'interrupted' ? ['pending', 'running', 'compensating', 'interrupted'] : [wanted];
  const rows = journal.list({ ...(filter.pipeline !== undefined ? { pipeline: filter.pipeline } : {}), ...(states ? { states } : {}), ...(wanted === undefined && filter.limit !== undefined ? { limit: filter.limit } : {}) });
  const out: RunRecord[] = [];
  for (const row of rows) {
    const record = get(row.record.id);
    if (!record || (wanted !== undefined && record.state !== wanted)) continue;
    out.push(record);
    if (filter.limit !== undefined && out.length >= filter.limit) break;
  }
  return out;
}

function notFound(runId: string): PlinthError {
  return new PlinthError('PLINTH_ERR_RUN_NOT_FOUND', `no pipeline run ${runId} in the journal`, { hint: '`plinth runs ls` lists the runs of this data dir' });
}

function notResumable(runId: string, why: string): PlinthError {
  return new PlinthError('PLINTH_ERR_RUN_NOT_RESUMABLE', `run ${runId} cannot be resumed: ${why}`, { hint: 'start a new run, or cancel the live one' });
}
