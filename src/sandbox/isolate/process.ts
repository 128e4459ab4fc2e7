// The sandbox process (DESIGN.md §4 `isolate`): forked by the host with --no-node-snapshot, it holds one
// isolated-vm Isolate per extension and answers the host over the JSON-RPC Peer of ../link, in frames over fd 4
// (methods: protocol.ts). Stage inputs arrive as raw JSON text and go into the isolate as they are; results leave
// as the raw JSON text the isolate produced: this process parses neither.
// The host can SIGKILL it at any time; nothing here is persistent.
//
// Settle pattern (never `new ivm.Callback(fn, { async: true })`): the isolate gets two synchronous host functions.
//   hostRequest(callId, opJson) -> request id   the op is forwarded to the host's ContextHandler; when it settles
//                                               we call dispatch('settle', id, ok, json) back into the isolate.
//   hostDone(callId, status, text)              the shim reports a call's outcome (result JSON or error strings).
// Both are plain functions over primitives that never throw.
//
// Walls, because isolated-vm's `timeout` misses code that runs after the guest awaited a host call, promises
// that never settle and uninterruptible built-ins (measured: BigInt('9'.repeat(2e7)) runs 4.4 s past a 200 ms
// timeout; new Array(2 ** 26).fill(1.5) 9.4 s): a watchdog tick here checks every active call's wall-clock
// deadline and the isolate's CPU time, and disposes the isolate past either. When dispose() itself cannot get
// the thread back, the host's own watchdog (deadline + grace, and RSS) kills this whole process.
import ivm from 'isolated-vm';
import { readFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Peer } from '../link/index.ts';
import { FrameLink } from '../link/frames.ts';
import { PlinthError, type ErrorCode } from '../../errors.ts';
import type { ContextOp, SandboxExit, SandboxSpec } from '../types.ts';
import { SHIM_FILENAME, SHIM_SOURCE } from './shim.ts';
import { dynamicImportRefused, moduleImports, packageRoots, resolveImport } from './imports.ts';
import {
  EXTERNAL_CHECK_MS,
  EXTERNAL_GC_MB,
  INVOKE_METHOD,
  MAX_REQUEST_CHARS,
  PROCESS_FRAME_CAPS,
  isolateHeapLimitMb,
  type AbortParams,
  type CtxResult,
  type DisposeParams,
  type ExitParams,
  type InvokeKind,
  type InvokeParams,
  type InvokeReply,
  type LoadParams,
  type LoadResult,
  type StatsResult,
} from './protocol.ts';

const WATCHDOG_TICK_MS = 20;
const MAX_DETAIL = 2048;

/** A call's outcome in this process: the result's JSON text as the isolate produced it (never parsed here). */
interface Outcome extends InvokeReply {
  json: string | undefined;
}

interface ActiveCall {
  callId: number;
  kind: InvokeKind | 'load';
  startedAt: number;
  deadline: number;
  cpuStart: bigint;
  cpuLimit: bigint;
  resolve(result: Outcome): void;
  reject(err: PlinthError): void;
}

interface Guest {
  spec: SandboxSpec;
  isolate: ivm.Isolate;
  dispatch: ivm.Reference<(...args: unknown[]) => unknown> | undefined;
  // A Map, unlike the host's call tables (../link/call-table.ts): with a CallTable here the soak's RSS reached its
  // plateau 70 000 calls later (100 000 instead of 30 000) and failed its flatness check; not understood yet.
  calls: Map<number, ActiveCall>;
  maxResultBytes: number;
  dead: boolean;
  /**
   * isolate.cpuTime when its last call ended (undefined while calls run): the idle CPU budget counts from there.
   * Set by the calls themselves, not by the watchdog's tick: calls that come and go between two ticks (as they
   * do in bursts at 64 in flight) would otherwise have their CPU counted as idle.
   */
  idleCpuFrom?: bigint;
}

