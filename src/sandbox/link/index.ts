// One protocol for everything outside the host process (DESIGN.md §4): JSON-RPC 2.0 messages over a transport.
// The isolate sandbox process speaks it over IPC (objects); the control channel (src/control) and the remote
// runners speak it over WebSocket (text) with the same peer. The wire rules follow the JSON-RPC 2.0 specification
// (https://www.jsonrpc.org/specification): §4 requests and notifications, §5 responses and error ids, §6 batches.
import type { ChildProcess } from 'node:child_process';
import { PlinthError } from '../../errors.ts';
import { CallTable } from './call-table.ts';

export interface Transport {
  /** A message object, or an array of them (a batch reply, §6). Object transports send it as is; text ones as JSON. */
  send(message: unknown): void;
  /**
   * The raw-text path (framed transports, frames.ts): `message` is the envelope and `rawJson`, JSON text already
   * serialised by the sender, travels beside it unchanged, so a stage's input or result is never re-encoded.
   */
  sendRaw?(message: object, rawJson: string | undefined): void;
  /** Each message as it arrived: a parsed value (IPC), or a string of JSON text (WebSocket) that the peer parses. */
  onMessage(listener: (message: unknown) => void): void;
  onClose(listener: (reason: string) => void): void;
  close(): void;
}

/** JSON-RPC 2.0 §5.1 codes, plus -32000 for application errors whose `data` is a PlinthError's JSON. */
export const RPC_ERRORS = { parse: -32700, invalidRequest: -32600, methodNotFound: -32601, invalidParams: -32602, internal: -32603, application: -32000 } as const;

/** The method that cancels an in-flight request of the other side (LSP's convention): params `{ id }`. */
export const CANCEL_METHOD = '$/cancelRequest';

export type RequestId = string | number | null;

/** A handler throws this for a protocol-level error (e.g. -32602 with the problem path in `data`). */
export class RpcError extends Error {
  readonly code: number;
  readonly data: unknown;
  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.data = data;
  }
}

/** What a handler learns of the request it serves. */
export interface RequestContext {
  method: string;
  /** undefined for a notification. */
  id: RequestId | undefined;
  /** Aborted when the other side sends $/cancelRequest for this id, or the link closes. */
  signal: AbortSignal;
}

type Handler = (params: unknown, context: RequestContext) => unknown;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

interface ErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

type Reply = { jsonrpc: '2.0'; id: RequestId; result: unknown } | { jsonrpc: '2.0'; id: RequestId; error: ErrorObject };

export interface PeerOptions {
  /** Told of a reply that matches no pending request (e.g. the other side's -32700 with id null). */
  onStrayReply?: (reply: unknown) => void;
}

const rpcCodes = new WeakMap<object, number>();

/** A request being served: its AbortController is made only when a handler reads `signal` (the sandbox hot path never does). */
class Serving {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    if (this.#aborted && !this.#controller.signal.aborted) this.#controller.abort(this.#reason);
    return this.#controller.signal;
  }
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** The JSON-RPC error code a rejected request came back with (undefined for link closes and local errors). */
export function rpcCodeOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? rpcCodes.get(err) : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function validId(v: unknown): v is RequestId {
  return v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

const errorReply = (id: RequestId, code: number, message: string, data?: unknown): Reply => ({ jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } });

export class Peer {
  readonly #transport: Transport;
  readonly #options: PeerOptions;
  readonly #handlers = new Map<string, Handler>();
  readonly #pending = new CallTable<number, Pending>();
  /** Requests of the other side being served, by their id (a Map tells 1 from "1"; no JSON key per request). */
  readonly #serving = new Map<string | number | null, Serving>();
  #nextId = 1;
  #closed: string | undefined;
  readonly #closeListeners: Array<(reason: string) => void> = [];

