// A Transport over a WebSocket (the `ws` package's, or anything shaped like it): JSON text frames, and every
// message sent in one tick goes out in one write (the socket is corked until the tick ends) — a burst of 100
// replies is one syscall, not 100 (the isolate link's frames batch the same way, frames.ts). Used by the remote
// runner (src/sdk/runner.ts) and every control-channel connection, whose client side opens its socket with
// openWebSocket below.
import { WebSocket } from 'ws';
import type { Transport } from './index.ts';

/** What the transport needs of a ws WebSocket. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly OPEN: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): unknown;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): unknown;
}

interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The net.Socket under a ws WebSocket, when there is one to cork. */
function rawSocket(ws: WebSocketLike): Corkable | undefined {
  const s = (ws as unknown as { _socket?: Partial<Corkable> | null })._socket;
  return s && typeof s.cork === 'function' && typeof s.uncork === 'function' ? (s as Corkable) : undefined;
}

/**
 * Corks the socket under `ws` until the end of this tick (once per tick, however often it is called), so what is
 * sent meanwhile goes out in one write. Returns a function for the next call that does the same.
 */
export function tickCorker(ws: WebSocketLike): () => void {
  let corked: Corkable | undefined;
  const uncork = () => {
    const c = corked;
    corked = undefined;
    c?.uncork();
  };
  return () => {
    if (corked) return;
    corked = rawSocket(ws);
    if (!corked) return;
    corked.cork();
    process.nextTick(uncork);
  };
}

export interface WebSocketTransportOptions {
  /** A message that cannot be encoded (a BigInt, a cycle): what to send instead (or undefined: nothing). */
  onEncodeError?: (message: unknown, err: unknown) => string | undefined;
  /** Text for the close listeners, from the close code and reason. */
  describeClose?: (code: number, reason: string) => string;
  /** Incoming messages: parsed by the Peer (text) unless a listener is given the raw data first. */
  decode?: (data: Buffer | ArrayBuffer | Buffer[]) => unknown;
}

export function webSocketTransport(ws: WebSocketLike, options: WebSocketTransportOptions = {}): Transport {
  const cork = tickCorker(ws);
  return {
    send: (m) => {
      if (ws.readyState !== ws.OPEN) return;
      let text: string | undefined;
      try {
        text = JSON.stringify(m);
      } catch (err) {
        text = options.onEncodeError?.(m, err);
      }
      if (text === undefined) return;
      cork();
      ws.send(text);
    },
    onMessage: (l) => ws.on('message', (data) => l(options.decode ? options.decode(data) : (data as Buffer).toString())),
    onClose: (l) => ws.once('close', (code, reason) => l(options.describeClose ? options.describeClose(code, reason.toString()) : `connection closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`)),
    close: () => ws.close(1000),
  };
}

export interface OpenOptions {
  token?: string;
  origin?: string;
  timeoutMs?: number;
  /** The error for an HTTP answer instead of the upgrade (401/403: the token or origin was refused). */
  refused: (status: number) => Error;
  /** The error for a socket that could not connect (`detail`: the errno code or message). */
  unreachable: (detail: string) => Error;
}

/**
 * Opens a WebSocket with `Authorization: Bearer <token>`; resolves once it is open. A refusal or a failure to
 * connect rejects with the caller's own error (the control client and the remote runner word them differently).
 */
export function openWebSocket(url: string, options: OpenOptions): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, {
      ...(options.token !== undefined ? { headers: { authorization: `Bearer ${options.token}` } } : {}),
      ...(options.origin !== undefined ? { origin: options.origin } : {}),
      handshakeTimeout: options.timeoutMs ?? 5000,
    });
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      socket.terminate();
      reject(err);
    };
    socket.once('unexpected-response', (_req, res) => {
      res.resume();
      fail(options.refused(res.statusCode ?? 0));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => fail(options.unreachable(err.code ?? err.message)));
    socket.once('open', () => {
      if (settled) return;
      settled = true;
      resolve(socket);
    });
  });
}