// The host's end of the link is fd 4 (a socketpair). Frames from the host are trusted as much as the host; the
// caps only bound what a bug could make this process buffer.
const link = new FrameLink(new Socket({ fd: 4, readable: true, writable: true }), PROCESS_FRAME_CAPS);
const peer = new Peer(link);
const guests = new Map<string, Guest>();
let nextRequestId = 1;
let nextInternalCallId = -1;

function cap(text: string, n = MAX_DETAIL): string {
  return text.length > n ? `${text.slice(0, n)}...[truncated]` : text;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function cpuNow(g: Guest): bigint {
  try {
    return g.isolate.cpuTime;
  } catch {
    return 0n;
  }
}

/** Ends a guest that can no longer be trusted to finish: its calls fail, the host hears why, the isolate goes. */
function kill(g: Guest, cause: 'timeout' | 'cpu' | 'oom' | 'crashed', detail: string, trigger?: ActiveCall): void {
  if (g.dead) return;
  g.dead = true;
  guests.delete(g.spec.instanceId);
  const id = g.spec.id;
  const exit: { reason: SandboxExit['reason']; code: ErrorCode } =
    cause === 'oom'
      ? { reason: 'out-of-memory', code: 'PLINTH_ERR_OUT_OF_MEMORY' }
      : cause === 'crashed'
        ? { reason: 'crashed', code: 'PLINTH_ERR_SANDBOX_CRASHED' }
        : { reason: 'killed', code: cause === 'cpu' ? 'PLINTH_ERR_CPU_LIMIT' : 'PLINTH_ERR_STAGE_TIMEOUT' };
  // The end is announced before any call's reply: a caller woken by its failed call must find the sandbox already
  // dead (and its supervisor restarting it), never send the next call to an isolate that is gone. The host settles
  // the pending calls from this notice; the replies below arrive after and are ignored there.
  const notice: ExitParams = { instanceId: g.spec.instanceId, reason: exit.reason, code: exit.code, detail: cap(detail), ...(trigger ? { triggerCallId: trigger.callId } : {}) };
  peer.notify('exit', notice);
  for (const call of g.calls.values()) {
    const code: ErrorCode = call === trigger || cause === 'oom' ? exit.code : 'PLINTH_ERR_SANDBOX_CRASHED';
    const what = call.kind === 'stage' ? 'the call' : `${call.kind}()`;
    const msg = call === trigger || cause === 'oom' ? `extension ${id}: ${what} was stopped: ${detail}` : `extension ${id}: its isolate was stopped during ${what}: ${detail}`;
    call.reject(new PlinthError(code, msg, { extension: id }));
  }
  g.calls.clear();
  // dispose() off this turn: it may block while the isolate's thread is stuck in uninterruptible code; the host's
  // watchdog ends this process if we never come back.
  setImmediate(() => {
    try {
      g.isolate.dispose();
    } catch {
      // already disposed (e.g. by its memory limit)
    }
  });
}

/** Slack for isolated-vm's own timeout firing a moment before our deadline (it is given the time left). */
const DEADLINE_SLACK_MS = 50;

/**
 * What stopped an isolate, from its state rather than from error text (an extension can throw any message):
 * isolated-vm disposes a live isolate on its own only when it exceeds its memory limit; a rejection at the call's
 * deadline is its timeout; anything else is a crash of isolated-vm.
 */
function ivmCause(g: Guest, call: ActiveCall | undefined): 'oom' | 'timeout' | 'crashed' {
  if (g.isolate.isDisposed) return 'oom';
  if (call && Date.now() >= call.deadline - DEADLINE_SLACK_MS) return 'timeout';
  return 'crashed';
}

/** A rejection from isolated-vm itself (the shim never throws): memory limit, timeout, disposal. */
function onIvmError(g: Guest, err: unknown, call?: ActiveCall): void {
  if (g.dead) return; // we ended it ourselves
  const cause = ivmCause(g, call);
  if (cause === 'oom') kill(g, 'oom', `the isolate exceeded its memory limit of ${g.spec.limits.memoryMb} MB`, call);
  else if (cause === 'timeout') kill(g, 'timeout', 'it ran past its timeout', call);
  else kill(g, 'crashed', `isolated-vm: ${cap(messageOf(err), 500)}`, call);
}

/**
 * CPU an isolate may use with no call in flight (GC, a finaliser) before it is stopped: code gets CPU only in calls.
 * isolated-vm's cpuTime grows while the isolate's thread waits for a core ("CPU time may vary drastically if there
 * is contention for the CPU", its docs): at 100 ms, collecting after a few 4 MB results on a 2-core machine at load
 * 15 tripped it between two calls of a well-behaved stage. 1 s still ends code left running within a second.
 */
const IDLE_CPU_LIMIT_NS = 1_000_000_000n;

function watchdog(): void {
  const now = Date.now();
  for (const g of guests.values()) {
    if (g.dead || !g.dispatch) continue;
    const cpu = cpuNow(g);
    if (g.calls.size === 0) {
      g.idleCpuFrom ??= cpu;
      if (cpu - g.idleCpuFrom > IDLE_CPU_LIMIT_NS) kill(g, 'cpu', `it used more than ${Number(IDLE_CPU_LIMIT_NS / 1_000_000n)} ms of CPU time with no call in flight`);
      continue;
    }
    g.idleCpuFrom = undefined;
    for (const call of g.calls.values()) {
      if (now >= call.deadline) {
        kill(g, 'timeout', `it ran past its timeout of ${call.deadline - call.startedAt} ms`, call);
        break;
      }
      if (cpu - call.cpuStart > call.cpuLimit) {
        kill(g, 'cpu', `it used more than ${Number(call.cpuLimit / 1_000_000n)} ms of CPU time`, call);
        break;
      }
    }
  }
}
setInterval(watchdog, WATCHDOG_TICK_MS);

// The strings isolated-vm hands this process for results are external: their bytes live outside the V8 heap and
// go only when the string is collected. Promoted to the old generation (a call in flight across two scavenges),
// one waits for a full collection, which a small, slowly growing old generation rarely gets: measured at 64 calls
// in flight, external memory grew by the size of every result (171 MB after 100 000 calls, heap steady at 24 MB)
// until the RSS wall killed the process. So the process collects in full when external memory passes a bound.
// `gc` is taken from a throwaway context created while --expose-gc is on, and the flag is off again before any
// isolate exists: with the flag on the command line, V8 would install `gc` in every isolate's context too.
const EXTERNAL_GC_BYTES = EXTERNAL_GC_MB * 1024 * 1024;
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc') as () => void;
v8.setFlagsFromString('--no-expose-gc');
setInterval(() => {
  if (process.memoryUsage().external > EXTERNAL_GC_BYTES) collect();
}, EXTERNAL_CHECK_MS).unref();

/** Registers a call the watchdog bounds; `begin` starts it, hostDone or a watchdog ends it. */
function track(g: Guest, callId: number, kind: ActiveCall['kind'], timeoutMs: number, cpuLimitMs: number, begin: (call: ActiveCall) => void): Promise<Outcome> {
  return new Promise<Outcome>((resolve, reject) => {
    const startedAt = Date.now();
    const call: ActiveCall = {
      callId,
      kind,
      startedAt,
      deadline: startedAt + timeoutMs,
      cpuStart: cpuNow(g),
      cpuLimit: BigInt(Math.max(1, Math.round(cpuLimitMs))) * 1_000_000n,
      resolve: (r) => {
        ended();
        resolve(r);
      },
      reject: (e) => {
        ended();
        reject(e);
      },
    };
    // When the last call ends, the watchdog takes the idle CPU baseline on its next tick (no isolate.cpuTime read
    // here, on every call's path; at most WATCHDOG_TICK_MS of idle CPU goes uncounted against the 1 s idle budget).
    const ended = () => g.calls.delete(callId);
    g.idleCpuFrom = undefined;
    g.calls.set(callId, call);
    begin(call);
  });
}

function usage(g: Guest, call: ActiveCall): { cpuMs: number; wallMs: number } {
  return { cpuMs: Number(cpuNow(g) - call.cpuStart) / 1e6, wallMs: Date.now() - call.startedAt };
}

// An extension gets CPU only inside a call (a stage, initialize, start, stop, a health probe, an event delivery),
// each bounded by its own deadline and CPU budget (issue 7 §4). A ctx op is tagged with the call whose ctx made
// it: an op from a call that has ended is dropped, and the reply to an op whose call ended meanwhile is never
// delivered, so a chain of ctx round trips cannot keep code running after its call returned or timed out.
function hostRequest(g: Guest, callId: unknown, text: unknown): number {
  try {
    if (g.dead || typeof text !== 'string' || text.length > MAX_REQUEST_CHARS) return 0;
    const cid = typeof callId === 'number' ? callId : 0;
    const id = nextRequestId++;
    // An op from a call that has ended is dropped, not refused: a rejection would hand the guest code to run (and
    // an unhandled one ends the isolate); its promise simply never settles.
    // console.* (call id 0) is one-way, so it cannot extend a call: it is taken while any call is running.
    if (!g.calls.has(cid) && !(cid === 0 && g.calls.size > 0)) return id;
    const op = JSON.parse(text) as ContextOp;
    void forward(g, id, cid, op);
    return id;
  } catch {
    return 0;
  }
}

async function forward(g: Guest, id: number, callId: number, op: ContextOp): Promise<void> {
  let reply: CtxResult;
  try {
    reply = (await peer.request('ctx', { instanceId: g.spec.instanceId, op })) as CtxResult;
  } catch (err) {
    reply = { ok: false, error: { code: err instanceof PlinthError ? err.code : 'PLINTH_ERR_SANDBOX_CRASHED', name: 'Error', message: 'the host did not answer the ctx operation' } };
  }
  const call = g.calls.get(callId);
  if (g.dead || !g.dispatch || !call) return; // its call has ended: the continuation is cut off
  let ok = false;
  let payload: string;
  try {
    if (reply.ok) {
      ok = true;
      payload = reply.undefined === true ? '' : JSON.stringify(reply.value ?? null);
    } else {
      payload = JSON.stringify({ code: String(reply.error.code), name: String(reply.error.name), message: cap(String(reply.error.message), 4096), ...(typeof reply.error.hint === 'string' ? { hint: cap(reply.error.hint, 1024) } : {}) });
    }
  } catch {
    ok = false;
    payload = '{"code":"PLINTH_ERR_SANDBOX_CRASHED","name":"Error","message":"malformed reply from the host"}';
  }
  g.dispatch.apply(undefined, ['settle', id, ok, payload], { timeout: Math.max(1, call.deadline - Date.now()) }).then(
    () => undefined,
    (err: unknown) => onIvmError(g, err, g.calls.get(callId)),
  );
}

function hostDone(g: Guest, callId: unknown, status: unknown, text: unknown): void {
  try {
    if (typeof callId !== 'number' || typeof status !== 'string' || typeof text !== 'string') return;
    const call = g.calls.get(callId);
    if (!call) return;
    const id = g.spec.id;
    const what = call.kind === 'stage' ? 'the stage' : call.kind === 'event' ? 'handleEvent()' : `${call.kind}()`;
    switch (status) {
      case 'ok': {
        if (text.length > g.maxResultBytes) {
          call.reject(new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${id}: ${what} returned ${text.length} characters of JSON; at most ${g.maxResultBytes} may leave an isolate`, { extension: id }));
          return;
        }
        // The text is the isolate's own JSON.stringify output (the shim's captured one): it goes on as it is.
        call.resolve({ json: text, absent: false, ...usage(g, call) });
        return;
      }
      case 'absent':
        call.resolve({ json: undefined, absent: true, ...usage(g, call) });
        return;
      case 'unknown':
        call.reject(new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `extension ${id} does not export that stage in its default export's "stages"`, { extension: id }));
        return;
      case 'too-large':
        call.reject(new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${id}: ${what} returned ${cap(text, 20)} characters of JSON; at most ${g.maxResultBytes} may leave an isolate`, { extension: id, hint: 'return less data, or write it with ctx.fs and return a path' }));
        return;
      case 'error':
      case 'unserialisable': {
        const d = JSON.parse(text) as { name?: unknown; message?: unknown; stack?: unknown; code?: unknown; hint?: unknown; ctx?: unknown };
        const name = typeof d.name === 'string' ? d.name : 'Error';
        const message = typeof d.message === 'string' ? d.message : '';
        const stack = typeof d.stack === 'string' && d.stack !== '' ? d.stack : `${name}: ${message}`;
        const lead = status === 'error' ? `${what} threw ${name}: ${message}` : `${what} returned a value that is not JSON-serialisable (${name}: ${message})`;
        // A denial the host's ctx handler made (the shim marks the errors it rebuilt from ctx replies; extension
        // code cannot forge the mark) keeps its code and hint, as in a worker: PERMISSION_DENIED names what to add.
        const fromCtx = status === 'error' && d.ctx === true && (d.code === 'PLINTH_ERR_PERMISSION_DENIED' || d.code === 'PLINTH_ERR_RESULT_TOO_LARGE');
        const code: ErrorCode = fromCtx ? (d.code as ErrorCode) : 'PLINTH_ERR_STAGE_FAILED';
        call.reject(new PlinthError(code, cap(`extension ${id}: ${lead}`, 4096), { extension: id, extensionStack: stack, ...(fromCtx && typeof d.hint === 'string' ? { hint: d.hint } : {}) }));
        return;
      }
      default:
        call.reject(new PlinthError('PLINTH_ERR_STAGE_FAILED', `extension ${id}: malformed outcome from the isolate`, { extension: id }));
    }
  } catch {
    // A host function must never throw into isolated-vm; a malformed report just leaves the call to its watchdog.
  }
}

function runCall(g: Guest, p: { callId: number; kind: InvokeKind; name?: string; inputJson?: string | undefined; timeoutMs: number; cpuLimitMs: number; runId?: string; traceId?: string }): Promise<Outcome> {
  const dispatch = g.dispatch;
  if (g.dead || !dispatch) return Promise.reject(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `extension ${g.spec.id}: its isolate is gone`, { extension: g.spec.id }));
  const inputJson = p.inputJson ?? '';
  const meta = JSON.stringify({ runId: p.runId ?? null, traceId: p.traceId ?? '' });
  return track(g, p.callId, p.kind, p.timeoutMs, p.cpuLimitMs, (call) => {
    // No isolated-vm timeout here: the watchdog (every WATCHDOG_TICK_MS) ends a call past its deadline or CPU
    // budget by disposing its isolate, which stops running code as the timeout would. The timeout cost a timer task
    // per call, about 8 µs of CPU (issue 14).
    dispatch.apply(undefined, ['run', p.callId, p.kind, p.name ?? '', inputJson, meta]).then(
      // A call that finished synchronously returns "status:text"; an async one reports through hostDone later.
      (outcome: unknown) => {
        if (typeof outcome !== 'string' || outcome === '') return;
        const colon = outcome.indexOf(':');
        hostDone(g, p.callId, outcome.slice(0, colon), outcome.slice(colon + 1));
      },
      (err: unknown) => onIvmError(g, err, call),
    );
  });
}

// --- module loading -------------------------------------------------------------------------------------------

/** Compiles the main module and everything it imports, refusing anything outside the extension's folder. */
async function compileGraph(g: Guest): Promise<{ main: ivm.Module; resolve: (specifier: string, referrer: ivm.Module) => ivm.Module }> {
  const spec = g.spec;
  const { root, main: mainReal } = await packageRoots(spec.id, spec.dir, spec.mainPath);
  const byFile = new Map<string, ivm.Module>();
  const fileOf = new Map<ivm.Module, string>();
  const edges = new Map<string, Map<string, string>>();
  const queue = [mainReal];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (byFile.has(file)) continue;
    const rel = path.relative(root, file);
    const source = await readFile(file, 'utf8');
    // Parsed, not pattern-matched: `import(` in a comment or a string is not an import (imports.ts).
    const dynamic = moduleImports(spec.id, rel, source, file).dynamic[0];
    if (dynamic) throw dynamicImportRefused(spec.id, rel, dynamic, file);
    let mod: ivm.Module;
    try {
      // The label in stack traces names the extension and its own relative path, never a host path.
      mod = await g.isolate.compileModule(source, { filename: `plinth-extension://${spec.id}/${rel.split(path.sep).join('/')}` });
    } catch (err) {
      throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id}: ${rel} does not compile: ${cap(messageOf(err), 1000)}`, { extension: spec.id, file });
    }
    byFile.set(file, mod);
    fileOf.set(mod, file);
    const deps = new Map<string, string>();
    for (const specifier of mod.dependencySpecifiers) {
      const target = await resolveImport(spec.id, root, file, specifier);
      deps.set(specifier, target);
      queue.push(target);
    }
    edges.set(file, deps);
  }
  const resolve = (specifier: string, referrer: ivm.Module): ivm.Module => {
    const file = fileOf.get(referrer);
    const target = file === undefined ? undefined : edges.get(file)?.get(specifier);
    const mod = target === undefined ? undefined : byFile.get(target);
    if (!mod) throw new Error(`import "${specifier}" was not resolved`);
    return mod;
  };
  return { main: byFile.get(mainReal)!, resolve };
}

function loadFailed(spec: SandboxSpec, err: unknown): PlinthError {
  if (err instanceof PlinthError && (err.code === 'PLINTH_ERR_IMPORT_REFUSED' || err.code === 'PLINTH_ERR_EXTENSION_LOAD_FAILED')) return err;
  const options = { extension: spec.id, ...(err instanceof PlinthError && err.extensionStack !== undefined ? { extensionStack: err.extensionStack } : {}) };
  const why = err instanceof PlinthError ? `${err.code}: ${err.message}` : cap(messageOf(err), 1000);
  return new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id} could not be started: ${why}`, options);
}

async function load(params: LoadParams): Promise<LoadResult> {
  const spec = params.spec;
  if (guests.has(spec.instanceId)) throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id}: instance ${spec.instanceId} is already loaded`, { extension: spec.id });
  const isolate = new ivm.Isolate({
    memoryLimit: isolateHeapLimitMb(spec.limits.memoryMb),
    // isolated-vm: V8 lost control of an isolate; this process must not go on serving.
    onCatastrophicError: (message) => {
      process.stderr.write(`plinth isolate sandbox: catastrophic isolated-vm error: ${message}\n`);
      process.kill(process.pid, 'SIGKILL');
    },
  });
  const g: Guest = { spec, isolate, dispatch: undefined, calls: new Map(), maxResultBytes: params.maxResultBytes, dead: false };
  guests.set(spec.instanceId, g);
  // Module evaluation, initialize() and start() share one budget: startTimeoutMs (wall clock and CPU).
  const loadDeadline = Date.now() + (spec.limits.startTimeoutMs ?? spec.limits.callTimeoutMs);
  const left = () => Math.max(1, loadDeadline - Date.now());
  const started = cpuNow(g);
  try {
    const context = await isolate.createContext();
    const identity = JSON.stringify({ id: spec.id, version: spec.version });
    const env = JSON.stringify(params.env);
    g.dispatch = (await context.evalClosure(
      SHIM_SOURCE,
      [
        new ivm.Callback((callId: unknown, text: unknown) => hostRequest(g, callId, text)),
        new ivm.Callback((callId: unknown, status: unknown, text: unknown) => hostDone(g, callId, status, text)),
        identity,
        env,
        params.maxResultBytes,
        MAX_REQUEST_CHARS,
      ],
      { result: { reference: true }, filename: SHIM_FILENAME, timeout: 5000 },
    )) as ivm.Reference<(...args: unknown[]) => unknown>;
    const { main, resolve } = await compileGraph(g);
    await main.instantiate(context, resolve);
    // Top-level code runs under the same watchdog as a call.
    const evalMs = left();
    await track(g, nextInternalCallId--, 'load', evalMs, evalMs, (call) => {
      main.evaluate({ timeout: evalMs }).then(
        () => call.resolve({ json: undefined, absent: false, ...usage(g, call) }),
        (err: unknown) => {
          // The module's own exception (whatever its text says) fails the load; a disposal or the deadline is ours.
          if (g.dead || ivmCause(g, call) !== 'crashed') onIvmError(g, err, call);
          else {
            // Its stack names plinth-extension://<id>/<file>:line:column, which `plinth dev` shows as a code frame.
            const stack = err instanceof Error && typeof err.stack === 'string' && err.stack !== '' ? { extensionStack: cap(err.stack, 4096) } : {};
            call.reject(new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id}: its module threw while loading: ${cap(messageOf(err), 1000)}`, { extension: spec.id, ...stack }));
          }
        },
      );
    });
    const bound = await g.dispatch.apply(undefined, ['bind', main.namespace.derefInto()], { timeout: left() });
    if (typeof bound === 'string' && bound !== '') throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id}: ${bound}`, { extension: spec.id, file: spec.mainPath });
    for (const kind of ['initialize', 'start'] as const) {
      const ms = left();
      await runCall(g, { callId: nextInternalCallId--, kind, ...(kind === 'initialize' ? { inputJson: JSON.stringify(spec.config) } : {}), timeoutMs: ms, cpuLimitMs: ms });
    }
    return { cpuMs: Number(cpuNow(g) - started) / 1e6 };
  } catch (err) {
    if (!g.dead) {
      g.dead = true;
      guests.delete(spec.instanceId);
      setImmediate(() => {
        try {
          isolate.dispose();
        } catch {
          // already gone
        }
      });
    }
    throw loadFailed(spec, err);
  }
}

// --- the link -------------------------------------------------------------------------------------------------

peer.handle('load', (params) => load(params as LoadParams));

// invoke is the raw path: its input arrives as the frame's payload and its result leaves as the reply's payload,
// so it is served here, beside the Peer (its ids are strings; the Peer's are numbers).
link.onRaw((m, payload) => {
  if (m.method !== INVOKE_METHOD) return false;
  const id = m.id;
  const p = m.params as InvokeParams;
  const fail = (err: unknown) => {
    const data = err instanceof PlinthError ? err.toJSON() : { code: 'PLINTH_ERR_SANDBOX_CRASHED', message: messageOf(err) };
    link.sendRaw({ jsonrpc: '2.0', id, error: { code: -32000, message: String(data.message), data } }, undefined);
  };
  const g = guests.get(p.instanceId);
  if (!g || g.dead) {
    fail(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `instance ${p.instanceId} is not loaded in this sandbox process`));
    return true;
  }
  runCall(g, { ...p, inputJson: payload }).then((r) => link.sendRaw({ jsonrpc: '2.0', id, result: { absent: r.absent, cpuMs: r.cpuMs, wallMs: r.wallMs } }, r.json), fail);
  return true;
});

peer.handle('abort', (params) => {
  const p = params as AbortParams;
  const g = guests.get(p.instanceId);
  if (!g || g.dead || !g.dispatch || !g.calls.has(p.callId)) return;
  const call = g.calls.get(p.callId);
  g.dispatch.apply(undefined, ['abort', p.callId, 'the call was cancelled by the host'], { timeout: Math.max(1, (call?.deadline ?? Date.now() + 1000) - Date.now()) }).then(
    () => undefined,
    (err: unknown) => onIvmError(g, err, call),
  );
});

peer.handle('dispose', (params) => {
  const p = params as DisposeParams;
  const g = guests.get(p.instanceId);
  if (!g) return;
  g.dead = true;
  guests.delete(p.instanceId);
  for (const call of g.calls.values()) call.reject(new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${g.spec.id} is stopping`, { extension: g.spec.id }));
  g.calls.clear();
  setImmediate(() => {
    try {
      g.isolate.dispose();
    } catch {
      // already gone
    }
  });
});