  constructor(transport: Transport, options: PeerOptions = {}) {
    this.#transport = transport;
    this.#options = options;
    transport.onMessage((m) => this.receive(m));
    transport.onClose((reason) => this.#close(reason));
  }

  /** Serves `method`; a thrown PlinthError travels back with its code in `error.data`, an RpcError as its own code. */
  handle(method: string, handler: Handler): void {
    this.#handlers.set(method, handler);
  }

  request(method: string, params?: unknown, options: { signal?: AbortSignal } = {}): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `link closed: ${this.#closed}`));
    const id = this.#nextId++;
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(new PlinthError('PLINTH_ERR_CANCELLED', `${method} was cancelled before it was sent`));
    return new Promise((resolve, reject) => {
      const onAbort = () => this.notify(CANCEL_METHOD, { id });
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.#pending.set(id, {
        resolve: (v) => (done(), resolve(v)),
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the reason is the PlinthError #reply or #close made
        reject: (e) => (done(), reject(e)),
      });
      this.#transport.send(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params });
    });
  }

  notify(method: string, params?: unknown): void {
    if (this.#closed === undefined) this.#transport.send(params === undefined ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', method, params });
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Requests of the other side this peer is serving now. */
  get serving(): number {
    return this.#serving.size;
  }

  onClose(listener: (reason: string) => void): void {
    this.#closeListeners.push(listener);
  }

  close(reason = 'closed'): void {
    this.#transport.close();
    this.#close(reason);
  }

  #close(reason: string): void {
    if (this.#closed !== undefined) return;
    this.#closed = reason;
    // Like VS Code's rpcProtocol dispose(): every pending call is rejected, none left hanging.
    for (const p of this.#pending.values()) p.reject(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `link closed during the call: ${reason}`));
    this.#pending.clear();
    for (const c of this.#serving.values()) c.abort(new PlinthError('PLINTH_ERR_CANCELLED', `link closed: ${reason}`));
    this.#serving.clear();
    for (const l of this.#closeListeners) l(reason);
  }

  /** Takes one message as it arrived (what the transport hands over; public so a server can feed text it framed itself). */
  receive(raw: unknown): void {
    let value = raw;
    if (typeof raw === 'string') {
      try {
        value = JSON.parse(raw);
      } catch {
        // §5: the id could not be read, so it is null; an unparseable batch gets one error, not an array.
        this.#send(errorReply(null, RPC_ERRORS.parse, 'Parse error'));
        return;
      }
    }
    if (Array.isArray(value)) {
      // §6: an empty batch is one Invalid Request, not an empty array.
      if (value.length === 0) return this.#send(errorReply(null, RPC_ERRORS.invalidRequest, 'Invalid Request: empty batch'));
      const replies = value.map((m) => Promise.resolve(this.#one(m)));
      void Promise.all(replies).then((all) => {
        const out = all.filter((r): r is Reply => r !== undefined);
        // §6: a batch of notifications (and replies) gets nothing back.
        if (out.length > 0) this.#send(out);
      });
      return;
    }
    const reply = this.#one(value);
    if (reply instanceof Promise) void reply.then((r) => r && this.#send(r));
    else if (reply) this.#send(reply);
  }

  #send(message: Reply | Reply[]): void {
    if (this.#closed === undefined) this.#transport.send(message);
  }

  /** One element: a reply to one of ours (nothing to send), or a request/notification (its reply, if any). */
  #one(m: unknown): Reply | undefined | Promise<Reply | undefined> {
    if (!isObject(m)) return errorReply(null, RPC_ERRORS.invalidRequest, 'Invalid Request: not an object');
    if (!('method' in m) && ('result' in m || 'error' in m)) {
      this.#reply(m);
      return undefined;
    }
    const id = m.id;
    const hasId = 'id' in m;
    if (hasId && !validId(id)) return errorReply(null, RPC_ERRORS.invalidRequest, 'Invalid Request: id must be a string, a number or null');
    const at = hasId ? (id as RequestId) : null;
    if (m.jsonrpc !== '2.0') return errorReply(at, RPC_ERRORS.invalidRequest, 'Invalid Request: jsonrpc must be "2.0"');
    if (typeof m.method !== 'string') return errorReply(at, RPC_ERRORS.invalidRequest, 'Invalid Request: method must be a string');
    if ('params' in m && !(typeof m.params === 'object' && m.params !== null)) return errorReply(at, RPC_ERRORS.invalidRequest, 'Invalid Request: params must be an object or an array');
    return this.#serve(hasId ? (id as RequestId) : undefined, m.method, m.params);
  }

  #reply(m: Record<string, unknown>): void {
    const pending = typeof m.id === 'number' ? this.#pending.get(m.id) : undefined;
    if (!pending) {
      this.#options.onStrayReply?.(m);
      return;
    }
    this.#pending.delete(m.id as number);
    const error = m.error as ErrorObject | undefined;
    if (error) {
      // An error without a PlinthError in `data` is the link's own (JSON-RPC §5.1: unknown method, invalid request).
      const data = error.data as { code?: unknown } | undefined;
      const err =
        isObject(data) && typeof data.code === 'string'
          ? PlinthError.fromJSON(data)
          : new PlinthError('PLINTH_ERR_LINK_PROTOCOL', `remote error ${String(error.code)}: ${String(error.message)}`);
      if (typeof error.code === 'number') rpcCodes.set(err, error.code);
      pending.reject(err);
    } else pending.resolve(m.result);
  }

  async #serve(id: RequestId | undefined, method: string, params: unknown): Promise<Reply | undefined> {
    // §4.1: a notification (no id) gets no reply, not even an error.
    const reply = (r: Reply) => (id === undefined ? undefined : r);
    if (method === CANCEL_METHOD) {
      const target = isObject(params) ? params.id : undefined;
      if (validId(target)) this.#serving.get(target)?.abort(new PlinthError('PLINTH_ERR_CANCELLED', `request ${JSON.stringify(target)} was cancelled by the caller`));
      return reply({ jsonrpc: '2.0', id: id ?? null, result: null });
    }
    const handler = this.#handlers.get(method);
    if (!handler) return reply(errorReply(id ?? null, RPC_ERRORS.methodNotFound, `method not found: ${method}`));
    const serving = new Serving();
    const key = id;
    // A reused id of a request still in flight keeps the first one cancellable; the second is not.
    if (key !== undefined && !this.#serving.has(key)) this.#serving.set(key, serving);
    try {
      const context: RequestContext = {
        method,
        id,
        get signal() {
          return serving.signal;
        },
      };
      const result = await handler(params, context);
      return reply({ jsonrpc: '2.0', id: id ?? null, result: result === undefined ? null : result });
    } catch (err) {
      if (err instanceof RpcError) return reply(errorReply(id ?? null, err.code, err.message, err.data));
      const data = err instanceof PlinthError ? err.toJSON() : { code: 'PLINTH_ERR_STAGE_FAILED', message: err instanceof Error ? err.message : String(err) };
      return reply(errorReply(id ?? null, RPC_ERRORS.application, String(data.message), data));
    } finally {
      if (key !== undefined && this.#serving.get(key) === serving) this.#serving.delete(key);
    }
  }
}

/** IPC to a forked child process (host side). */
export function childTransport(child: ChildProcess): Transport {
  return {
    send: (m) => {
      if (child.connected) child.send(m as object);
    },
    onMessage: (l) => child.on('message', l),
    onClose: (l) => {
      child.once('exit', (code, signal) => l(signal ? `process killed by ${signal}` : `process exited with code ${code}`));
      child.once('disconnect', () => l('IPC channel disconnected'));
    },
    close: () => {
      if (child.connected) child.disconnect();
    },
  };
}

/** IPC to the parent (child side). */
export function parentTransport(): Transport {
  return {
    send: (m) => {
      if (process.connected) process.send?.(m);
    },
    onMessage: (l) => process.on('message', l),
    onClose: (l) => process.once('disconnect', () => l('parent disconnected')),
    close: () => {
      if (process.connected) process.disconnect();
    },
  };
}
