// Helpers for the control-channel tests: a real `plinth serve` subprocess with a config of the test's choosing,
// and a raw WebSocket client that sends text as given and reads every message the server sends.
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { WebSocket, type ClientOptions } from 'ws';
import { signExtension } from '../../src/trust/index.ts';
import { ROOT } from '../helpers.ts';
import { cliWorkspace, publisher, spawnServe, type CliWorkspace, type ServeProcess } from '../cli/helpers.ts';

export const CONTROL_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'control');

export interface RunningServe {
  ws: CliWorkspace;
  serve: ServeProcess;
  url: string;
  port: number;
  token: string;
  http: string;
}

/** `plinth serve --port 0` over the bundled plugins and test/fixtures/control/slow-worker, with `control` settings. */
export async function startServe(control: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<RunningServe> {
  const ws = await cliWorkspace([], { bundled: true });
  const dir = path.join(ws.plugins, 'slow-worker');
  await cp(path.join(CONTROL_FIXTURES, 'slow-worker'), dir, { recursive: true });
  await signExtension(dir, publisher.privateKey, publisher.id);
  const config = path.join(ws.root, 'plinth.config.json');
  await writeFile(config, JSON.stringify({ control, ...extra }, null, 2));
  const serve = spawnServe(ws, ['--no-watch', '--config', config, '--log-format', 'json']);
  try {
    await serve.waitFor(/control channel on/, 30_000, 'the control channel to listen');
  } catch (err) {
    serve.kill();
    throw err;
  }
  const info = JSON.parse(await readFile(path.join(ws.data, 'serve.json'), 'utf8')) as { url: string; port: number; pid: number };
  const token = (await readFile(path.join(ws.data, 'token'), 'utf8')).trim();
  return { ws, serve, url: info.url, port: info.port, token, http: `http://127.0.0.1:${info.port}` };
}

export async function stopServe(s: RunningServe | undefined): Promise<void> {
  if (!s) return;
  s.serve.signalGroup('SIGTERM');
  const timer = setTimeout(() => s.serve.kill(), 10_000);
  await s.serve.exited;
  clearTimeout(timer);
}

export interface RawClient {
  socket: WebSocket;
  send(text: string | object): void;
  /** The next message (parsed), or rejects after `ms`. */
  next(ms?: number): Promise<unknown>;
  /** Sends a request and resolves with the reply of that id (notifications before it are kept for next()). */
  call(method: string, params?: unknown, id?: string | number): Promise<{ id: unknown; result?: unknown; error?: { code: number; message: string; data?: { code: string; problems?: Array<{ path: string }> } } }>;
  /** Notifications of `method` received so far. */
  notifications(method: string): unknown[];
  /** Resolves once a notification of `method` matching `test` has come. */
  waitNotification(method: string, test?: (params: never) => boolean, ms?: number): Promise<unknown>;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

let nextId = 1;

export function rawClient(url: string, options: ClientOptions & { token?: string; protocols?: string[] } = {}): Promise<RawClient> {
  const { token, protocols, ...rest } = options;
  const socket = new WebSocket(url, protocols ?? [], { ...rest, headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...rest.headers } });
  const queue: unknown[] = [];
  const notes: Array<{ method: string; params: unknown }> = [];
  const waiters = new Set<() => void>();
  socket.on('message', (data) => {
    const m = JSON.parse((data as Buffer).toString()) as { method?: string; params?: unknown };
    if (!Array.isArray(m) && typeof m.method === 'string') notes.push({ method: m.method, params: m.params });
    else queue.push(m);
    for (const w of [...waiters]) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const wait = <T>(check: () => T | undefined, ms: number, what: string) =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(test);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const test = () => {
        const v = check();
        if (v === undefined) return;
        clearTimeout(timer);
        waiters.delete(test);
        resolve(v);
      };
      waiters.add(test);
      test();
    });
  const client: RawClient = {
    socket,
    closed,
    send: (t) => socket.send(typeof t === 'string' ? t : JSON.stringify(t)),
    next: (ms = 10_000) => wait(() => (queue.length > 0 ? queue.shift() : undefined), ms, 'a message'),
    async call(method, params, id = `t${nextId++}`) {
      socket.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params !== undefined ? { params } : {}) }));
      return wait(
        () => {
          const i = queue.findIndex((m) => (m as { id?: unknown }).id === id);
          return i < 0 ? undefined : (queue.splice(i, 1)[0] as Awaited<ReturnType<RawClient['call']>>);
        },
        20_000,
        `the reply to ${method}`,
      );
    },
    notifications: (method) => notes.filter((n) => n.method === method).map((n) => n.params),
    waitNotification: (method, test = () => true, ms = 10_000) => wait(() => notes.find((n) => n.method === method && test(n.params as never))?.params, ms, `a ${method} notification`),
    close: () => socket.close(),
  };
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(client));
    socket.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    socket.once('error', reject);
  });
}

/** Opens a WebSocket and resolves with the HTTP status the upgrade was refused with (or 101). */
export function upgradeStatus(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<number> {
  const { protocols, ...rest } = options;
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, protocols ?? [], rest);
    socket.once('open', () => {
      socket.close();
      resolve(101);
    });
    socket.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}
