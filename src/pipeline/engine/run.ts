// One run of a pipeline (issue 11 "Execution"): a state machine over the DAG. Stages become ready when all their
// `needs` are done; each attempt takes a slot of the host-wide scheduler; every state change is journaled before
// the step that depends on it (an output before the dependents start) and reported (progress + bus event).
// A failure (after retries) stops the run: stages not started are skipped, running ones cancelled, then the
// compensations of the stages that succeeded run one at a time in reverse completion order (sagas).
import { PlinthError, isPlinthError, type ErrorCode } from '../../errors.ts';
import type { Json } from '../../sdk/index.ts';
import type { Clock } from '../../events/clock.ts';
import type { PipelineDefinition, RunProgress, RunRecord, RunScope, RunState, StageDefinition, StageRecord, StageState } from '../types.ts';
import type { RunJournal } from './journal.ts';
import type { SchedulableRun, StageScheduler } from './scheduler.ts';
import { isRetryable, maxAttempts, retryDelayMs } from './retry.ts';

export interface StageCall {
  (extension: string, stage: string, input: Json, request: { timeoutMs?: number; runId: string; signal: AbortSignal }): Promise<Json>;
}

/** What a run needs from the engine around it. */
export interface RunEnvironment {
  call: StageCall;
  journal: RunJournal;
  scheduler: StageScheduler;
  clock: Clock;
  random: () => number;
  owner: string;
  resolveTemplate(template: Json, scope: RunScope): Json;
  evaluateCondition(expr: string, scope: RunScope): boolean;
  /** Every change, for progress listeners and the bus (`pipeline.<name>.…`). */
  report(change: RunProgress & { retryInMs?: number }): void;
  /** The run has ended (its record is journaled). */
  ended(run: RunExecution): void;
}

interface Node {
  def: StageDefinition;
  rec: StageRecord;
  /** Needs not done yet. */
  waiting: number;
  dependents: Node[];
  controller?: AbortController;
  retryTimer?: unknown;
}

type Phase = 'idle' | 'running' | 'stopping' | 'compensating' | 'done';

const DONE_STATES: ReadonlySet<StageState> = new Set(['succeeded', 'skipped', 'failed', 'cancelled', 'compensated', 'compensating']);

function errorOf(err: unknown): PlinthError {
  if (isPlinthError(err)) return err;
  return new PlinthError('PLINTH_ERR_STAGE_FAILED', err instanceof Error ? err.message : String(err), { cause: err });
}

function brief(e: PlinthError): { code: string; message: string } {
  return { code: e.code, message: e.message };
}

export class RunExecution implements SchedulableRun {
  readonly record: RunRecord;
  readonly definition: PipelineDefinition;
  readonly definitionJson: string;
  readonly #env: RunEnvironment;
  readonly #nodes = new Map<string, Node>();
  readonly #ready: Node[] = [];
  /** Succeeded stages in the order they completed: compensations run in the reverse. */
  readonly #completed: Node[] = [];
  readonly scope: RunScope;
  #phase: Phase = 'idle';
  #active = 0;
  /** Stage outputs queued for the journal whose commit has not landed yet (the run ends only after them). */
  #committing = 0;
  /** Stages not in a final state yet (a stage waiting for its retry counts). */
  #unfinished = 0;
  #ending: { state: 'failed' | 'cancelled'; error: PlinthError } | undefined;
  #timeoutTimer: unknown;
  #compensation: AbortController | undefined;
  #forced = false;
  readonly done: Promise<RunRecord>;
  #resolve!: (record: RunRecord) => void;

  constructor(definition: PipelineDefinition, record: RunRecord, env: RunEnvironment, definitionJson = JSON.stringify(definition)) {
    this.definition = definition;
    this.definitionJson = definitionJson;
    this.record = record;
    this.#env = env;
    this.done = new Promise((resolve) => (this.#resolve = resolve));
    this.scope = { vars: record.variables as Record<string, Json>, stages: Object.create(null) as RunScope['stages'], run: { id: record.id, pipeline: record.pipeline } };
    const records = new Map(record.stages.map((s) => [s.id, s]));
    for (const def of definition.stages) {
      let rec = records.get(def.id);
      if (!rec) record.stages.push((rec = { id: def.id, state: 'pending', attempts: [] }));
      this.#nodes.set(def.id, { def, rec, waiting: def.needs.length, dependents: [] });
    }
    for (const node of this.#nodes.values()) for (const need of node.def.needs) this.#nodes.get(need)?.dependents.push(node);
  }

  get id(): string {
    return this.record.id;
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** The phase now (a method, so checks after an await are not narrowed away by the checks before it). */
  #is(phase: Phase): boolean {
    return this.#phase === phase;
  }

  #now(): string {
    return new Date(this.#env.clock.now()).toISOString();
  }

  /** Queues the stage rows for the journal's next group commit; `#committed()` waits for it. */
  #saveStages(...nodes: Node[]): void {
    this.#env.journal.queue(this.record, nodes.map((n) => n.rec));
  }

  #committed(): Promise<void> {
    return this.#env.journal.committed();
  }

  #saveRun(...nodes: Node[]): void {
    this.#env.journal.saveRun(this.record, this.definitionJson, this.#env.owner, nodes.map((n) => n.rec));
  }

