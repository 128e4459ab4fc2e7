// The typed control-channel client (what the CLI uses; types generated from schemas/rpc/). It speaks through the
// same Peer as the server, so requests, cancellation ($/cancelRequest on an AbortSignal) and notifications follow
// one implementation of the wire rules.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { WebSocket } from 'ws';
import { PlinthError } from '../errors.ts';
import { Peer, type Transport } from '../sandbox/link/index.ts';
import { openWebSocket } from '../sandbox/link/ws.ts';
import type { RpcMethods, RpcNotifications } from './rpc-types.ts';
import { TOKEN_FILE } from './auth.ts';

export const SERVE_FILE = 'serve.json';
export const DEFAULT_PORT = 7420;

export interface Endpoint {
  url: string;
  token: string | undefined;
  /** Where the URL came from, for messages. */
  from: 'flag' | 'serve.json' | 'default';
}

const START_HINT = 'start one in another terminal with `plinth serve --plugins <dir>` (or `npx plinth serve --plugins plugins` in a clone), or pass --url / --data-dir of the running one';

/** --url, else <dataDir>/serve.json of a running host, else the default port; --token, else PLINTH_TOKEN, else <dataDir>/token. */
export function resolveEndpoint(options: { url?: string; token?: string; dataDir: string; env?: NodeJS.ProcessEnv }): Endpoint {
  const env = options.env ?? process.env;
  let url = options.url;
  let from: Endpoint['from'] = 'flag';
  if (url === undefined) {
    const file = path.join(options.dataDir, SERVE_FILE);
    if (existsSync(file)) {
      try {
        const s = JSON.parse(readFileSync(file, 'utf8')) as { url?: unknown };
        if (typeof s.url === 'string') [url, from] = [s.url, 'serve.json'];
      } catch {
        // a damaged file: fall back to the default port
      }
    }
  }
  if (url === undefined) [url, from] = [`ws://127.0.0.1:${DEFAULT_PORT}/rpc`, 'default'];
  else if (/^https?:/.test(url)) url = url.replace(/^http/, 'ws');
  if (!/\/rpc$/.test(new URL(url).pathname)) url = url.replace(/\/?$/, '/rpc');
  let token = options.token ?? (env.PLINTH_TOKEN !== undefined && env.PLINTH_TOKEN !== '' ? env.PLINTH_TOKEN : undefined);
  if (token === undefined) {
    try {
      token = readFileSync(path.join(options.dataDir, TOKEN_FILE), 'utf8').trim();
    } catch {
      token = undefined;
    }
  }
  return { url, token, from };
}

type Listener<N extends keyof RpcNotifications> = (params: RpcNotifications[N]) => void;

export class ControlClient {
  readonly #peer: Peer;
  readonly #socket: WebSocket;
  readonly #listeners = new Map<string, Set<(params: unknown) => void>>();

  constructor(socket: WebSocket) {
    this.#socket = socket;
    const transport: Transport = {
      send: (m) => {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(m));
      },
      onMessage: (l) => socket.on('message', (data) => l((data as Buffer).toString())),
      onClose: (l) => socket.once('close', (code, reason) => l(`the host closed the connection (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`)),
      close: () => socket.close(1000),
    };
    this.#peer = new Peer(transport);
  }

  request<M extends keyof RpcMethods>(method: M, params?: RpcMethods[M]['params'], options: { signal?: AbortSignal } = {}): Promise<RpcMethods[M]['result']> {
    return this.#peer.request(method, params ?? {}, options) as Promise<RpcMethods[M]['result']>;
  }

  /** Listens to a server notification; returns the removal. */
  on<N extends keyof RpcNotifications>(name: N, listener: Listener<N>): () => void {
    let set = this.#listeners.get(name);
    if (!set) {
      const created = new Set<(params: unknown) => void>();
      this.#listeners.set(name, (set = created));
      this.#peer.handle(name, (params) => {
        for (const l of created) l(params);
      });
    }
    const l = listener as (params: unknown) => void;
    set.add(l);
    return () => set.delete(l);
  }

  onClose(listener: (reason: string) => void): void {
    this.#peer.onClose(listener);
  }

  get closed(): boolean {
    return this.#peer.closed;
  }

  close(): Promise<void> {
    if (this.#socket.readyState === this.#socket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.#socket.once('close', () => resolve());
      this.#socket.close(1000);
    });
  }
}

/** Opens the WebSocket with the token; a host that is not there, or refuses the token, is a coded error. */
export async function connectControl(endpoint: Pick<Endpoint, 'url' | 'token'>, options: { origin?: string; timeoutMs?: number } = {}): Promise<ControlClient> {
  const socket = await openWebSocket(endpoint.url, {
    ...(endpoint.token !== undefined ? { token: endpoint.token } : {}),
    ...options,
    refused: (status) =>
      status === 401 || status === 403
        ? new PlinthError('PLINTH_ERR_CONTROL_AUTH', `the host at ${endpoint.url} refused the ${status === 401 ? 'token' : 'origin'} (HTTP ${status})`, {
            hint: 'pass --token or PLINTH_TOKEN with the token of the running host (its <dataDir>/token), or run this command with the same --data-dir',
          })
        : new PlinthError('PLINTH_ERR_CONTROL_UNREACHABLE', `the host at ${endpoint.url} answered HTTP ${status} instead of opening the control channel`, { hint: START_HINT }),
    unreachable: (detail) => new PlinthError('PLINTH_ERR_CONTROL_UNREACHABLE', `no Plinth host is running at ${endpoint.url} (${detail})`, { hint: START_HINT }),
  });
  return new ControlClient(socket);
}
