// The isolate runtime's wire contract, one file for both sides (STYLE.md: VS Code keeps its RPC contract in one
// protocol file). Host and sandbox process speak JSON-RPC 2.0 through the Peer of ../link (DESIGN.md §4: one
// protocol for everything outside the host process), in length-prefixed frames (../link/frames.ts) over a pipe
// of their own (fd 4 of the sandbox process; its IPC channel is only its lifeline), so a remote runner can later
// serve the same methods over the same framing.
//
//   host → process  requests:      load, dispose, stats, rss, integrity
//                   raw requests:  invoke (the InvokeParams envelope + the input's JSON text as the raw payload)
//                   notifications: abort
//   process → host  requests:      ctx (a ContextOp to check and perform)
//                   raw responses: to invoke (InvokeReply + the result's JSON text as the raw payload)
//                   notifications: ready, exit (an isolate died on its own: watchdog, memory limit)
//
// One channel keeps them in order: an isolate's exit notice arrives before the failed replies of its calls, and
// a call's ctx ops before its result. A stage's input is serialised once by the host and parsed once, inside the
// isolate; its result is serialised once inside the isolate and parsed once, by the host (which then checks it
// against the output schema: nothing the sandbox says about its own output is trusted).
//
// Erasable TypeScript only: the sandbox process runs this file by Node's type stripping.
import type { ContextOp, SandboxExit, SandboxSpec } from '../types.ts';
import type { ErrorCode } from '../../errors.ts';
import type { Json } from '../../sdk/index.ts';

/** Default cap of a value leaving an isolate (a stage result as JSON text, in UTF-16 code units). */
export const DEFAULT_MAX_RESULT_BYTES = 8 * 1024 * 1024;
/** Cap of one ctx op leaving an isolate: ctx.fs writes may carry up to the policy's MAX_TEXT_BYTES of text. */
export const MAX_REQUEST_CHARS = 17 * 1024 * 1024;
/** ivm refuses memory limits below 8 MB. */
export const MIN_MEMORY_MB = 8;

// isolated-vm counts the external strings it creates for call arguments and results against memoryLimit, and
// under load they pile up until the isolate's next GC: an echo stage at 64 calls in flight with a 1.7 KB payload
// showed 13 MB of heap but 22 MB of external strings, and was killed at a 32 MB limit. The declared memoryMb is
// for the extension's own data; this headroom is for those transient copies. The RSS watchdog stays the hard wall.
export const ARGUMENT_HEADROOM_MB = 32;

/** The heap limit isolated-vm enforces for an isolate declaring `memoryMb`: what it may legitimately use. */
export function isolateHeapLimitMb(memoryMb: number): number {
  return Math.max(MIN_MEMORY_MB, Math.round(memoryMb)) + ARGUMENT_HEADROOM_MB;
}

// The sandbox process's own V8 and allocator settings. Measured at 64 calls in flight (echo isolate, 1.7 KB
// payload, 200 000 calls): with Node's defaults its RSS crept to 310 MB and past the default wall while the
// isolate's heap stayed under 12 MB. Two causes: V8 sized the process's young generation to its default (heap
// total 137 MB for 15-50 MB in use), and the external strings isolated-vm makes for every argument and result
// (freed only when the process's heap is collected) piled up between the rare collections (external memory up to
// 173 MB); glibc gave each isolate thread an allocator arena of its own. A 4 MB semi-space (a scavenge every few
// hundred calls frees the strings of finished calls) and two malloc arenas keep it flat at 165-180 MB; strings
// that were promoted anyway are freed by a full collection once external memory passes EXTERNAL_GC_MB
// (process.ts; never --expose-gc here: V8 would put `gc` in every isolate's global scope too).
export const PROCESS_EXEC_ARGV = ['--max-semi-space-size=4'];
/** External memory (mostly result strings) past which the sandbox process collects in full; checked that often. */
export const EXTERNAL_GC_MB = 48;
export const EXTERNAL_CHECK_MS = 250;
export const PROCESS_ENV = { MALLOC_ARENA_MAX: '2' };

export interface LoadParams {
  spec: SandboxSpec;
  maxResultBytes: number;
  /** Values of the env names the host's ContextHandler granted at start (ctx.env is synchronous, as in the SDK). */
  env: Record<string, string | null>;
}

export interface LoadResult {
  /** Isolate CPU time used by loading, initialize() and start(), in ms. */
  cpuMs: number;
}

export type InvokeKind = 'initialize' | 'start' | 'stage' | 'event' | 'health' | 'stop';

export interface InvokeParams {
  instanceId: string;
  callId: number;
  kind: InvokeKind;
  /** Stage name for kind 'stage'. */
  name?: string;
  timeoutMs: number;
  /** CPU time the isolate may use while this call is pending. */
  cpuLimitMs: number;
  runId?: string;
  traceId?: string;
}

/** Method name of the raw invoke request; its JSON-RPC id is a string (the Peer's own ids are numbers). */
export const INVOKE_METHOD = 'invoke';

/** The envelope of a successful raw invoke reply; the value's JSON text is the frame's payload (none: null). */
export interface InvokeReply {
  absent: boolean;
  cpuMs: number;
  wallMs: number;
}

/**
 * Caps of the frames the host accepts from the sandbox process (bytes; UTF-8 takes up to 3 bytes per UTF-16 code
 * unit): envelopes carry ctx ops (at most MAX_REQUEST_CHARS of JSON text each), payloads results (maxResultBytes).
 */
export function frameCaps(maxResultChars: number): { maxEnvelopeBytes: number; maxPayloadBytes: number } {
  return { maxEnvelopeBytes: 3 * MAX_REQUEST_CHARS + 65536, maxPayloadBytes: 3 * maxResultChars };
}

/** Largest stage input (JSON text, code units) the host sends into a sandbox process; a larger one is refused. */
export const MAX_INPUT_CHARS = MAX_REQUEST_CHARS;

/**
 * Caps of the frames the sandbox process accepts from the host: ctx replies (a text read of up to the policy's
 * limit, whose JSON escapes take up to 6 characters per character) and stage inputs (MAX_INPUT_CHARS).
 */
export const PROCESS_FRAME_CAPS = { maxEnvelopeBytes: 6 * MAX_REQUEST_CHARS + 65536, maxPayloadBytes: 3 * MAX_INPUT_CHARS };

export interface InvokeResult {
  /** The value, parsed from the JSON text the isolate produced (undefined became null). */
  value: Json;
  /** The extension does not define the hook (handleEvent, healthCheck, stop, ...). */
  absent: boolean;
  cpuMs: number;
  wallMs: number;
}

export interface AbortParams {
  instanceId: string;
  callId: number;
}

export interface DisposeParams {
  instanceId: string;
}

export interface CtxParams {
  instanceId: string;
  op: ContextOp;
}

/** A ctx op's outcome as plain data: the host never throws its own Error objects (or stacks) over the link. */
export type CtxResult = { ok: true; value: Json | null; undefined?: boolean } | { ok: false; error: { code: string; name: string; message: string; hint?: string } };

export interface StatsResult {
  pid: number;
  rssBytes: number;
  /** The process's own V8 heap (not the isolates'), and the external memory (strings, buffers) it holds. */
  heapTotalBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  isolates: Array<{ instanceId: string; id: string; heapBytes: number; externalBytes: number; cpuMs: number }>;
}

export interface ExitParams {
  instanceId: string;
  reason: SandboxExit['reason'];
  code: ErrorCode;
  detail: string;
  /** The call whose watchdog fired: it fails with `code`; the guest's other calls with SANDBOX_CRASHED. */
  triggerCallId?: number;
}
