// One protocol for everything outside the host process (DESIGN.md §4): JSON-RPC 2.0 messages over a transport.
// The isolate sandbox process speaks it over IPC; remote runners will speak it over WebSocket with the same peer.
import type { ChildProcess } from 'node:child_process';
import { PlinthError } from '../../errors.ts';

export interface Transport {
  send(message: unknown): void;
  /**
   * The raw-text path (framed transports, frames.ts): `message` is the envelope and `rawJson`, JSON text already
   * serialised by the sender, travels beside it unchanged, so a stage's input or result is never re-encoded.
   */
  sendRaw?(message: object, rawJson: string | undefined): void;
  onMessage(listener: (message: unknown) => void): void;
  onClose(listener: (reason: string) => void): void;
  close(): void;
}

/** JSON-RPC 2.0 §5.1 codes, plus -32000 for application errors whose `data` is a PlinthError's JSON. */
export const RPC_ERRORS = { parse: -32700, invalidRequest: -32600, methodNotFound: -32601, invalidParams: -32602, internal: -32603, application: -32000 } as const;

type Handler = (params: unknown) => unknown;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class Peer {
  readonly #transport: Transport;
  readonly #handlers = new Map<string, Handler>();
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed: string | undefined;
  readonly #closeListeners: Array<(reason: string) => void> = [];

  constructor(transport: Transport) {
    this.#transport = transport;
    transport.onMessage((m) => this.#receive(m));
    transport.onClose((reason) => this.#close(reason));
  }

  /** Serves `method`; a thrown PlinthError travels back with its code in `error.data`. */
  handle(method: string, handler: Handler): void {
    this.#handlers.set(method, handler);
  }

  request(method: string, params?: unknown): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(new PlinthError('PLINTH_ERR_SANDBOX_CRASHED', `link closed: ${this.#closed}`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#transport.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  notify(method: string, params?: unknown): void {
    if (this.#closed === undefined) this.#transport.send({ jsonrpc: '2.0', method, params });
  }

  get closed(): boolean {
    return this.#closed !== undefined;
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
    for (const l of this.#closeListeners) l(reason);
  }

  #receive(raw: unknown): void {
    if (typeof raw !== 'object' || raw === null) return;
    const m = raw as { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: { code: number; message: string; data?: unknown } };
    if (typeof m.method === 'string') {
      void this.#serve(m.id, m.method, m.params);
      return;
    }
    if (typeof m.id !== 'number') return;
    const pending = this.#pending.get(m.id);
    if (!pending) return;
    this.#pending.delete(m.id);
    // An error without a PlinthError in `data` is the link's own (JSON-RPC §5.1: unknown method, invalid request).
    if (m.error) pending.reject(m.error.data !== undefined ? PlinthError.fromJSON(m.error.data) : new PlinthError('PLINTH_ERR_LINK_PROTOCOL', `remote error ${String(m.error.code)}: ${String(m.error.message)}`));
    else pending.resolve(m.result);
  }

  async #serve(id: unknown, method: string, params: unknown): Promise<void> {
    const reply = (body: object) => {
      // JSON-RPC 2.0 §4.1: a notification (no id) gets no reply.
      if (id !== undefined && this.#closed === undefined) this.#transport.send({ jsonrpc: '2.0', id, ...body });
    };
    const handler = this.#handlers.get(method);
    if (!handler) return reply({ error: { code: RPC_ERRORS.methodNotFound, message: `method not found: ${method}` } });
    try {
      const result = await handler(params);
      reply({ result: result === undefined ? null : result });
    } catch (err) {
      const data = err instanceof PlinthError ? err.toJSON() : { code: 'PLINTH_ERR_STAGE_FAILED', message: err instanceof Error ? err.message : String(err) };
      reply({ error: { code: RPC_ERRORS.application, message: String(data.message), data } });
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
