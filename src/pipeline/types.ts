// The pipeline part's shared shapes (issue 11): what the definition side (parse, check, typed contracts) hands the
// engine, what the engine journals in the store, and what the CLI and the control channel read. Definition and
// engine code against these; change them only together.
import type { Json } from '../sdk/index.ts';

/** Where a value sits in the pipeline file: a JSON Pointer, plus the line/column when the YAML parser gave one. */
export interface SourceLocation {
  path: string;
  line?: number;
  column?: number;
}

export type RetryPolicy =
  | { policy: 'none' }
  | { policy: 'immediate'; attempts: number }
  | { policy: 'fixed'; attempts: number; intervalMs: number }
  | { policy: 'exponential'; attempts: number; initialDelayMs: number; maxDelayMs: number; factor: number; jitter: number };

export interface RetrySpec {
  retry: RetryPolicy;
  /** Error codes never retried (Temporal's nonRetryableErrorTypes), on top of the caller mistakes that never are. */
  nonRetryable: string[];
}

/** One stage, as parsed and normalised (durations in ms, defaults filled). */
export interface StageDefinition {
  id: string;
  extension: string;
  stage: string;
  /** The stage's input template: JSON where strings may hold `${{ expr }}` references (resolved per run). */
  with: Json;
  needs: string[];
  timeoutMs?: number;
  retry: RetrySpec;
  /** A CEL condition over `vars` and `stages`; false → the stage is skipped. */
  if?: string;
  /** The stage to run if the run fails after this one succeeded (sagas). Its `with` may reference this stage's output. */
  compensate?: { extension: string; stage: string; with: Json; timeoutMs?: number };
  continueOnError: boolean;
  /** Where the stage sits in the file, for messages. */
  location: SourceLocation;
}

export type TriggerDefinition =
  | { type: 'manual' }
  | { type: 'event'; pattern: string; if?: string }
  | { type: 'schedule'; cron: string; timezone?: string }
  | { type: 'webhook'; name: string; secretEnv?: string };

export interface PipelineDefinition {
  name: string;
  version: string;
  description?: string;
  /** JSON Schema for the run variables (defaults filled from it). */
  variablesSchema?: Json;
  maxConcurrentStages: number;
  timeoutMs?: number;
  onFailure: 'compensate' | 'stop';
  /** How many runs of this pipeline at once (queued beyond); undefined = unbounded. */
  concurrency?: number;
  triggers: TriggerDefinition[];
  /** In file order. */
  stages: StageDefinition[];
  /** The file it came from (absolute), when it came from one. */
  file?: string;
}

export type RunState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'compensating' | 'compensated' | 'interrupted';
export type StageState = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cancelled' | 'compensating' | 'compensated';

export interface StageAttempt {
  attempt: number;
  startedAt: string;
  endedAt?: string;
  error?: { code: string; message: string };
}

export interface StageRecord {
  id: string;
  state: StageState;
  attempts: StageAttempt[];
  output?: Json;
  error?: { code: string; message: string; hint?: string };
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  /** The compensation's own outcome, once it ran. */
  compensation?: { state: 'succeeded' | 'failed'; error?: { code: string; message: string } };
}

export interface RunRecord {
  id: string;
  pipeline: string;
  version: string;
  file?: string;
  state: RunState;
  variables: Json;
  trigger: { type: TriggerDefinition['type']; detail?: Json };
  createdAt: string;
  startedAt?: string;
  endedAt?: string;
  error?: { code: string; message: string; hint?: string };
  stages: StageRecord[];
}

/** One change the engine reports while a run goes (the CLI's progress display and `runs.progress` feed on it). */
export interface RunProgress {
  runId: string;
  pipeline: string;
  /** Absent for a change of the run itself. */
  stage?: string;
  state: RunState | StageState;
  attempt?: number;
  durationMs?: number;
  error?: { code: string; message: string };
}

/** A problem found before a run: where in the file, what is wrong, what to do. */
export interface PipelineIssue {
  code: string;
  message: string;
  location: SourceLocation;
  hint?: string;
}

/** What the pre-run check knows of the loaded extensions: each stage's declared input and output schemas. */
export interface StageCatalog {
  /** undefined: no such extension loaded (or not active). */
  extension(id: string): { version: string; stages: Record<string, { input: Json; output: Json }> } | undefined;
  /** Every extension id, for "did you mean" hints. */
  ids(): string[];
  /** Why an installed extension cannot be used (failed, disabled, untrusted), for a better message than "unknown". */
  unavailable?(id: string): string | undefined;
}

/** What `${{ }}` references and `if` conditions read during a run. */
export interface RunScope {
  vars: Record<string, Json>;
  /** Finished upstream stages only. */
  stages: Record<string, { output?: Json; state: StageState }>;
  run: { id: string; pipeline: string };
}

/**
 * The pipeline engine as the host's other parts see it (the CLI, the control channel's `pipelines.*` / `runs.*`
 * methods, triggers). The engine implements it; callers code against this, not the engine's classes.
 */
export interface PipelineService {
  /** Parses (when given a file or text) and checks against the loaded extensions; never runs anything. */
  validate(source: { file: string } | { definition: unknown }): Promise<{ definition?: PipelineDefinition; issues: PipelineIssue[] }>;
  /** Checks, journals the run, starts it and returns at once; PLINTH_ERR_PIPELINE_INVALID (with `issues`) if the check fails. */
  start(source: { file: string } | { definition: unknown }, options?: { variables?: Record<string, Json>; trigger?: RunRecord['trigger'] }): Promise<{ runId: string }>;
  /** Resolves with the final record once the run ends (or at once if it has). */
  wait(runId: string, signal?: AbortSignal): Promise<RunRecord>;
  get(runId: string): RunRecord | undefined;
  list(filter?: { pipeline?: string; state?: RunState; limit?: number }): RunRecord[];
  /** First cancel: cancel running stages and compensate; `{ force: true }`: stop now, no compensation. */
  cancel(runId: string, options?: { force?: boolean }): Promise<void>;
  /** Resumes an interrupted run from its journal: completed stages are not executed again. */
  resume(runId: string): Promise<{ runId: string }>;
  /** Every progress change of every run; returns an unsubscribe. */
  onProgress(listener: (progress: RunProgress) => void): () => void;
}
