// The extension author's test harness (issue 13), imported as `plinth/sdk/testing`: runs a stage of the extension
// in a folder in a REAL sandbox — the runtime its manifest names (`worker` or `isolate`; a `remote` extension runs
// in a worker, the same module a runner would serve) — behind an embedded host that does everything a host does
// (manifest and schema validation, signature check, grants, limits, timeouts), and returns the validated output
// or throws the PlinthError.
//
// The types here stand alone (only the SDK's): an author's type-check of a test file sees these declarations, not
// the whole host behind them, which is loaded by a specifier the compiler does not follow (harness.ts).
import type { Extension, Json, StageName, StageInput, StageOutput } from '../sdk/index.ts';

export interface TestOptions {
  /** The extension's config, as `extensions.<id>.config` in a host config would give it (checked against its configSchema). */
  config?: Record<string, Json>;
  /** Environment variables the extension may read through `ctx.env` (only those its `permissions.env` grants). Default: none. */
  env?: Record<string, string>;
  /**
   * A trust-store file: run the folder as it is, verifying its own plinth.sig under policy `required` (a release
   * check). Without it, the harness runs a copy of the folder signed with a throw-away test key, so the code being
   * edited runs without re-signing — trust is the only check it skips.
   */
  trust?: string;
  /** Default bound of each call, in ms (the manifest's `limits.callTimeoutMs` otherwise). */
  timeoutMs?: number;
}

/** A line the extension logged (ctx.log, console), as the host records it. */
export interface LogRecord {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  message: string;
  /** The structured fields that came with it. */
  fields: Record<string, unknown>;
}

/**
 * An extension started in a sandbox. `E` is the type of its definition (`typeof import('../index.ts').default`)
 * so that calls are typed; without it inputs and outputs are JSON.
 */
export interface LoadedExtension<E = Extension> {
  readonly id: string;
  readonly version: string;
  /** What its manifest says. */
  readonly runtime: 'worker' | 'isolate' | 'remote';
  /** Where it runs here: a `remote` extension runs in a worker. */
  readonly sandbox: 'worker' | 'isolate';
  /** Everything it has logged so far. */
  readonly logs: readonly LogRecord[];
  /** Runs a stage: input checked against the stage's input schema, output against its output schema. */
  call<K extends StageName<E>>(stage: K, input: StageInput<E, K>, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<StageOutput<E, K>>;
  /** Stops the extension (its `stop()`), the sandbox and the host; removes the temp folders. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Harness {
  loadExtension(dir: string, options: TestOptions): Promise<LoadedExtension<never>>;
}

// Not a literal, so a type-check of an author's tests does not follow it into the host's sources.
const HARNESS = new URL('./harness.ts', import.meta.url).href;
let harness: Promise<Harness> | undefined;

/**
 * Starts the extension in `dir` (the folder holding its package.json) in its sandbox. Throws the PlinthError that
 * stopped it (an invalid manifest with its problems, a module that throws on load, …). Stop it when done.
 */
export async function loadExtension<E = Extension>(dir: string, options: TestOptions = {}): Promise<LoadedExtension<E>> {
  harness ??= import(HARNESS) as Promise<Harness>;
  const loaded: LoadedExtension<never> = await (await harness).loadExtension(dir, options);
  return loaded;
}

/** Starts the extension, runs one stage, stops it: the validated output, or the PlinthError thrown. */
export async function runStage<E = Extension, K extends StageName<E> = StageName<E>>(dir: string, stage: K, input: StageInput<E, K>, options: TestOptions = {}): Promise<StageOutput<E, K>> {
  const ext = await loadExtension<E>(dir, options);
  try {
    return await ext.call(stage, input);
  } finally {
    await ext.stop();
  }
}
