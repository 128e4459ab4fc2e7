// runExtension (issue 13): runs a defineExtension definition as a remote runner — the same module that runs as a
// worker or an isolate. It reads the package's package.json and plinth.sig from `dir`, connects to the host's
// control channel (/rpc, a `runner` token), registers, and serves the host's requests (extension.initialize,
// stage.execute, extension.handleEvent, extension.healthCheck, extension.stop) with the definition's hooks and a
// ctx whose every op goes back to the host as a `ctx` request, checked there by the same grants code as for any
// runtime. It reconnects with capped, jittered backoff (the same instance id, so the host's pool knows it again)
// and stops gracefully: runner.drain (no new calls), the calls in flight finish, the definition's stop(), close.
//
// This file runs in the extension author's process: it imports only the wire pieces (the JSON-RPC Peer of
// src/sandbox/link, the remote protocol's names, the coded error class) and `ws` — nothing of the host.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { WebSocket } from 'ws';
import { PlinthError, type ErrorCode } from '../errors.ts';
import { Peer } from '../sandbox/link/index.ts';
import { openWebSocket, webSocketTransport } from '../sandbox/link/ws.ts';
import { REMOTE_METHODS, type ExecuteParams, type HandleEventParams, type InitializeParams, type RegisterParams, type RegisterResult } from '../sandbox/remote/protocol.ts';
import type { ContextOp } from '../sandbox/types.ts';
import type { Extension, ExtensionContext, HealthResult, Json, StageContext } from './index.ts';

export type RunnerState = 'connecting' | 'registered' | 'disconnected' | 'stopped';

export interface RunnerOptions {
  /** The host's control channel: ws(s)://host:port/rpc (http(s) and a missing /rpc are fixed up). */
  url: string;
  /** A token with role `runner` (control.tokens in the host config). */
  token: string;
  /** The extension package folder (package.json, plinth.sig). Default: process.cwd(). */
  dir?: string;
  /** Aborting it stops the runner gracefully. */
  signal?: AbortSignal;
  /** Where the runner's own lines go (connecting, registered, disconnected, refused). Default: stderr. */
  log?: (line: string) => void;
  /** Stop gracefully on SIGTERM/SIGINT and exit (the runner owns the process). Default true. */
  handleSignals?: boolean;
  /** Reconnect backoff: attempt n waits about min(maxMs, baseMs·2^n), half of it jittered. */
  reconnect?: { baseMs?: number; maxMs?: number };
  /** How long a graceful stop waits for calls in flight. Default 10 s. */
  drainTimeoutMs?: number;
  /** This runner's id in the host's pool, the same across reconnects. Default: a random one per runExtension. */
  instance?: string;
}

export interface RunnerHandle {
  /** Resolves at the first successful registration; rejects if the host refuses it or the runner stops before. */
  readonly registered: Promise<{ id: string; version: string }>;
  readonly state: RunnerState;
  readonly instance: string;
  /** Graceful stop (see above); resolves once the connection is closed. */
  stop(): Promise<void>;
  on(event: 'state', listener: (state: RunnerState) => void): RunnerHandle;
}

/** Register refusals worth retrying: the host is going or busy, not saying no. */
const TRANSIENT: ReadonlySet<string> = new Set(['PLINTH_ERR_SHUTDOWN', 'PLINTH_ERR_RPC_RATE_LIMITED', 'PLINTH_ERR_RPC_TOO_MANY_REQUESTS', 'PLINTH_ERR_RUNNER_DISCONNECTED', 'PLINTH_ERR_CONTROL_UNREACHABLE']);
/** Codes a hook's error keeps when it came from a ctx op (the host said so); anything else is the hook's failure. */
const PASS_THROUGH: ReadonlySet<string> = new Set(['PLINTH_ERR_PERMISSION_DENIED', 'PLINTH_ERR_QUOTA_EXCEEDED', 'PLINTH_ERR_RESULT_TOO_LARGE', 'PLINTH_ERR_TOPIC_RESERVED', 'PLINTH_ERR_EVENT_TOO_LARGE', 'PLINTH_ERR_FETCH_CIRCUIT_OPEN', 'PLINTH_ERR_FETCH_REDIRECT_LIMIT']);

