// The remote runtime's wire contract, one file for both sides (STYLE.md: VS Code keeps its RPC contract in one
// protocol file): what a runner (src/sdk/runner.ts) and the host (pool.ts, sandbox.ts, src/control) send each
// other over the control channel's WebSocket, through the one JSON-RPC implementation (../link, the Peer the
// isolate sandbox process also speaks). docs/remote.md describes it for people writing runners in other languages.
//
//   runner → host  requests: runner.register (RegisterParams → RegisterResult), runner.drain, ctx (CtxParams)
//   host → runner  requests: extension.initialize, stage.execute, extension.handleEvent, extension.healthCheck,
//                            extension.stop; $/cancelRequest cancels one of them (a timeout, the caller's cancel)
//
// Erasable TypeScript only, and no imports beyond types: the SDK's runner imports this file in an author's process.
import type { ContextOp } from '../types.ts';
import type { DeliveredEvent, Json } from '../../sdk/index.ts';

export const REMOTE_METHODS = {
  register: 'runner.register',
  drain: 'runner.drain',
  ctx: 'ctx',
  initialize: 'extension.initialize',
  execute: 'stage.execute',
  handleEvent: 'extension.handleEvent',
  healthCheck: 'extension.healthCheck',
  stop: 'extension.stop',
} as const;

export interface RegisterParams {
  /** The package's package.json, parsed. */
  manifest: Record<string, unknown>;
  /** package.json exactly as signed (its bytes are what plinth.sig hashes); the SDK sends it beside `manifest`. */
  manifestText?: string;
  /** The package's plinth.sig: its text (preferred: checked as strict JSON) or the parsed object. */
  signature?: string | Record<string, unknown>;
  /** The runner's own id, the same across its reconnects: the pool knows a reconnect from a new runner. */
  instance?: string;
}

export interface RegisterResult {
  id: string;
  version: string;
  instance: string;
  trust: 'trusted' | 'untrusted' | 'unchecked';
}

export interface InitializeParams {
  instanceId: string;
  /** After validation against the manifest's configSchema (defaults filled in). */
  config: Record<string, Json>;
  /** Values of the granted env names (ctx.env is synchronous in the SDK); null: not set on the host. */
  env: Record<string, string | null>;
  limits: { callTimeoutMs: number; concurrency: number };
  stages: string[];
}

export interface ExecuteParams {
  stage: string;
  input: Json;
  timeoutMs: number;
  traceId: string;
  runId?: string;
}

export interface ExecuteResult {
  output: Json;
}

export interface HandleEventParams {
  event: DeliveredEvent;
  timeoutMs: number;
}

export interface HealthCheckResult {
  healthy: boolean;
  detail?: string;
}

export interface CtxParams {
  op: ContextOp;
}

/** A ctx op's value; `value` absent means the op returned nothing (undefined). */
export interface CtxResult {
  value?: Json;
}
