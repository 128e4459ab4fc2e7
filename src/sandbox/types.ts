// The one interface every runtime implements (DESIGN.md §4; STYLE.md "Temporal TS SDK": every sandbox backend
// behind one interface). The sandbox knows nothing of the registry: it is given a spec and a bridge.
import type { Permissions, Runtime } from '../manifest/index.ts';
import type { PlinthError } from '../errors.ts';
import type { Json, PlinthEvent, HealthResult } from '../sdk/index.ts';

/** Everything a runtime needs to load one extension. Plain data: it crosses threads and processes. */
export interface SandboxSpec {
  /** Unique per loaded instance (an extension reloaded gets a new one). */
  instanceId: string;
  id: string;
  version: string;
  /** Absolute extension folder and entry module. */
  dir: string;
  mainPath: string;
  /** Config after validation against the manifest's configSchema (defaults applied). */
  config: Record<string, Json>;
  permissions: Permissions;
  /** startTimeoutMs bounds loading (module, initialize, start) together; callTimeoutMs when absent. */
  limits: { memoryMb: number; callTimeoutMs: number; concurrency: number; startTimeoutMs?: number };
  /** Stage names the manifest declares; only these can be called. */
  stages: string[];
}

/** What a sandboxed extension may ask of the host through its ctx. Every op is checked against the grants. */
export type ContextOp =
  | { op: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; message: string; fields?: Record<string, Json> }
  | { op: 'emit'; topic: string; payload: Json }
  | { op: 'fs.readText'; path: string }
  | { op: 'fs.writeText'; path: string; text: string }
  | { op: 'fs.appendText'; path: string; text: string }
  | { op: 'kv.get'; key: string }
  | { op: 'kv.set'; key: string; value: Json }
  | { op: 'kv.delete'; key: string }
  | { op: 'env'; name: string }
  | { op: 'fetch'; url: string; init?: { method?: string; headers?: Record<string, string>; body?: string } };

/** The host side of ctx: performs a ContextOp for one extension, or rejects with PLINTH_ERR_PERMISSION_DENIED. */
export type ContextHandler = (op: ContextOp) => Promise<Json | undefined>;

export interface CallOptions {
  /** Wall-clock bound of the call; past it the code running it is stopped. */
  timeoutMs: number;
  runId?: string;
  traceId: string;
  /** Cancels the call (e.g. a pipeline run was cancelled). */
  signal?: AbortSignal;
}

export type SandboxExit = {
  /** Why the sandbox is gone: it crashed, ran out of memory, was killed by a watchdog, or was stopped. */
  reason: 'crashed' | 'out-of-memory' | 'killed' | 'stopped';
  detail: string;
};

export interface Sandbox {
  readonly runtime: Runtime;
  readonly spec: SandboxSpec;
  /** Loads the module, runs initialize(config) and start(). Rejects with PLINTH_ERR_EXTENSION_LOAD_FAILED. */
  start(): Promise<void>;
  /**
   * Runs a stage. Rejects with a PlinthError: STAGE_UNKNOWN, STAGE_FAILED (with the extension's stack),
   * STAGE_TIMEOUT, CPU_LIMIT, OUT_OF_MEMORY, SANDBOX_CRASHED, RESULT_TOO_LARGE, SHUTDOWN.
   */
  call(stage: string, input: Json, options: CallOptions): Promise<Json>;
  /** Delivers an event to handleEvent (resolves at once if the extension has none). */
  deliver(event: PlinthEvent, options: CallOptions): Promise<void>;
  /** Runs healthCheck() (true if the extension has none); rejects on timeout or crash. */
  health(timeoutMs: number): Promise<HealthResult>;
  /** Calls stop() time-boxed to `timeoutMs`, then releases everything (threads, isolates). Never rejects. */
  stop(timeoutMs: number): Promise<void>;
  /** Registers a listener for the sandbox ending on its own (crash, OOM, watchdog). */
  onExit(listener: (exit: SandboxExit) => void): void;
  /**
   * Runtimes whose serving comes and goes without an exit (remote: runners connect and disconnect) report it
   * here: false when nothing can serve a call now (with why), true when something can again.
   */
  onAvailability?(listener: (available: boolean, reason?: PlinthError) => void): void;
  /** With onAvailability: whether something can serve a call now. */
  readonly available?: boolean;
}

export type SandboxFactory = (spec: SandboxSpec, context: ContextHandler) => Sandbox;