// Whether this process's own realm (where the host half of isolated-vm runs) is as it started: extension code
// must never reach it. What a hostile extension would pollute first.
const PRISTINE = { object: Object.getOwnPropertyNames(Object.prototype).sort().join(','), array: Object.getOwnPropertyNames(Array.prototype).sort().join(',') };
peer.handle('integrity', () => ({
  objectPrototype: Object.getOwnPropertyNames(Object.prototype).sort().join(',') === PRISTINE.object,
  arrayPrototype: Object.getOwnPropertyNames(Array.prototype).sort().join(',') === PRISTINE.array,
  polluted: ({} as Record<string, unknown>).polluted !== undefined || ([] as unknown as Record<string, unknown>).polluted !== undefined,
  nativeJson: String(JSON.stringify).includes('[native code]') && String(JSON.parse).includes('[native code]'),
  nativePromiseThen: Function.prototype.toString.call(Object.getOwnPropertyDescriptor(Promise.prototype, 'then')?.value).includes('[native code]'),
}));

// The RSS watchdog's question where the host has no procfs: answered at once, whatever the isolates are doing
// ('stats' below reads heap statistics, which waits for a busy isolate's thread).
peer.handle('rss', () => ({ rssBytes: process.memoryUsage.rss() }));

function ownHeap(): Pick<StatsResult, 'heapTotalBytes' | 'heapUsedBytes' | 'externalBytes'> {
  const m = process.memoryUsage();
  return { heapTotalBytes: m.heapTotal, heapUsedBytes: m.heapUsed, externalBytes: m.external };
}

