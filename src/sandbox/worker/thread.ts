// Runs inside each piscina worker thread of one extension (DESIGN.md §4, `worker` runtime). On load it imports the
// extension's main module and runs initialize(config, ctx) and start(ctx) once for this thread; then it serves the
// `type`-tagged tasks of protocol.ts. The ctx it hands the extension is frozen and does nothing itself: every op is
// sent to the host's ContextHandler over this thread's private MessagePort and answered there (grants.ts decides).
// Erasable TypeScript only (Node strips the types when piscina loads this file).
import { MessageChannel, parentPort, receiveMessageOnPort, threadId, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { MAX_RESULT_BYTES } from './protocol.ts';
import type { CtxHello, HostMessage, Task, TaskResult, ThreadData, ThreadMessage, WireError } from './protocol.ts';
import type { ContextOp } from '../types.ts';
import type { Extension, ExtensionContext, HealthResult, Json, StageContext } from '../../sdk/index.ts';

const data = workerData as ThreadData;

// --- ctx channel ------------------------------------------------------------------------------------------

const channel = new MessageChannel();
const syncChannel = new MessageChannel();
const flag = new Int32Array(new SharedArrayBuffer(4));
const port = channel.port1;
const syncPort = syncChannel.port1;
const hello: CtxHello = { kind: 'plinth-ctx-hello', instanceId: data.instanceId, threadId, port: channel.port2, syncPort: syncChannel.port2, flag };
parentPort!.postMessage(hello, [channel.port2, syncChannel.port2]);

interface Waiting {
  resolve: (value: Json | undefined) => void;
  reject: (err: Error) => void;
  /** Made when the extension called ctx, so a failure carries the extension's own stack. */
  error: Error;
}
const waiting = new Map<number, Waiting>();
/** Errors that came from the host's ContextHandler: only these may keep a PLINTH_ERR_* code when they escape a stage. */
const ctxErrors = new WeakSet<Error>();
const controllers = new Map<number, AbortController>();
let nextId = 1;

function failure(error: Error, reply: Extract<HostMessage, { kind: 'reply'; ok: false }>['error']): Error {
  error.message = reply.message;
  if (reply.name) error.name = reply.name;
  Object.assign(error, { code: reply.code, ...(reply.hint ? { hint: reply.hint } : {}) });
  ctxErrors.add(error);
  return error;
}

port.on('message', (message: HostMessage) => {
  if (message.kind === 'abort') {
    const reason = Object.assign(new Error(message.message), { code: message.code });
    controllers.get(message.callId)?.abort(reason);
    return;
  }
  const w = waiting.get(message.id);
  if (!w) return;
  waiting.delete(message.id);
  if (message.ok) w.resolve(message.value);
  else w.reject(failure(w.error, message.error));
});
port.unref();

function send(op: ContextOp, id: number, sync: boolean): void {
  port.postMessage({ kind: 'op', id, op, sync } satisfies ThreadMessage);
}

function request(op: ContextOp, caller: (...args: never[]) => unknown): Promise<Json | undefined> {
  const error = new Error(op.op);
  Error.captureStackTrace(error, caller);
  return new Promise((resolve, reject) => {
    const id = nextId++;
    waiting.set(id, { resolve, reject, error });
    try {
      send(op, id, false);
    } catch (err) {
      waiting.delete(id);
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** A ctx op the SDK makes synchronous (env): the thread blocks until the host answers, bounded by syncTimeoutMs. */
function requestSync(op: ContextOp, caller: (...args: never[]) => unknown): Json | undefined {
  const error = new Error(op.op);
  Error.captureStackTrace(error, caller);
  const id = nextId++;
  Atomics.store(flag, 0, 0);
  send(op, id, true);
  const deadline = Date.now() + data.syncTimeoutMs;
  for (;;) {
    const entry: { message: HostMessage } | undefined = receiveMessageOnPort(syncPort);
    if (entry) {
      const reply = entry.message;
      // A late reply to an earlier op that timed out is skipped.
      if (reply.kind !== 'reply' || reply.id !== id) continue;
      if (reply.ok) return reply.value;
      throw failure(error, reply.error);
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw Object.assign(error, { message: `ctx ${op.op}: the host did not answer within ${data.syncTimeoutMs} ms`, code: 'ETIMEDOUT' });
    }
    Atomics.wait(flag, 0, 0, left);
    Atomics.store(flag, 0, 0);
  }
}

// --- JSON at the boundary ----------------------------------------------------------------------------------

/** JSON text of a value, refusing what JSON would silently drop or mangle into something else. */
function jsonText(value: unknown, what: string): string {
  const text = JSON.stringify(value === undefined ? null : value, function (key, v: unknown) {
    const t = typeof v;
    if (t === 'function' || t === 'symbol' || t === 'bigint') {
      throw new TypeError(`${what} is not JSON-compatible: ${key === '' ? 'the value' : `"${key}"`} is a ${t}`);
    }
    return v;
  });
  return text;
}

function jsonValue(value: unknown, what: string): Json {
  return JSON.parse(jsonText(value, what)) as Json;
}

// --- the extension's ctx --------------------------------------------------------------------------------

/** Log lines not yet acknowledged by the host: a task's answer waits for them, so a call's logs arrive first. */
const unacknowledgedLogs = new Set<Promise<unknown>>();

const log = (level: 'debug' | 'info' | 'warn' | 'error') =>
  function logLine(message: string, fields?: Record<string, Json>): void {
    // Not awaited by the extension (like console.log); fields must be JSON.
    const op: ContextOp = { op: 'log', level, message: String(message), ...(fields === undefined ? {} : { fields: jsonValue(fields, 'log fields') as Record<string, Json> }) };
    const acked = request(op, logLine).catch(() => undefined);
    unacknowledgedLogs.add(acked);
    void acked.then(() => unacknowledgedLogs.delete(acked));
  };

// Named functions, so each can be the cut-off point of the stack captured for its errors.
async function readText(path: string): Promise<string> {
  return (await request({ op: 'fs.readText', path }, readText)) as string;
}
async function writeText(path: string, text: string): Promise<void> {
  await request({ op: 'fs.writeText', path, text }, writeText);
}
async function appendText(path: string, text: string): Promise<void> {
  await request({ op: 'fs.appendText', path, text }, appendText);
}
async function kvGet(key: string): Promise<Json | undefined> {
  return request({ op: 'kv.get', key }, kvGet);
}
async function kvSet(key: string, value: Json): Promise<void> {
  await request({ op: 'kv.set', key, value: jsonValue(value, 'a kv value') }, kvSet);
}
async function kvDelete(key: string): Promise<boolean> {
  return (await request({ op: 'kv.delete', key }, kvDelete)) === true;
}
async function emit(topic: string, payload: Json): Promise<void> {
  await request({ op: 'emit', topic, payload: jsonValue(payload, 'an event payload') }, emit);
}
type FetchInit = { method?: string; headers?: Record<string, string>; body?: string };
async function fetchVia(url: string, init?: FetchInit): Promise<{ status: number; headers: Record<string, string>; text: string }> {
  const res = await request({ op: 'fetch', url: String(url), ...(init === undefined ? {} : { init: jsonValue(init, 'fetch init') as FetchInit }) }, fetchVia);
  return res as { status: number; headers: Record<string, string>; text: string };
}
function env(name: string): string | undefined {
  const value = requestSync({ op: 'env', name: String(name) }, env);
  return typeof value === 'string' ? value : undefined;
}

const baseCtx: ExtensionContext = Object.freeze({
  extension: Object.freeze({ id: data.id, version: data.version }),
  log: Object.freeze({ debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }),
  fs: Object.freeze({ readText, writeText, appendText }),
  kv: Object.freeze({ get: kvGet, set: kvSet, delete: kvDelete }),
  emit,
  fetch: fetchVia,
  env,
});

// --- loading the extension, once per thread ---------------------------------------------------------------

function wireError(err: unknown, code: WireError['code'], context: string): WireError {
  try {
    if (err instanceof Error) {
      const own = (err as { code?: unknown }).code;
      const passThrough = ctxErrors.has(err) && (own === 'PLINTH_ERR_PERMISSION_DENIED' || own === 'PLINTH_ERR_RESULT_TOO_LARGE');
      const hint = (err as { hint?: unknown }).hint;
      return {
        code: passThrough ? own : code,
        message: `${context}: ${err.name}: ${err.message}`,
        ...(typeof err.stack === 'string' ? { stack: err.stack } : {}),
        ...(typeof hint === 'string' ? { hint } : {}),
      };
    }
    return { code, message: `${context}: threw a non-Error value: ${String(err)}` };
  } catch {
    return { code, message: `${context}: threw a value that cannot be described` };
  }
}

type Loaded = { ok: true; ext: Extension } | { ok: false; error: WireError };

async function load(): Promise<Loaded> {
  let ext: Extension;
  try {
    const mod = (await import(pathToFileURL(data.mainPath).href)) as { default?: unknown };
    const candidate = mod.default ?? mod;
    if (typeof candidate !== 'object' || candidate === null) throw new TypeError(`${data.mainPath} has no default export of the extension shape ({ initialize, start, stages, … })`);
    ext = candidate;
  } catch (err) {
    return { ok: false, error: wireError(err, 'PLINTH_ERR_EXTENSION_LOAD_FAILED', `cannot load ${data.mainPath}`) };
  }
  try {
    await ext.initialize?.(structuredClone(data.config), baseCtx);
  } catch (err) {
    return { ok: false, error: wireError(err, 'PLINTH_ERR_EXTENSION_LOAD_FAILED', 'initialize() threw') };
  }
  try {
    await ext.start?.(baseCtx);
  } catch (err) {
    return { ok: false, error: wireError(err, 'PLINTH_ERR_EXTENSION_LOAD_FAILED', 'start() threw') };
  }
  return { ok: true, ext };
}

const loading = load();

// --- serving tasks ---------------------------------------------------------------------------------------

function ok(value: unknown, what: string): TaskResult {
  let json: string;
  try {
    json = jsonText(value, what);
  } catch (err) {
    // Not the extension's stack: the refusal comes from jsonText.
    return { ok: false, error: { code: 'PLINTH_ERR_STAGE_OUTPUT_INVALID', message: err instanceof Error ? err.message : String(err), hint: 'return plain JSON: objects, arrays, strings, finite numbers, booleans, null' } };
  }
  // Measured here, in the thread, so a runaway result never reaches the host's heap.
  const bytes = json.length <= MAX_RESULT_BYTES / 3 ? json.length : Buffer.byteLength(json);
  if (bytes > MAX_RESULT_BYTES) {
    return { ok: false, error: { code: 'PLINTH_ERR_RESULT_TOO_LARGE', message: `${what} is ${bytes} bytes of JSON; at most ${MAX_RESULT_BYTES} may cross the sandbox boundary` } };
  }
  return { ok: true, json };
}

function normaliseHealth(value: unknown): HealthResult {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { healthy?: unknown }).healthy === 'boolean') {
    const { healthy, detail } = value as { healthy: boolean; detail?: unknown };
    return typeof detail === 'string' ? { healthy, detail } : { healthy };
  }
  return { healthy: false, detail: `healthCheck() returned ${typeof value}, not a boolean or { healthy }` };
}

async function withSignal<T>(callId: number, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  controllers.set(callId, controller);
  try {
    return await run(controller.signal);
  } finally {
    controllers.delete(callId);
  }
}

async function handle(task: Task): Promise<TaskResult> {
  const result = await serve(task);
  if (unacknowledgedLogs.size > 0) await Promise.all(unacknowledgedLogs);
  return result;
}

async function serve(task: Task): Promise<TaskResult> {
  const loaded = await loading;
  if (task.type === 'ready') return loaded.ok ? { ok: true, json: 'null' } : { ok: false, error: loaded.error };
  if (!loaded.ok) return { ok: false, error: loaded.error };
  const { ext } = loaded;
  switch (task.type) {
    case 'call': {
      const stages = ext.stages;
      const fn = data.stages.includes(task.stage) && stages && Object.hasOwn(stages, task.stage) ? stages[task.stage] : undefined;
      if (typeof fn !== 'function') {
        return { ok: false, error: { code: 'PLINTH_ERR_STAGE_UNKNOWN', message: `it declares stage "${task.stage}" but its module does not export it under stages` } };
      }
      return withSignal(task.callId, async (signal) => {
        const ctx: StageContext = Object.freeze({ ...baseCtx, stage: task.stage, signal, runId: task.runId, traceId: task.traceId });
        try {
          return ok(await fn.call(stages, task.input, ctx), `the result of stage "${task.stage}"`);
        } catch (err) {
          return { ok: false, error: wireError(err, 'PLINTH_ERR_STAGE_FAILED', `stage "${task.stage}" threw`) };
        }
      });
    }
    case 'event':
      if (typeof ext.handleEvent !== 'function') return { ok: true, json: 'null' };
      return withSignal(task.callId, async (signal) => {
        try {
          await ext.handleEvent!(task.event, Object.freeze({ ...baseCtx, signal }));
          return { ok: true, json: 'null' };
        } catch (err) {
          return { ok: false, error: wireError(err, 'PLINTH_ERR_STAGE_FAILED', `handleEvent(${task.event.topic}) threw`) };
        }
      });
    case 'health': {
      if (typeof ext.healthCheck !== 'function') return { ok: true, json: 'true' };
      let result: HealthResult;
      try {
        result = normaliseHealth(await ext.healthCheck(baseCtx));
      } catch (err) {
        const e = wireError(err, 'PLINTH_ERR_STAGE_FAILED', 'healthCheck() threw');
        result = { healthy: false, detail: e.message };
      }
      return { ok: true, json: JSON.stringify(result) };
    }
    case 'stop':
      try {
        await ext.stop?.(baseCtx);
        return { ok: true, json: 'null' };
      } catch (err) {
        return { ok: false, error: wireError(err, 'PLINTH_ERR_STAGE_FAILED', 'stop() threw') };
      }
  }
}

// piscina accepts a module whose export is a promise of the handler: the thread is ready once the extension
// has loaded (or failed to, which every task then reports).
export default loading.then(() => handle);
