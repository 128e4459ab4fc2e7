// @ts-check
// Runs inside each piscina worker thread of one extension (DESIGN.md §4, `worker` runtime). On load it imports the
// extension's main module and runs initialize(config, ctx) and start(ctx) once for this thread; then it serves the
// lifecycle tasks piscina hands it and the calls that arrive on its port (protocol.ts). The ctx it hands the extension is frozen and does nothing itself: every op is
// sent to the host's ContextHandler over this thread's private MessagePort and answered there (src/policy decides).
// Plain JavaScript with JSDoc types (checked by tsc): a TypeScript entry would load Node's type stripper into every
// thread, about 11 MB of RSS each.
import { MessageChannel, parentPort, receiveMessageOnPort, threadId, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';

/** @typedef {import('./protocol.ts').CallMessage} CallMessage */
/** @typedef {import('./protocol.ts').CtxHello} CtxHello */
/** @typedef {import('./protocol.ts').HostMessage} HostMessage */
/** @typedef {import('./protocol.ts').Task} Task */
/** @typedef {import('./protocol.ts').TaskResult} TaskResult */
/** @typedef {import('./protocol.ts').ThreadData} ThreadData */
/** @typedef {import('./protocol.ts').ThreadMessage} ThreadMessage */
/** @typedef {import('./protocol.ts').WireError} WireError */
/** @typedef {import('../types.ts').ContextOp} ContextOp */
/** @typedef {import('../../sdk/index.ts').Extension} Extension */
/** @typedef {import('../../sdk/index.ts').ExtensionContext} ExtensionContext */
/** @typedef {import('../../sdk/index.ts').HealthResult} HealthResult */
/** @typedef {import('../../sdk/index.ts').Json} Json */
/** @typedef {import('../../sdk/index.ts').StageContext} StageContext */
/** @typedef {{ method?: string; headers?: Record<string, string>; body?: string }} FetchInit */
/** @typedef {{ resolve: (value: Json | undefined) => void; reject: (err: Error) => void; error: Error }} Waiting */
/** @typedef {{ ok: true; ext: Extension } | { ok: false; error: WireError }} Loaded */

// eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- workerData is `any`; the JSDoc cast types it
const data = /** @type {ThreadData} */ (workerData);

// --- ctx channel ------------------------------------------------------------------------------------------

const channel = new MessageChannel();
const syncChannel = new MessageChannel();
const flag = new Int32Array(new SharedArrayBuffer(4));
const port = channel.port1;
const syncPort = syncChannel.port1;
/** @type {CtxHello} */
const hello = { kind: 'plinth-ctx-hello', instanceId: data.instanceId, threadId, port: channel.port2, syncPort: syncChannel.port2, flag };
/** @type {NonNullable<typeof parentPort>} */ (parentPort).postMessage(hello, [channel.port2, syncChannel.port2]);

/** A waiting op's promise callbacks, and an Error made when the extension called ctx (so failures carry its stack). */
/** @type {Map<number, Waiting>} */
const waiting = new Map();
/** Errors that came from the host's ContextHandler: only these may keep a PLINTH_ERR_* code when they escape a stage. */
/** @type {WeakSet<Error>} */
const ctxErrors = new WeakSet();
/** @type {Map<number, AbortController>} */
const controllers = new Map();
let nextId = 1;

/**
 * @param {Error} error
 * @param {Extract<HostMessage, { kind: 'reply'; ok: false }>['error']} reply
 * @returns {Error}
 */
function failure(error, reply) {
  error.message = reply.message;
  if (reply.name) error.name = reply.name;
  Object.assign(error, { code: reply.code, ...(reply.hint ? { hint: reply.hint } : {}) });
  ctxErrors.add(error);
  return error;
}

port.on('message', (/** @type {HostMessage | CallMessage[]} */ message) => {
  // The calls the host dispatched in one tick arrive together.
  if (Array.isArray(message)) {
    for (const m of message) void answer(m);
    return;
  }
  if (message.kind === 'call' || message.kind === 'event') {
    void answer(message);
    return;
  }
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

/**
 * @param {ContextOp} op
 * @param {number} id
 * @param {boolean} sync
 */
function send(op, id, sync) {
  /** @type {ThreadMessage} */
  const message = { kind: 'op', id, op, sync };
  port.postMessage(message);
}

/**
 * @param {ContextOp} op
 * @param {Function} caller the frame the captured stack starts below
 * @returns {Promise<Json | undefined>}
 */
function request(op, caller) {
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

/**
 * A ctx op the SDK makes synchronous (env): the thread blocks until the host answers, bounded by syncTimeoutMs.
 * @param {ContextOp} op
 * @param {Function} caller
 * @returns {Json | undefined}
 */
function requestSync(op, caller) {
  const error = new Error(op.op);
  Error.captureStackTrace(error, caller);
  const id = nextId++;
  Atomics.store(flag, 0, 0);
  send(op, id, true);
  const deadline = Date.now() + data.syncTimeoutMs;
  for (;;) {
    /** @type {{ message: HostMessage } | undefined} */
    const entry = receiveMessageOnPort(syncPort);
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

/**
 * JSON text of a value, refusing what JSON would silently drop or mangle into something else.
 * @param {unknown} value
 * @param {string} what
 * @returns {string}
 */
function jsonText(value, what) {
  return JSON.stringify(value === undefined ? null : value, function (key, /** @type {unknown} */ v) {
    const t = typeof v;
    if (t === 'function' || t === 'symbol' || t === 'bigint') {
      throw new TypeError(`${what} is not JSON-compatible: ${key === '' ? 'the value' : `"${key}"`} is a ${t}`);
    }
    return v;
  });
}

/**
 * True when `value` is only plain objects, plain arrays and primitives (no function, symbol, bigint, toJSON,
 * class instance, nothing nested past 256 levels): JSON.stringify alone then writes exactly what jsonText would,
 * without calling a replacer on every value (issue 14: the replacer was a sixth of a thread's time per call).
 * @param {unknown} value
 * @param {number} depth
 * @returns {boolean}
 */
function simple(value, depth) {
  if (value === null) return true;
  const t = typeof value;
  if (t === 'string' || t === 'number' || t === 'boolean' || t === 'undefined') return true;
  if (t !== 'object' || depth > 256) return false;
  const proto = /** @type {unknown} */ (Object.getPrototypeOf(value));
  if (proto === Array.prototype) {
    const list = /** @type {unknown[]} */ (value);
    for (let i = 0; i < list.length; i++) if (!simple(list[i], depth + 1)) return false;
    return true;
  }
  if (proto !== Object.prototype && proto !== null) return false;
  const record = /** @type {Record<string, unknown>} */ (value);
  for (const key in record) if (!simple(record[key], depth + 1)) return false;
  return true;
}

/**
 * @param {unknown} value
 * @param {string} what
 * @returns {Json}
 */
function jsonValue(value, what) {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-return -- JSON.parse is `any`; the JSDoc cast types it
  return /** @type {Json} */ (JSON.parse(jsonText(value, what)));
}

// --- the extension's ctx --------------------------------------------------------------------------------

/** Log lines not yet acknowledged by the host: a task's answer waits for them, so a call's logs arrive first. */
/** @type {Set<Promise<unknown>>} */
const unacknowledgedLogs = new Set();

/** @param {'debug' | 'info' | 'warn' | 'error'} level */
const log = (level) =>
  /**
   * @param {string} message
   * @param {Record<string, Json>} [fields]
   */
  function logLine(message, fields) {
    // Not awaited by the extension (like console.log); fields must be JSON.
    /** @type {ContextOp} */
    const op = { op: 'log', level, message: String(message), ...(fields === undefined ? {} : { fields: /** @type {Record<string, Json>} */ (jsonValue(fields, 'log fields')) }) };
    const acked = request(op, logLine).catch(() => undefined);
    unacknowledgedLogs.add(acked);
    void acked.then(() => unacknowledgedLogs.delete(acked));
  };

// Named functions, so each can be the cut-off point of the stack captured for its errors.
/** @param {string} path @returns {Promise<string>} */
async function readText(path) {
  return /** @type {string} */ (await request({ op: 'fs.readText', path }, readText));
}
/** @param {string} path @param {string} text @returns {Promise<void>} */
async function writeText(path, text) {
  await request({ op: 'fs.writeText', path, text }, writeText);
}
/** @param {string} path @param {string} text @returns {Promise<void>} */
async function appendText(path, text) {
  await request({ op: 'fs.appendText', path, text }, appendText);
}
/** @param {string} key @returns {Promise<Json | undefined>} */
async function kvGet(key) {
  return request({ op: 'kv.get', key }, kvGet);
}
/** @param {string} key @param {Json} value @returns {Promise<void>} */
async function kvSet(key, value) {
  await request({ op: 'kv.set', key, value: jsonValue(value, 'a kv value') }, kvSet);
}
/** @param {string} key @returns {Promise<boolean>} */
async function kvDelete(key) {
  return (await request({ op: 'kv.delete', key }, kvDelete)) === true;
}
/** @param {string} topic @param {Json} payload @returns {Promise<void>} */
async function emit(topic, payload) {
  await request({ op: 'emit', topic, payload: jsonValue(payload, 'an event payload') }, emit);
}
/**
 * @param {string} url
 * @param {FetchInit} [init]
 * @returns {Promise<{ status: number; headers: Record<string, string>; text: string }>}
 */
async function fetchVia(url, init) {
  const res = await request({ op: 'fetch', url: String(url), ...(init === undefined ? {} : { init: /** @type {FetchInit} */ (jsonValue(init, 'fetch init')) }) }, fetchVia);
  return /** @type {{ status: number; headers: Record<string, string>; text: string }} */ (res);
}
/** @param {string} name @returns {string | undefined} */
function env(name) {
  const value = requestSync({ op: 'env', name: String(name) }, env);
  return typeof value === 'string' ? value : undefined;
}

/** @type {ExtensionContext} */
const baseCtx = Object.freeze({
  extension: Object.freeze({ id: data.id, version: data.version }),
  log: Object.freeze({ debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }),
  fs: Object.freeze({ readText, writeText, appendText }),
  kv: Object.freeze({ get: kvGet, set: kvSet, delete: kvDelete }),
  emit,
  fetch: fetchVia,
  env,
});

// --- console and standard output --------------------------------------------------------------------------

// Whatever the extension prints is a line of the host's log under its id, never the host's stdout (a worker
// thread's stdout is the host process's, where `plinth call --json` writes its result). console methods keep
// their level; anything else written to process.stdout / process.stderr (console.dir, table, a raw write) is
// `info` / `warn`. Formatting is util.format's, as in Node.
/** @type {Record<string, 'debug' | 'info' | 'warn' | 'error'>} */
const CONSOLE_LEVELS = { log: 'info', info: 'info', debug: 'debug', trace: 'debug', warn: 'warn', error: 'error' };
for (const [method, level] of Object.entries(CONSOLE_LEVELS)) {
  const line = log(level);
  Object.defineProperty(console, method, {
    value: (/** @type {unknown[]} */ ...args) => line(format(...args).slice(0, 8192), { console: method }),
    writable: true,
    configurable: true,
  });
}
/**
 * @param {'info' | 'warn'} level
 * @param {string} stream
 */
function streamToLog(level, stream) {
  const line = log(level);
  /**
   * @param {unknown} chunk
   * @param {unknown} [encoding]
   * @param {unknown} [callback]
   */
  return function write(chunk, encoding, callback) {
    const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) || chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : String(chunk);
    const trimmed = text.endsWith('\n') ? text.slice(0, -1) : text;
    if (trimmed !== '') line(trimmed.slice(0, 8192), { console: stream });
    const done = /** @type {(() => void) | undefined} */ (typeof encoding === 'function' ? encoding : typeof callback === 'function' ? callback : undefined);
    if (done) process.nextTick(done);
    return true;
  };
}
process.stdout.write = /** @type {typeof process.stdout.write} */ (streamToLog('info', 'stdout'));
process.stderr.write = /** @type {typeof process.stderr.write} */ (streamToLog('warn', 'stderr'));

// --- loading the extension, once per thread ---------------------------------------------------------------

/**
 * @param {unknown} err
 * @param {WireError['code']} code
 * @param {string} context
 * @returns {WireError}
 */
function wireError(err, code, context) {
  try {
    if (err instanceof Error) {
      const own = /** @type {{ code?: unknown }} */ (err).code;
      const passThrough = ctxErrors.has(err) && (own === 'PLINTH_ERR_PERMISSION_DENIED' || own === 'PLINTH_ERR_RESULT_TOO_LARGE');
      const hint = /** @type {{ hint?: unknown }} */ (err).hint;
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

/** @returns {Promise<Loaded>} */
async function load() {
  /** @type {Extension} */
  let ext;
  try {
    // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- import() is `any`; the JSDoc cast types it
    const mod = /** @type {{ default?: unknown }} */ (await import(pathToFileURL(data.mainPath).href));
    const candidate = mod.default ?? mod;
    if (typeof candidate !== 'object' || candidate === null) throw new TypeError(`${data.mainPath} has no default export of the extension shape ({ initialize, start, stages, … })`);
    ext = /** @type {Extension} */ (candidate);
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
/** The load's outcome once known: calls arrive only after `ready`, so they never wait for it. */
/** @type {Loaded | undefined} */
let loadedNow;
void loading.then((l) => (loadedNow = l));

// --- serving lifecycle tasks (piscina) ---------------------------------------------------------------------------------------

/**
 * @param {unknown} value
 * @param {string} what
 * @returns {TaskResult}
 */
function ok(value, what) {
  /** @type {string} */
  let json;
  try {
    json = simple(value, 0) ? JSON.stringify(value === undefined ? null : value) : jsonText(value, what);
  } catch (err) {
    // Not the extension's stack: the refusal comes from jsonText.
    return { ok: false, error: { code: 'PLINTH_ERR_STAGE_OUTPUT_INVALID', message: err instanceof Error ? err.message : String(err), hint: 'return plain JSON: objects, arrays, strings, finite numbers, booleans, null' } };
  }
  // Measured here, in the thread, so a runaway result never reaches the host's heap.
  const max = data.maxResultBytes;
  const bytes = json.length <= max / 3 ? json.length : Buffer.byteLength(json);
  if (bytes > max) {
    return { ok: false, error: { code: 'PLINTH_ERR_RESULT_TOO_LARGE', message: `${what} is ${bytes} bytes of JSON; at most ${max} may cross the sandbox boundary` } };
  }
  return { ok: true, json };
}

/**
 * @param {unknown} value
 * @returns {HealthResult}
 */
function normaliseHealth(value) {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'object' && value !== null && typeof (/** @type {{ healthy?: unknown }} */ (value).healthy) === 'boolean') {
    const { healthy, detail } = /** @type {{ healthy: boolean; detail?: unknown }} */ (value);
    return typeof detail === 'string' ? { healthy, detail } : { healthy };
  }
  return { healthy: false, detail: `healthCheck() returned ${typeof value}, not a boolean or { healthy }` };
}

/**
 * @template T
 * @param {number} callId
 * @param {(signal: AbortSignal) => Promise<T>} run
 * @returns {Promise<T>}
 */
async function withSignal(callId, run) {
  const controller = new AbortController();
  controllers.set(callId, controller);
  try {
    return await run(controller.signal);
  } finally {
    controllers.delete(callId);
  }
}

/**
 * @param {Task} task
 * @returns {Promise<TaskResult>}
 */
async function handle(task) {
  const result = await serve(task);
  if (unacknowledgedLogs.size > 0) await Promise.all(unacknowledgedLogs);
  return result;
}

/**
 * @param {Task} task
 * @returns {Promise<TaskResult>}
 */
async function serve(task) {
  const loaded = loadedNow ?? (await loading);
  if (task.type === 'ready') return loaded.ok ? { ok: true, json: 'null' } : { ok: false, error: loaded.error };
  if (!loaded.ok) return { ok: false, error: loaded.error };
  const { ext } = loaded;
  switch (task.type) {
    case 'health': {
      if (typeof ext.healthCheck !== 'function') return { ok: true, json: 'true' };
      // Cancelled by the host at the probe's timeout: the task ends then, so a hung healthCheck() never keeps
      // holding the thread's probe slot (issue 8). Code that blocks the thread is ended with it by the host.
      return withSignal(task.callId, async (signal) => {
        /** @type {HealthResult} */
        let result;
        try {
          /** @type {Promise<never>} */
          const cancelled = new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason instanceof Error ? signal.reason : new Error('cancelled')), { once: true }));
          result = normaliseHealth(await Promise.race([ext.healthCheck?.(Object.freeze({ ...baseCtx, signal })), cancelled]));
        } catch (err) {
          if (signal.aborted) return { ok: false, error: wireError(signal.reason, 'PLINTH_ERR_STAGE_TIMEOUT', 'healthCheck() was cancelled') };
          const e = wireError(err, 'PLINTH_ERR_STAGE_FAILED', 'healthCheck() threw');
          result = { healthy: false, detail: e.message };
        }
        return { ok: true, json: JSON.stringify(result) };
      });
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

// --- serving calls (over the port) -----------------------------------------------------------------------

/**
 * Runs a stage call or an event delivery and posts its answer on the port, after its log lines are acknowledged
 * (so a call's logs reach the host before its result).
 * @param {CallMessage} message
 */
async function answer(message) {
  /** @type {TaskResult} */
  let result;
  try {
    result = await serveCall(message);
  } catch (err) {
    result = { ok: false, error: wireError(err, 'PLINTH_ERR_STAGE_FAILED', 'the call failed in its thread') };
  }
  if (unacknowledgedLogs.size > 0) await Promise.all(unacknowledgedLogs);
  /** @type {ThreadMessage} */
  const done = result.ok ? { kind: 'done', callId: message.callId, ok: true, json: result.json } : { kind: 'done', callId: message.callId, ok: false, error: result.error };
  const queued = answered.push(done);
  if (queued === 1) process.nextTick(flushAnswers);
  else if (queued >= data.maxBatch) flushAnswers();
}

/** Answers of this tick, posted together at its end (one message per tick instead of one per call), at most maxBatch at a time. */
/** @type {ThreadMessage[]} */
let answered = [];

function flushAnswers() {
  if (answered.length === 0) return; // posted already, as a full batch
  const batch = answered;
  answered = [];
  port.postMessage(batch.length === 1 ? batch[0] : batch);
}

/**
 * @param {CallMessage} message
 * @returns {Promise<TaskResult>}
 */
async function serveCall(message) {
  const loaded = loadedNow ?? (await loading);
  if (!loaded.ok) return { ok: false, error: loaded.error };
  const { ext } = loaded;
  if (message.kind === 'call') {
    const stage = message.stage;
    const stages = ext.stages;
    const fn = data.stages.includes(stage) && stages && Object.hasOwn(stages, stage) ? stages[stage] : undefined;
    if (typeof fn !== 'function') {
      return { ok: false, error: { code: 'PLINTH_ERR_STAGE_UNKNOWN', message: `it declares stage "${stage}" but its module does not export it under stages` } };
    }
    // Checked to be plain JSON data by the host before it was sent.
    // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- JSON.parse is `any`; the JSDoc cast types it
    const input = /** @type {Json} */ (JSON.parse(message.input));
    return withSignal(message.callId, async (signal) => {
      /** @type {StageContext} */
      const ctx = Object.freeze({ ...baseCtx, stage, signal, runId: message.runId, traceId: message.traceId });
      try {
        return ok(await fn.call(stages, input, ctx), `the result of stage "${stage}"`);
      } catch (err) {
        return { ok: false, error: wireError(err, 'PLINTH_ERR_STAGE_FAILED', `stage "${stage}" threw`) };
      }
    });
  }
  if (typeof ext.handleEvent !== 'function') return { ok: true, json: 'null' };
  // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- JSON.parse is `any`; the JSDoc cast types it
  const event = /** @type {import("../../sdk/index.ts").DeliveredEvent} */ (JSON.parse(message.event));
  return withSignal(message.callId, async (signal) => {
    try {
      await ext.handleEvent?.(event, Object.freeze({ ...baseCtx, signal }));
      return { ok: true, json: 'null' };
    } catch (err) {
      return { ok: false, error: wireError(err, 'PLINTH_ERR_STAGE_FAILED', `handleEvent(${event.topic}) threw`) };
    }
  });
}

// piscina accepts a module whose export is a promise of the handler: the thread is ready once the extension
// has loaded (or failed to, which every task then reports).
export default loading.then(() => handle);