function rpcUrl(url: string): string {
  let u = /^https?:/.test(url) ? url.replace(/^http/, 'ws') : url;
  if (!/\/rpc$/.test(new URL(u).pathname)) u = u.replace(/\/?$/, '/rpc');
  return u;
}

/** A hook's failure as the coded error the host gets back (its stack travels as extensionStack). */
function hookError(err: unknown, code: ErrorCode, what: string): PlinthError {
  if (err instanceof PlinthError && (PASS_THROUGH.has(err.code) || err.code === code)) return err;
  if (err instanceof Error) return new PlinthError(code, `${what}: ${err.name}: ${err.message}`, { ...(err.stack ? { extensionStack: err.stack } : {}) });
  return new PlinthError(code, `${what}: threw a non-Error value: ${String(err)}`);
}

class Runner extends EventEmitter<{ state: [RunnerState] }> implements RunnerHandle {
  readonly registered: Promise<{ id: string; version: string }>;
  readonly instance: string;
  readonly #definition: Extension;
  readonly #options: RunnerOptions;
  readonly #log: (line: string) => void;
  #state: RunnerState = 'connecting';
  #resolveRegistered!: (v: { id: string; version: string }) => void;
  #rejectRegistered!: (err: unknown) => void;
  #everRegistered = false;
  #socket: WebSocket | undefined;
  #peer: Peer | undefined;
  #stopping: Promise<void> | undefined;
  readonly #wake = new AbortController();
  /** Set by extension.initialize; cleared by extension.stop. */
  #initialized: { config: string; env: Record<string, string | null> } | undefined;
  #env: Record<string, string | null> = {};
  #id = '';
  #version = '';
  /** Stage and event calls being served now (a graceful stop waits for them). */
  #inflight = 0;
  #idle: Array<() => void> = [];
  readonly #offSignals: Array<() => void> = [];