peer.handle('stats', (): StatsResult => ({
  pid: process.pid,
  rssBytes: process.memoryUsage.rss(),
  ...ownHeap(),
  isolates: [...guests.values()].map((g) => {
    let heapBytes = 0;
    let externalBytes = 0;
    try {
      const h = g.isolate.getHeapStatisticsSync();
      heapBytes = h.total_heap_size;
      externalBytes = h.externally_allocated_size;
    } catch {
      // disposed meanwhile
    }
    return { instanceId: g.spec.instanceId, id: g.spec.id, heapBytes, externalBytes, cpuMs: Number(cpuNow(g)) / 1e6 };
  }),
}));

// Backstops: one guest's trouble must not take the process down by accident. Logged, never rethrown.
process.on('uncaughtException', (err) => process.stderr.write(`plinth isolate sandbox: uncaught exception: ${messageOf(err)}\n`));
process.on('unhandledRejection', (err) => process.stderr.write(`plinth isolate sandbox: unhandled rejection: ${messageOf(err)}\n`));

// Ctrl-C in a terminal sends SIGINT to the whole foreground process group, this process included (and a
// supervisor may SIGTERM the group). Its lifecycle is the host's: the host stops every extension in it, then kills
// it. Dying on the terminal's signal first would fail the very extensions the host is stopping gracefully.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);

// Without its host this process has no purpose. SIGKILL rather than exit(): a thread stuck in uninterruptible
// isolate code can hang a normal exit (isolated-vm #260).
// Its link and its IPC channel (which carries nothing else) are both lifelines.
peer.onClose(() => process.kill(process.pid, 'SIGKILL'));
process.once('disconnect', () => process.kill(process.pid, 'SIGKILL'));

peer.notify('ready', { pid: process.pid });
