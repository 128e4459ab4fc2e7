// The worker runtime's wire contract, one file for both sides (STYLE.md: VS Code keeps its RPC contract in one
// protocol file; Temporal tags messages to a thread with `type`). Two channels cross the thread boundary:
//   1. piscina tasks for the thread's lifecycle (host → thread, answered by the task's result): `Task` in,
//      `TaskResult` out — ready, health, stop;
//   2. a private MessagePort per thread for everything on the call path (issue 14: one piscina task per call cost
//      a third of the throughput): stage calls and event deliveries (host → thread, inputs as JSON text), their
//      answers (thread → host, results as JSON text), aborts (host → thread), and ctx ops (thread → host,
//      answered on the same port). The thread creates the port and hands it over once, in a `CtxHello` via
//      parentPort.
// Everything here is erasable TypeScript plus plain functions: the thread runs it by Node's type stripping.
import type { MessagePort } from 'node:worker_threads';
import type { ContextOp } from '../types.ts';
import type { Json } from '../../sdk/index.ts';

/** Largest stage result (as JSON text) a thread may hand back; past it the call fails RESULT_TOO_LARGE. */
export const MAX_RESULT_BYTES = 8 * 1024 * 1024;

/**
 * Calls (host → thread) and answers (thread → host) posted in one message at most. Batching a tick's messages
 * saves a postMessage per call (issue 12), but one batch of every call in flight turns the two threads into a
 * ping-pong: the thread waits while the host encodes the whole batch, the host while the thread answers all of it
 * (measured at 64 in flight: 0.9x raw piscina uncapped, 1.4-1.6x with batches of 4-16, issue 14).
 */
export const MAX_BATCH = 16;

/** What the thread is given in piscina's workerData: plain data only (a MessagePort cannot travel there). */
export interface ThreadData {
  instanceId: string;
  id: string;
  version: string;
  mainPath: string;
  config: Record<string, Json>;
  /** Stage names the manifest declares. */
  stages: string[];
  /** How long a synchronous ctx op (env) may block the thread waiting for the host. */
  syncTimeoutMs: number;
  /** Cap of a result's JSON, measured in the thread. */
  maxResultBytes: number;
  /** Answers posted in one message at most (MAX_BATCH). */
  maxBatch: number;
}

/** piscina tasks: the thread's lifecycle. */
export type Task = { type: 'ready' } | { type: 'health'; callId: number } | { type: 'stop'; callId: number };

/**
 * Host → thread over the port: a stage call or an event delivery. `input` / `event` are JSON text, checked to be
 * plain JSON data by the host before sending (plain-json.ts), parsed once in the thread.
 */
export type CallMessage =
  | { kind: 'call'; callId: number; stage: string; input: string; runId: string | undefined; traceId: string }
  | { kind: 'event'; callId: number; event: string };

/** Codes the thread itself may report; the host maps them onto PlinthErrors. */
export type ThreadErrorCode =
  | 'PLINTH_ERR_STAGE_FAILED'
  | 'PLINTH_ERR_STAGE_UNKNOWN'
  | 'PLINTH_ERR_STAGE_TIMEOUT'
  | 'PLINTH_ERR_STAGE_OUTPUT_INVALID'
  | 'PLINTH_ERR_EXTENSION_LOAD_FAILED'
  | 'PLINTH_ERR_RESULT_TOO_LARGE'
  | 'PLINTH_ERR_PERMISSION_DENIED';

export interface WireError {
  code: ThreadErrorCode;
  message: string;
  /** The extension's own stack, when its code threw. */
  stack?: string;
  hint?: string;
}

/** A task's answer. `json` is the result as JSON text (checked and measured in the thread, parsed by the host). */
export type TaskResult = { ok: true; json: string } | { ok: false; error: WireError };

/** Thread → host, once per thread, over parentPort (surfaces as piscina's 'message' event). */
export interface CtxHello {
  kind: 'plinth-ctx-hello';
  instanceId: string;
  threadId: number;
  port: MessagePort;
  /** Replies to synchronous ops go here, so the thread can read exactly them with receiveMessageOnPort. */
  syncPort: MessagePort;
  /** Int32Array over a SharedArrayBuffer: the host sets [0] to 1 and notifies when a sync reply is posted. */
  flag: Int32Array;
}

/**
 * Thread → host over the port: a ctx op, or the answer to a CallMessage (sent once its log lines are acknowledged).
 * The answers of one tick travel as one array; calls host → thread likewise (a CallMessage[]).
 */
export type ThreadMessage = { kind: 'op'; id: number; op: ContextOp; sync: boolean } | ({ kind: 'done'; callId: number } & TaskResult);

/** How a ctx op failed, as the extension will see it: an Error with `.code` (PLINTH_ERR_* or ENOENT, …). */
export interface CtxFailure {
  message: string;
  code?: string;
  hint?: string;
  name?: string;
}

/** Host → thread over the port (or the sync port for replies to `sync` ops). */
export type HostMessage =
  | CallMessage
  | { kind: 'reply'; id: number; ok: true; value: Json | undefined }
  | { kind: 'reply'; id: number; ok: false; error: CtxFailure }
  | { kind: 'abort'; callId: number; code: 'PLINTH_ERR_STAGE_TIMEOUT' | 'PLINTH_ERR_CANCELLED' | 'PLINTH_ERR_SHUTDOWN'; message: string };

export function isCtxHello(value: unknown, instanceId: string): value is CtxHello {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'plinth-ctx-hello' && (value as { instanceId?: unknown }).instanceId === instanceId;
}