  constructor(definition: Extension, options: RunnerOptions) {
    super();
    if (typeof definition !== 'object' || definition === null) throw new TypeError('runExtension: the definition must be the object defineExtension returns');
    if (typeof options?.url !== 'string' || typeof options.token !== 'string') throw new TypeError('runExtension: options.url and options.token are required strings');
    this.#definition = definition;
    this.#options = options;
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.instance = options.instance ?? randomUUID();
    this.registered = new Promise((resolve, reject) => {
      this.#resolveRegistered = resolve;
      this.#rejectRegistered = reject;
    });
    // Handled here too, so a caller that never awaits it gets no unhandled rejection; awaiting it still rejects.
    this.registered.catch(() => undefined);
    if (options.handleSignals !== false) {
      const onSignal = () => void this.stop().then(() => process.exit(0));
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.once(sig, onSignal);
        this.#offSignals.push(() => process.removeListener(sig, onSignal));
      }
    }
    if (options.signal) {
      if (options.signal.aborted) queueMicrotask(() => void this.stop());
      else options.signal.addEventListener('abort', () => void this.stop(), { once: true });
    }
    void this.#run();
  }

  get state(): RunnerState {
    return this.#state;
  }

  #set(state: RunnerState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.emit('state', state);
  }

  async #readPackage(): Promise<RegisterParams> {
    const dir = path.resolve(this.#options.dir ?? process.cwd());
    const file = path.join(dir, 'package.json');
    let manifestText: string;
    try {
      manifestText = await readFile(file, 'utf8');
    } catch (err) {
      throw new PlinthError('PLINTH_ERR_PACKAGE_JSON_INVALID', `cannot read ${file}: ${(err as Error).message}`, { file, hint: 'pass dir: the extension package folder (it holds package.json and plinth.sig)' });
    }
    let manifest: Record<string, unknown>;
    try {
      manifest = JSON.parse(manifestText) as Record<string, unknown>;
    } catch (err) {
      throw new PlinthError('PLINTH_ERR_PACKAGE_JSON_INVALID', `${file} is not valid JSON: ${(err as Error).message}`, { file });
    }
    let signature: string | undefined;
    try {
      signature = await readFile(path.join(dir, 'plinth.sig'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return { manifest, manifestText, ...(signature === undefined ? {} : { signature }), instance: this.instance };
  }

  async #run(): Promise<void> {
    let params: RegisterParams;
    try {
      params = await this.#readPackage();
    } catch (err) {
      return this.#fail(err);
    }
    const url = rpcUrl(this.#options.url);
    const base = this.#options.reconnect?.baseMs ?? 200;
    const max = this.#options.reconnect?.maxMs ?? 10_000;
    let attempt = 0;
    while (!this.#stopping) {
      this.#set('connecting');
      let outcome: 'closed' | 'retry';
      try {
        outcome = await this.#session(url, params);
        attempt = 0;
      } catch (err) {
        if (this.#stopping) break;
        const code = err instanceof PlinthError ? err.code : undefined;
        if (code !== undefined && !TRANSIENT.has(code)) {
          this.#log(`plinth runner: refused by ${url}: ${code}: ${(err as Error).message}`);
          return this.#fail(err);
        }
        this.#log(`plinth runner: cannot register with ${url}: ${(err as Error).message}`);
        outcome = 'retry';
      }
      if (this.#stopping) break;
      this.#set('disconnected');
      // Capped exponential, half of it jittered: runners that lost one host do not all come back at once.
      const ceiling = Math.min(max, base * 2 ** Math.min(attempt++, 20));
      const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      this.#log(`plinth runner: ${outcome === 'closed' ? 'disconnected' : 'not registered'}; reconnecting in ${delay} ms`);
      await sleep(delay, this.#wake.signal);
    }
    this.#finish();
  }

  #fail(err: unknown): void {
    this.#rejectRegistered(err);
    void this.stop();
  }

  #finish(): void {
    if (!this.#everRegistered) this.#rejectRegistered(new PlinthError('PLINTH_ERR_SHUTDOWN', 'the runner was stopped before it registered'));
  }

  /** One connection: open, register, serve until it closes. Resolves 'closed'; rejects when it could not register. */
  async #session(url: string, params: RegisterParams): Promise<'closed'> {
    const socket = await openSocket(url, this.#options.token);
    this.#socket = socket;
    const transport = webSocketTransport(socket, {
      // A result that is not JSON (a BigInt, a cycle) fails its own call, never the connection.
      onEncodeError: (m, err) => {
        const id = (m as { id?: unknown }).id;
        const e = new PlinthError('PLINTH_ERR_STAGE_FAILED', `the result is not JSON: ${(err as Error).message}`);
        return JSON.stringify({ jsonrpc: '2.0', id: id ?? null, error: { code: -32000, message: e.message, data: e.toJSON() } });
      },
      describeClose: (code, reason) => `the host closed the connection (${code}${reason.length > 0 ? ` ${reason}` : ''})`,
    });
    const peer = new Peer(transport);
    this.#peer = peer;
    const closed = new Promise<string>((resolve) => peer.onClose(resolve));
    this.#serve(peer);
    let result: RegisterResult;
    try {
      result = (await peer.request(REMOTE_METHODS.register, params)) as RegisterResult;
    } catch (err) {
      socket.close(1000);
      // The connection dropped while registering: try again; a refusal is the host's answer.
      if (peer.closed && !(err instanceof PlinthError && err.code !== 'PLINTH_ERR_SANDBOX_CRASHED')) throw new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', `the connection closed during runner.register`);
      if (err instanceof PlinthError && err.code === 'PLINTH_ERR_SANDBOX_CRASHED') throw new PlinthError('PLINTH_ERR_RUNNER_DISCONNECTED', err.message);
      throw err;
    }
    this.#id = result.id;
    this.#version = result.version;
    this.#everRegistered = true;
    this.#set('registered');
    this.#log(`plinth runner: ${result.id} ${result.version} registered with ${url} (instance ${result.instance}, ${result.trust})`);
    this.#resolveRegistered({ id: result.id, version: result.version });
    const why = await closed;
    if (!this.#stopping) this.#log(`plinth runner: ${why}`);
    return 'closed';
  }

  /** The ctx handed to the definition's hooks: frozen, every op a `ctx` request to the host. */
  #ctx(peer: Peer): ExtensionContext {
    const op = async (o: ContextOp): Promise<Json | undefined> => {
      const r = (await peer.request(REMOTE_METHODS.ctx, { op: o })) as { value?: Json } | null;
      return r && Object.hasOwn(r, 'value') ? r.value : undefined;
    };
    const log = (level: 'debug' | 'info' | 'warn' | 'error') => (message: string, fields?: Record<string, Json>) => {
      // Not awaited by the extension (like console.log); a refused line is dropped, never thrown.
      op({ op: 'log', level, message: String(message), ...(fields === undefined ? {} : { fields }) }).catch(() => undefined);
    };
    return Object.freeze({
      extension: Object.freeze({ id: this.#id, version: this.#version }),
      log: Object.freeze({ debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }),
      fs: Object.freeze({
        readText: async (p: string) => (await op({ op: 'fs.readText', path: p })) as string,
        writeText: async (p: string, text: string) => void (await op({ op: 'fs.writeText', path: p, text })),
        appendText: async (p: string, text: string) => void (await op({ op: 'fs.appendText', path: p, text })),
      }),
      kv: Object.freeze({
        get: (key: string) => op({ op: 'kv.get', key }),
        set: async (key: string, value: Json) => void (await op({ op: 'kv.set', key, value })),
        delete: async (key: string) => (await op({ op: 'kv.delete', key })) === true,
      }),
      emit: async (topic: string, payload: Json) => void (await op({ op: 'emit', topic, payload })),
      fetch: async (url: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) =>
        (await op({ op: 'fetch', url: String(url), ...(init === undefined ? {} : { init }) })) as { status: number; headers: Record<string, string>; text: string },
      env: (name: string) => {
        const v = this.#env[String(name)];
        return typeof v === 'string' ? v : undefined;
      },
    });
  }

  #track<T>(work: () => Promise<T>): Promise<T> {
    this.#inflight++;
    return work().finally(() => {
      if (--this.#inflight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    });
  }

  #serve(peer: Peer): void {
    const def = this.#definition;
    peer.handle(REMOTE_METHODS.initialize, async (raw) => {
      const p = raw as InitializeParams;
      const config = JSON.stringify(p.config ?? {});
      this.#env = { ...(p.env ?? {}) };
      // A reconnect is initialized again by the host's pool; the definition is only when it was stopped or its config changed.
      if (this.#initialized?.config === config) return {};
      const ctx = this.#ctx(peer);
      try {
        if (this.#initialized) await def.stop?.(ctx);
        this.#initialized = undefined;
        await def.initialize?.(structuredClone(p.config ?? {}), ctx);
        await def.start?.(ctx);
      } catch (err) {
        throw hookError(err, 'PLINTH_ERR_EXTENSION_LOAD_FAILED', 'initialize()/start() threw');
      }
      this.#initialized = { config, env: this.#env };
      return {};
    });
    peer.handle(REMOTE_METHODS.execute, (raw, rc) =>
      this.#track(async () => {
        const p = raw as ExecuteParams;
        const fn = def.stages && Object.hasOwn(def.stages, p.stage) ? def.stages[p.stage] : undefined;
        if (typeof fn !== 'function') throw new PlinthError('PLINTH_ERR_STAGE_UNKNOWN', `the runner's definition exports no stage "${p.stage}" (it exports: ${Object.keys(def.stages ?? {}).join(', ') || 'none'})`);
        const timeout = AbortSignal.timeout(Math.max(1, Number(p.timeoutMs) || 1));
        const ctx: StageContext = Object.freeze({ ...this.#ctx(peer), stage: p.stage, signal: AbortSignal.any([rc.signal, timeout]), runId: p.runId, traceId: p.traceId });
        try {
          const output = (await fn.call(def.stages, p.input, ctx)) as Json | undefined;
          return { output: output === undefined ? null : output };
        } catch (err) {
          // Its deadline ended it (the stage rejected on ctx.signal): a timeout, whichever side's timer the host's
          // loop runs first, not a failure of the stage.
          if (timeout.aborted && !rc.signal.aborted) throw new PlinthError('PLINTH_ERR_STAGE_TIMEOUT', `stage "${p.stage}" did not finish within ${p.timeoutMs} ms`, { hint: 'make the stage faster, or raise its timeoutMs / limits.callTimeoutMs' });
          throw hookError(err, 'PLINTH_ERR_STAGE_FAILED', `stage "${p.stage}" threw`);
        }
      }),
    );
    peer.handle(REMOTE_METHODS.handleEvent, (raw) =>
      this.#track(async () => {
        const p = raw as HandleEventParams;
        try {
          await def.handleEvent?.(p.event, this.#ctx(peer));
        } catch (err) {
          throw hookError(err, 'PLINTH_ERR_STAGE_FAILED', `handleEvent(${String(p.event?.topic)}) threw`);
        }
        return {};
      }),
    );
    peer.handle(REMOTE_METHODS.healthCheck, async () => {
      let r: HealthResult;
      try {
        r = def.healthCheck ? await def.healthCheck(this.#ctx(peer)) : true;
      } catch (err) {
        return { healthy: false, detail: `healthCheck() threw: ${err instanceof Error ? err.message : String(err)}`.slice(0, 1024) };
      }
      return typeof r === 'boolean' ? { healthy: r } : { healthy: r.healthy === true, ...(typeof r.detail === 'string' ? { detail: r.detail } : {}) };
    });
    peer.handle(REMOTE_METHODS.stop, async () => {
      if (!this.#initialized) return {};
      this.#initialized = undefined;
      try {
        await def.stop?.(this.#ctx(peer));
      } catch (err) {
        throw hookError(err, 'PLINTH_ERR_STAGE_FAILED', 'stop() threw');
      }
      return {};
    });
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const off of this.#offSignals.splice(0)) off();
    this.#wake.abort();
    const peer = this.#peer;
    const socket = this.#socket;
    if (peer && !peer.closed && this.#state === 'registered') {
      // No new calls from here on; the ones in flight finish (bounded), then the definition's own stop().
      await bounded(peer.request(REMOTE_METHODS.drain, {}), 2000).catch(() => undefined);
      if (this.#inflight > 0) await bounded(new Promise<void>((resolve) => this.#idle.push(resolve)), this.#options.drainTimeoutMs ?? 10_000).catch(() => undefined);
      if (this.#initialized) {
        this.#initialized = undefined;
        await bounded(Promise.resolve(this.#definition.stop?.(this.#ctx(peer))), 5000).catch((err: unknown) => this.#log(`plinth runner: stop() failed: ${String(err)}`));
      }
    }
    if (socket && socket.readyState !== socket.CLOSED) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.close(1000, 'runner stopped');
        setTimeout(() => {
          socket.terminate();
          resolve();
        }, 2000).unref();
      });
    }
    this.#finish();
    this.#set('stopped');
  }
}

function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    t.unref();
    p.then(resolve, reject).finally(() => clearTimeout(t));
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Opens the WebSocket with the token; a refused token or origin is a coded refusal, anything else transient. */
function openSocket(url: string, token: string): Promise<WebSocket> {
  return openWebSocket(url, {
    token,
    refused: (status) =>
      status === 401 || status === 403
        ? new PlinthError('PLINTH_ERR_CONTROL_AUTH', `the host at ${url} refused the runner's token (HTTP ${status})`, { hint: 'pass a token with role runner from the host config (control.tokens)' })
        : new PlinthError('PLINTH_ERR_CONTROL_UNREACHABLE', `the host at ${url} answered HTTP ${status}`),
    unreachable: (detail) => new PlinthError('PLINTH_ERR_CONTROL_UNREACHABLE', `no Plinth host at ${url} (${detail})`),
  });
}

/** Runs `definition` as a remote runner of the host at `options.url` (see the top of this file). */
export function runExtension(definition: Extension, options: RunnerOptions): RunnerHandle {
  return new Runner(definition, options);
}