  #reportStage(node: Node, extra: { error?: { code: string; message: string }; retryInMs?: number } = {}): void {
    const rec = node.rec;
    this.#env.report({
      runId: this.id,
      pipeline: this.record.pipeline,
      stage: rec.id,
      state: rec.state,
      ...(rec.attempts.length > 0 ? { attempt: rec.attempts.length } : {}),
      ...(rec.durationMs !== undefined && rec.state !== 'running' ? { durationMs: rec.durationMs } : {}),
      ...(extra.error ? { error: extra.error } : rec.error && rec.state === 'failed' ? { error: { code: rec.error.code, message: rec.error.message } } : {}),
      ...(extra.retryInMs !== undefined ? { retryInMs: extra.retryInMs } : {}),
    });
  }

  #reportRun(): void {
    const r = this.record;
    const duration = r.startedAt && r.endedAt ? Date.parse(r.endedAt) - Date.parse(r.startedAt) : undefined;
    this.#env.report({
      runId: r.id,
      pipeline: r.pipeline,
      state: r.state,
      ...(duration !== undefined ? { durationMs: duration } : {}),
      ...(r.error && r.state !== 'running' ? { error: { code: r.error.code, message: r.error.message } } : {}),
    });
  }

  /** A fresh run: journaled as pending before anything else happens (its stages are pending until their first row). */
  journalNew(): void {
    // The run row only: its definition names every stage, and a stage without a row reads back as pending
    // (RunJournal.load), so a stage's first row is its first change — one write per stage saved at every run.
    this.#saveRun();
    this.#reportRun();
  }

  /**
   * Starts (or, for a run read back from the journal, resumes) the run. Completed stages keep their journaled
   * outputs; a stage that was running when its host died runs again (at-least-once).
   */
  begin(): void {
    if (this.#phase !== 'idle') return;
    const reset: Node[] = [];
    const finishedInOrder: Node[] = [];
    let failedStage: Node | undefined;
    for (const node of this.#nodes.values()) {
      const rec = node.rec;
      if (rec.state === 'running' || rec.state === 'pending' || (rec.state === 'cancelled' && !this.record.error)) {
        if (rec.state !== 'pending') {
          rec.state = 'pending';
          reset.push(node);
        }
        this.#unfinished++;
        continue;
      }
      if (rec.state === 'failed' && !node.def.continueOnError) failedStage ??= node;
      if (rec.state === 'succeeded' || rec.state === 'compensating' || rec.state === 'compensated') finishedInOrder.push(node);
      if (rec.state !== 'cancelled') this.scope.stages[rec.id] = { ...(rec.output !== undefined ? { output: rec.output } : {}), state: rec.state === 'compensating' || rec.state === 'compensated' ? 'succeeded' : rec.state };
    }
    // Completion order, as journaled (end times; ties in definition order).
    finishedInOrder.sort((a, b) => (a.rec.endedAt ?? '').localeCompare(b.rec.endedAt ?? ''));
    this.#completed.push(...finishedInOrder);
    for (const node of this.#nodes.values()) {
      if (DONE_STATES.has(node.rec.state) && node.rec.state !== 'cancelled') for (const d of node.dependents) d.waiting--;
    }

    this.#phase = 'running';
    this.record.state = 'running';
    this.record.startedAt ??= this.#now();
    delete this.record.endedAt;
    this.#saveRun(...reset);
    this.#reportRun();

    // Read back mid-stop (the host died while failing or compensating): carry on with that.
    if (this.record.error || failedStage) {
      const e = this.record.error;
      const error = e ? new PlinthError(e.code as ErrorCode, e.message, e.hint ? { hint: e.hint } : {}) : this.#stageFailure(failedStage!);
      this.#stop(e?.code === 'PLINTH_ERR_CANCELLED' ? 'cancelled' : 'failed', error);
      return;
    }
    if (this.definition.timeoutMs !== undefined) {
      const ms = this.definition.timeoutMs;
      this.#timeoutTimer = this.#env.clock.setTimeout(() => {
        this.#timeoutTimer = undefined;
        this.#stop('failed', new PlinthError('PLINTH_ERR_PIPELINE_TIMEOUT', `pipeline ${this.record.pipeline}: run ${this.id} did not finish within its timeout of ${ms} ms`, { hint: 'raise the pipeline\'s `timeout`, or make its stages faster' }));
      }, ms);
    }
    for (const node of this.#nodes.values()) if (node.rec.state === 'pending' && node.waiting <= 0) this.#ready.push(node);
    this.#settle();
  }

  wantsSlot(): boolean {
    return this.#phase === 'running' && this.#ready.length > 0 && this.#active < this.definition.maxConcurrentStages;
  }

  startNext(): Promise<void> | undefined {
    if (!this.wantsSlot()) return undefined;
    const node = this.#ready.shift()!;
    this.#active++;
    return this.#attempt(node).then(
      () => this.#afterAttempt(),
      (err: unknown) => {
        // The journal refused a write (disk full, store closed): the run cannot go on truthfully.
        this.#afterAttempt();
        this.#stop('failed', errorOf(err));
      },
    );
  }

  #afterAttempt(): void {
    this.#active--;
    this.#settle();
  }

  /** After any change: offer more work, or move to the next phase when nothing runs. */
  #settle(): void {
    if (this.#phase === 'running') {
      if (this.#unfinished === 0 && this.#active === 0 && this.#committing === 0) {
        this.#end('succeeded');
        return;
      }
      if (this.wantsSlot()) this.#env.scheduler.offer(this);
    } else if (this.#phase === 'stopping' && this.#active === 0 && this.#committing === 0) {
      void this.#compensate().catch((err: unknown) => this.#end('failed', errorOf(err)));
    }
  }

  #stageFailure(node: Node): PlinthError {
    const e = node.rec.error;
    return new PlinthError('PLINTH_ERR_STAGE_FAILED', `stage ${node.def.id} (${node.def.extension}.${node.def.stage}) failed${e ? `: ${e.code}: ${e.message}` : ''}`, {
      extension: node.def.extension,
      hint: e?.hint ?? `see \`plinth runs show ${this.id}\` for every attempt`,
    });
  }

  async #attempt(node: Node): Promise<void> {
    const { def, rec } = node;
    if (def.if !== undefined && rec.attempts.length === 0) {
      let run: boolean;
      try {
        run = this.#env.evaluateCondition(def.if, this.scope);
      } catch (err) {
        await this.#failStage(node, errorOf(err), this.#now());
        return;
      }
      if (!run) {
        rec.state = 'skipped';
        rec.endedAt = this.#now();
        this.scope.stages[rec.id] = { state: 'skipped' };
        this.#saveStages(node);
        await this.#committed();
        this.#reportStage(node);
        this.#finish(node);
        return;
      }
    }
    let input: Json;
    try {
      input = this.#env.resolveTemplate(def.with, this.scope);
    } catch (err) {
      await this.#failStage(node, errorOf(err), this.#now());
      return;
    }
    const attempt = { attempt: rec.attempts.length + 1, startedAt: this.#now() } as StageRecord['attempts'][number];
    rec.attempts.push(attempt);
    rec.state = 'running';
    rec.startedAt ??= attempt.startedAt;
    delete rec.error;
    this.#saveStages(node);
    // `running` is in the journal before the call starts (a resume then knows it may have run).
    await this.#committed();
    if (this.#is('done')) return;
    if (!this.#is('running')) {
      // Stopped while the commit was under way: never called.
      rec.state = 'cancelled';
      rec.endedAt = this.#now();
      this.#unfinished--;
      this.#saveStages(node);
      return;
    }
    this.#reportStage(node);

    const controller = new AbortController();
    node.controller = controller;
    let output: Json | undefined;
    let failure: PlinthError | undefined;
    try {
      output = await this.#env.call(def.extension, def.stage, input, { ...(def.timeoutMs !== undefined ? { timeoutMs: def.timeoutMs } : {}), runId: this.id, signal: controller.signal });
    } catch (err) {
      failure = errorOf(err);
    }
    node.controller = undefined;
    if (this.#is('done')) return; // stopped at once (force): the journal already says cancelled
    const endedAt = this.#now();
    attempt.endedAt = endedAt;
    if (!failure) {
      rec.output = output!;
      rec.state = 'succeeded';
      rec.endedAt = endedAt;
      rec.durationMs = Date.parse(endedAt) - Date.parse(rec.startedAt);
      // The dependents are released now, in memory: their `running` rows go in the same group commit as this
      // output, and each awaits that commit before its call — so the output is journaled before any dependent
      // runs, at one commit per DAG level instead of two (a resume sees the output, its dependents running).
      // The slot is free once the call returned; the run cannot end (nor report) before this commit lands.
      this.#saveStages(node);
      this.#completed.push(node);
      this.scope.stages[rec.id] = { output: rec.output, state: 'succeeded' };
      this.#finish(node);
      this.#committing++;
      this.#committed().then(
        () => {
          this.#committing--;
          if (this.#is('done')) return;
          // Listeners and the bus hear of it only once it is committed.
          this.#reportStage(node);
          this.#settle();
        },
        (err: unknown) => {
          // The journal refused the write: the run cannot go on truthfully.
          this.#committing--;
          this.#stop('failed', errorOf(err));
          this.#settle();
        },
      );
      return;
    }
    attempt.error = brief(failure);
    if (controller.signal.aborted) {
      rec.state = 'cancelled';
      rec.error = { code: 'PLINTH_ERR_CANCELLED', message: `stage ${rec.id} was cancelled: ${this.#ending?.error.message ?? 'the run was cancelled'}` };
      rec.endedAt = endedAt;
      rec.durationMs = Date.parse(endedAt) - Date.parse(rec.startedAt);
      this.#unfinished--;
      this.#saveStages(node);
      this.#reportStage(node);
      return;
    }
    const policy = def.retry.retry;
    if (this.#phase === 'running' && attempt.attempt < maxAttempts(policy) && isRetryable(failure.code, def.retry)) {
      const delay = retryDelayMs(policy, attempt.attempt + 1, this.#env.random);
      this.#saveStages(node);
      this.#reportStage(node, { error: brief(failure), retryInMs: delay });
      const again = () => {
        node.retryTimer = undefined;
        if (this.#phase !== 'running') return;
        this.#ready.push(node);
        this.#env.scheduler.offer(this);
      };
      if (delay === 0) again();
      else node.retryTimer = this.#env.clock.setTimeout(again, delay);
      return;
    }
    await this.#failStage(node, failure, endedAt);
  }

  async #failStage(node: Node, failure: PlinthError, endedAt: string): Promise<void> {
    const rec = node.rec;
    rec.state = 'failed';
    rec.error = { code: failure.code, message: failure.message, ...(failure.hint ? { hint: failure.hint } : {}) };
    rec.endedAt = endedAt;
    if (rec.startedAt) rec.durationMs = Date.parse(endedAt) - Date.parse(rec.startedAt);
    this.#saveStages(node);
    if (node.def.continueOnError) {
      await this.#committed();
      if (this.#phase === 'done') return;
      this.#reportStage(node);
      this.scope.stages[rec.id] = { state: 'failed' };
      this.#finish(node);
      return;
    }
    this.#unfinished--;
    this.#reportStage(node);
    // #stop commits this row with the run's reason, in one transaction.
    this.#stop('failed', this.#stageFailure(node));
  }

  /** A stage reached a final state: its dependents may become ready. */
  #finish(node: Node): void {
    this.#unfinished--;
    for (const d of node.dependents) {
      d.waiting--;
      if (d.waiting === 0 && d.rec.state === 'pending' && this.#phase === 'running') this.#ready.push(d);
    }
  }

  /** Cancel (API / Ctrl-C): first cancel + compensate; `force`: stop now, nothing more runs. */
  cancel(force: boolean): void {
    const error = new PlinthError('PLINTH_ERR_CANCELLED', `run ${this.id} of pipeline ${this.record.pipeline} was cancelled${force ? ' (forced: no compensation)' : ''}`);
    if (force) this.#force(error);
    else this.#stop('cancelled', error);
  }

  /** Stops scheduling: not-started stages skipped, running ones cancelled; compensation follows once none runs. */
  #stop(state: 'failed' | 'cancelled', error: PlinthError): void {
    if (this.#phase !== 'running') return;
    this.#phase = 'stopping';
    this.#ending = { state, error };
    this.#clearTimeout();
    this.#ready.length = 0;
    const changed: Node[] = [];
    const at = this.#now();
    for (const node of this.#nodes.values()) {
      if (node.rec.state === 'running' && node.retryTimer !== undefined) {
        this.#env.clock.clearTimeout(node.retryTimer);
        node.retryTimer = undefined;
        node.rec.state = 'cancelled';
        node.rec.endedAt = at;
        changed.push(node);
        this.#unfinished--;
      } else if (node.rec.state === 'pending') {
        node.rec.state = 'skipped';
        node.rec.endedAt = at;
        changed.push(node);
        this.#unfinished--;
      }
    }
    this.record.error = { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
    // The reason goes in first: a host dying from here on resumes into the stop, not into the stages.
    this.#saveRun(...changed);
    for (const node of changed) this.#reportStage(node);
    for (const node of this.#nodes.values()) node.controller?.abort(error);
    this.#settle();
  }

  #force(error: PlinthError): void {
    if (this.#phase === 'done') return;
    this.#forced = true;
    if (this.#phase === 'idle') this.#phase = 'running';
    this.#stop('cancelled', error);
    this.#compensation?.abort(error);
    const changed: Node[] = [];
    const at = this.#now();
    for (const node of this.#nodes.values()) {
      const s = node.rec.state;
      if (s === 'running' || s === 'pending' || s === 'compensating') {
        if (node.controller || s !== 'compensating') node.rec.state = 'cancelled';
        if (s === 'compensating') node.rec.compensation = { state: 'failed', error: { code: 'PLINTH_ERR_CANCELLED', message: 'stopped by a forced cancel' } };
        node.rec.endedAt ??= at;
        changed.push(node);
      }
    }
    this.#saveStages(...changed);
    for (const node of changed) this.#reportStage(node);
    this.#end('cancelled', error);
  }

  async #compensate(): Promise<void> {
    if (this.#phase !== 'stopping' || this.#forced) return;
    const ending = this.#ending!;
    const toUndo = this.#completed.filter((n) => n.def.compensate && (n.rec.state === 'succeeded' || n.rec.state === 'compensating') && !n.rec.compensation).reverse();
    if (toUndo.length === 0 || (ending.state === 'failed' && this.definition.onFailure === 'stop')) {
      this.#end(ending.state, ending.error);
      return;
    }
    this.#phase = 'compensating';
    this.record.state = 'compensating';
    this.#saveRun();
    this.#reportRun();
    let anyFailed = false;
    for (const node of toUndo) {
      if (this.#phase !== 'compensating') return;
      const comp = node.def.compensate!;
      node.rec.state = 'compensating';
      this.#saveStages(node);
      await this.#committed();
      if (!this.#is('compensating')) return;
      this.#reportStage(node);
      const controller = (this.#compensation = new AbortController());
      try {
        const input = this.#env.resolveTemplate(comp.with, this.scope);
        await this.#env.call(comp.extension, comp.stage, input, { ...(comp.timeoutMs !== undefined ? { timeoutMs: comp.timeoutMs } : {}), runId: this.id, signal: controller.signal });
        if (this.#phase !== 'compensating') return;
        node.rec.compensation = { state: 'succeeded' };
        node.rec.state = 'compensated';
      } catch (err) {
        if (this.#phase !== 'compensating') return;
        const e = errorOf(err);
        anyFailed = true;
        node.rec.compensation = { state: 'failed', error: brief(e) };
        node.rec.state = 'succeeded';
      }
      this.#compensation = undefined;
      this.#saveStages(node);
      this.#reportStage(node, node.rec.compensation.error ? { error: node.rec.compensation.error } : {});
    }
    this.#end(ending.state === 'cancelled' ? 'cancelled' : anyFailed ? 'failed' : 'compensated', ending.error);
  }

  /**
   * The host is stopping: leave the run as the journal has it (running), so it is interrupted and resumable —
   * nothing more is written for it here. Calls in flight are aborted; what they return is ignored.
   */
  detach(): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    this.#clearTimeout();
    for (const node of this.#nodes.values()) {
      if (node.retryTimer !== undefined) this.#env.clock.clearTimeout(node.retryTimer);
      node.retryTimer = undefined;
      node.controller?.abort(new PlinthError('PLINTH_ERR_SHUTDOWN', 'the host is stopping; the run stays interrupted and can be resumed'));
    }
    this.#compensation?.abort();
    this.#env.ended(this);
    this.#resolve({ ...structuredClone(this.record), state: 'interrupted' });
  }

  #clearTimeout(): void {
    if (this.#timeoutTimer !== undefined) this.#env.clock.clearTimeout(this.#timeoutTimer);
    this.#timeoutTimer = undefined;
  }

  #end(state: RunState, error?: PlinthError): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    this.#clearTimeout();
    for (const node of this.#nodes.values()) {
      if (node.retryTimer !== undefined) this.#env.clock.clearTimeout(node.retryTimer);
      node.retryTimer = undefined;
    }
    this.record.state = state;
    this.record.endedAt = this.#now();
    if (error) this.record.error = { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
    this.#saveRun();
    this.#reportRun();
    this.#env.ended(this);
    this.#resolve(this.record);
  }
}
