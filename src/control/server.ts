// The control channel (issue 12, DESIGN.md §7): one HTTP(S) server on one port — WebSocket JSON-RPC 2.0 on /rpc
// through the sandbox link's Peer, and GET /health, /ready, /metrics, POST /hooks/<name>. Every connection is
// authenticated at the upgrade (bearer token → role), bounded (message size, rate, requests in flight, send
// buffer) and watched (heartbeat); one connection's misbehaviour only ever closes that connection.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from 'pino';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { ControlConfig, ControlRole } from '../config/index.ts';
import { Peer, RpcError, RPC_ERRORS, type Transport } from '../sandbox/link/index.ts';
import type { RunnerLink } from '../sandbox/index.ts';
import { tickCorker } from '../sandbox/link/ws.ts';
import type { PipelineService, RunProgress } from '../pipeline/types.ts';
import { loadRpcSchemas, compileParams, type RpcSchemas } from './schemas.ts';
import { loadTokens, presentedToken, isLoopback, RPC_PROTOCOL, type TokenSet } from './auth.ts';
import { ControlMetrics } from './metrics.ts';
import { createMethods, type ControlHost, type MethodImpl, type Session } from './methods.ts';
import type { LogHub } from './logs.ts';
import type { BusCounters } from '../events/index.ts';
import { WebhookReceiver, type WebhookTarget } from './hooks.ts';

export interface ControlServerOptions {
  host: ControlHost & { observeCalls?(o: ControlMetrics['calls']): () => void; readonly bus: ControlHost['bus'] & { counters?: BusCounters } };
  config: ControlConfig;
  dataDir: string;
  log: Logger;
  version: string;
  apiVersion: string;
  pipelines?: PipelineService;
  logs?: LogHub;
  webhooks?: WebhookTarget;
  env?: NodeJS.ProcessEnv;
}

let schemasCache: RpcSchemas | undefined;
let validatorsCache: ReturnType<typeof compileParams> | undefined;

/** The token bucket of one connection: `perSecond` sustained, `burst` at once. */
class Bucket {
  #tokens: number;
  #at = performance.now();
  readonly #rate: number;
  readonly #burst: number;
  constructor(rate: number, burst: number) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
  }
  take(n: number): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }
}

class Connection implements Session {
  readonly id: number;
  readonly role: ControlRole;
  readonly socket: WebSocket;
  readonly peer: Peer;
  readonly subscriptions = new Map<string, () => void>();
  readonly runs = new Set<string>();
  readonly bucket: Bucket;
  #subscriptionSeq = 0;
  inFlight = 0;
  refused = 0;
  runner: Session['runner'] = undefined;
  dropped = 0;
  alive = true;
  readonly #config: ControlConfig;
  #listener: (m: unknown) => void = () => undefined;

  constructor(id: number, role: ControlRole, socket: WebSocket, config: ControlConfig) {
    this.id = id;
    this.role = role;
    this.socket = socket;
    this.#config = config;
    this.bucket = new Bucket(config.rateLimit.perSecond, config.rateLimit.burst);
    // Replies and notifications that complete together (a batch of results from a sandbox, a runner's burst of
    // stage.execute at N in flight) leave in one write per tick instead of one syscall each.
    const cork = tickCorker(socket);
    const transport: Transport = {
      send: (m) => {
        if (socket.readyState !== socket.OPEN) return;
        cork();
        socket.send(JSON.stringify(m));
      },
      onMessage: (l) => (this.#listener = l),
      onClose: (l) => socket.once('close', (code, reason) => l(`connection closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`)),
      close: () => socket.close(1000),
    };
    this.peer = new Peer(transport);
  }

  nextSubscription(): string {
    return `${this.id}.${++this.#subscriptionSeq}`;
  }

  runnerLink(): RunnerLink {
    // 4000: an application close (RFC 6455 §7.4.2), with the host's reason; a runner reconnects after it.
    return { peer: this.peer, connection: this.id, close: (reason) => this.socket.close(4000, reason.slice(0, 120)) };
  }

  feed(value: unknown): void {
    this.#listener(value);
  }

  /**
   * A server notification, through the bounded send buffer: past `maxBufferedBytes` it is dropped and counted;
   * once the client has caught up it first hears `events.dropped {count}`; past `maxDroppedNotifications` the
   * connection is closed (1008). A slow client never holds the host's memory or its event loop.
   */
  notify(method: string, params: unknown): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    if (this.socket.bufferedAmount > this.#config.maxBufferedBytes) {
      this.dropped++;
      if (this.dropped > this.#config.maxDroppedNotifications) this.socket.close(1008, 'too slow: notifications dropped past control.maxDroppedNotifications');
      // Told as soon as it has caught up, not at the next notification (there may be none for a while).
      else this.#catchUp ??= setInterval(() => this.flushDropped(), 50).unref();
      return;
    }
    this.flushDropped();
    this.peer.notify(method, params);
  }

  #catchUp: NodeJS.Timeout | undefined;

  flushDropped(): void {
    if (this.socket.readyState !== this.socket.OPEN) return this.#stopCatchUp();
    if (this.dropped === 0) return this.#stopCatchUp();
    if (this.socket.bufferedAmount > this.#config.maxBufferedBytes) return;
    this.#stopCatchUp();
    const count = this.dropped;
    this.dropped = 0;
    this.peer.notify('events.dropped', { count });
  }

  #stopCatchUp(): void {
    clearInterval(this.#catchUp);
    this.#catchUp = undefined;
  }

  end(): void {
    this.#stopCatchUp();
    for (const off of this.subscriptions.values()) off();
    this.subscriptions.clear();
    this.runs.clear();
  }
}

function refuseUpgrade(socket: Duplex, status: number, text: string, body: Record<string, unknown>): void {
  const json = JSON.stringify(body);
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

export interface ListenInfo {
  host: string;
  port: number;
  url: string;
}

export class ControlServer {
  readonly #o: ControlServerOptions;
  readonly #schemas: RpcSchemas;
  readonly #validators: ReturnType<typeof compileParams>;
  readonly #methods: Map<string, MethodImpl>;
  readonly #connections = new Set<Connection>();
  readonly metrics: ControlMetrics;
  readonly tokens: TokenSet;
  readonly #server: http.Server;
  readonly #wss: WebSocketServer;
  readonly #hooks: WebhookReceiver | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #nextId = 1;
  readonly #offs: Array<() => void> = [];
  #listening: ListenInfo | undefined;

  constructor(options: ControlServerOptions) {
    this.#o = options;
    const { config } = options;
    schemasCache ??= loadRpcSchemas();
    validatorsCache ??= compileParams(schemasCache);
    this.#schemas = schemasCache;
    this.#validators = validatorsCache;
    this.tokens = loadTokens(config, options.dataDir, options.env);
    if (!isLoopback(config.host) && !config.allowInsecure) {
      if (!config.tls) throw new PlinthError('PLINTH_ERR_CONTROL_BIND_REFUSED', `refusing to listen on ${config.host} without TLS`, { hint: 'set control.tls {cert, key}, or control.allowInsecure: true (--allow-insecure) on a network you trust' });
      if (this.tokens.source === 'file') throw new PlinthError('PLINTH_ERR_CONTROL_BIND_REFUSED', `refusing to listen on ${config.host} with the generated token`, { hint: 'set control.token or PLINTH_TOKEN, or control.allowInsecure: true (--allow-insecure)' });
    }
    this.metrics = new ControlMetrics({
      list: () => options.host.list(),
      ...(options.host.bus.counters ? { busCounters: options.host.bus.counters } : {}),
      deadLetters: () => options.host.bus.listDeadLetters().length,
      ...(options.pipelines ? { pipelines: options.pipelines } : {}),
      connections: () => this.#connections.size,
    });
    const startedAt = Date.now();
    this.#methods = createMethods({
      host: options.host,
      pipelines: options.pipelines,
      logs: options.logs,
      version: options.version,
      apiVersion: options.apiVersion,
      startedAt,
      connections: () => this.#connections.size,
    });
    this.#hooks = options.webhooks ? new WebhookReceiver(options.webhooks, config.hooks, this.tokens) : undefined;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.#http(req, res);
    this.#server = config.tls ? https.createServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, handler) : http.createServer(handler);
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: config.maxMessageBytes,
      // Never echo the token form back: select the RPC protocol when offered, else none.
      handleProtocols: (protocols) => (protocols.has(RPC_PROTOCOL) ? RPC_PROTOCOL : false),
    });
    this.#server.on('upgrade', (req, socket, head) => this.#upgrade(req, socket, head));
  }

  get connections(): number {
    return this.#connections.size;
  }

  get address(): ListenInfo | undefined {
    return this.#listening;
  }

  async listen(): Promise<ListenInfo> {
    const { config } = this.#o;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(
          new PlinthError('PLINTH_ERR_CONTROL_LISTEN_FAILED', `cannot listen on ${config.host}:${config.port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`, {
            hint: 'stop what uses the port, or pick another with --port (--port 0 takes any free one)',
          }),
        );
      };
      this.#server.once('error', onError);
      this.#server.listen(config.port, config.host, () => {
        this.#server.removeListener('error', onError);
        resolve();
      });
    });
    const addr = this.#server.address() as AddressInfo;
    const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.#listening = { host: addr.address, port: addr.port, url: `${config.tls ? 'wss' : 'ws'}://${shown}:${addr.port}/rpc` };
    this.#heartbeat = setInterval(() => this.#beat(), config.heartbeatMs);
    this.#heartbeat.unref();
    if (this.#o.host.observeCalls) this.#offs.push(this.#o.host.observeCalls(this.metrics.calls));
    this.#offs.push(this.#o.host.bus.subscribe('extension.*.*', (e) => this.#extensionChanged(e.topic, e.payload), { durable: false }));
    if (this.#o.pipelines) this.#offs.push(this.#o.pipelines.onProgress((p) => this.#progress(p)));
    return this.#listening;
  }

  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    for (const off of this.#offs.splice(0)) off();
    for (const c of this.#connections) {
      c.end();
      c.socket.close(1001, 'host stopping');
    }
    // Connections that do not answer the close in time are cut.
    const cut = setTimeout(() => {
      for (const c of this.#connections) c.socket.terminate();
    }, 1000);
    cut.unref();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections?.();
    });
    clearTimeout(cut);
    this.#wss.close();
  }

  #extensionChanged(topic: string, payload: unknown): void {
    if (topic.endsWith('.breaker')) return;
    const p = payload as { id?: unknown; version?: unknown; state?: unknown; previous?: unknown; reason?: unknown };
    if (typeof p?.id !== 'string' || typeof p.state !== 'string') return;
    const params = { id: p.id, ...(typeof p.version === 'string' ? { version: p.version } : {}), state: p.state, previous: typeof p.previous === 'string' ? p.previous : null, reason: p.reason ?? null };
    for (const c of this.#connections) if (c.role !== 'runner') c.notify('extensions.changed', params);
  }

  #progress(p: RunProgress): void {
    if (p.stage !== undefined && p.durationMs !== undefined && ['succeeded', 'failed', 'skipped', 'cancelled', 'compensated'].includes(p.state)) this.metrics.stage(p.pipeline, p.stage, p.state, p.durationMs);
    for (const c of this.#connections) if (c.runs.has(p.runId)) c.notify('runs.progress', p);
  }

  #beat(): void {
    for (const c of this.#connections) {
      // No pong since the last ping: a dead peer (or a frozen one). Its socket is cut, nothing waits on it.
      if (!c.alive) {
        this.#o.log.info({ connection: c.id }, 'control connection dropped: no pong to the last heartbeat');
        c.socket.terminate();
        continue;
      }
      c.alive = false;
      c.socket.ping();
      c.flushDropped();
    }
  }

  #upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const { config } = this.#o;
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/rpc') return refuseUpgrade(socket, 404, 'Not Found', { error: 'WebSocket is served on /rpc only' });
    const origin = req.headers.origin;
    if (origin !== undefined && !config.allowedOrigins.includes(origin)) {
      return refuseUpgrade(socket, 403, 'Forbidden', { code: 'PLINTH_ERR_CONTROL_AUTH', message: `origin ${origin} is not allowed`, hint: 'add it to control.allowedOrigins' });
    }
    const role = this.tokens.match(presentedToken(req));
    if (!role) return refuseUpgrade(socket, 401, 'Unauthorized', { code: 'PLINTH_ERR_CONTROL_AUTH', message: 'missing or wrong token', hint: 'send Authorization: Bearer <token> (the host prints where its token is)' });
    if (this.#connections.size >= config.maxConnections) {
      return refuseUpgrade(socket, 503, 'Service Unavailable', { code: 'PLINTH_ERR_CONTROL_LISTEN_FAILED', message: `control.maxConnections (${config.maxConnections}) reached` });
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#connected(ws, role));
  }

  #connected(ws: WebSocket, role: ControlRole): void {
    const { config, log } = this.#o;
    const c = new Connection(this.#nextId++, role, ws, config);
    this.#connections.add(c);
    for (const [name, schema] of this.#schemas.methods) c.peer.handle(name, (params, ctx) => this.#call(c, name, schema.roles, params, ctx.signal, ctx.id === undefined));
    ws.on('pong', () => (c.alive = true));
    ws.on('message', (data, isBinary) => this.#message(c, data as Buffer, isBinary));
    ws.on('error', (err) => log.debug({ connection: c.id, err: err.message }, 'control connection error'));
    ws.once('close', () => {
      this.#connections.delete(c);
      c.end();
    });
  }

  #message(c: Connection, data: Buffer, isBinary: boolean): void {
    const text = isBinary ? data.toString('utf8') : data.toString();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // The Peer answers -32700 (id null); it still costs a token.
      if (!c.bucket.take(1)) return this.#rateLimited(c, undefined);
      return c.feed(text);
    }
    // A runner's replies answer the host's own requests (stage.execute, …): the host paces those, not the bucket.
    if (c.role === 'runner' && typeof value === 'object' && value !== null && !Array.isArray(value) && !('method' in value)) return c.feed(value);
    // A batch costs one token per element: batching is no way around the limit.
    if (!c.bucket.take(Array.isArray(value) ? Math.max(1, value.length) : 1)) return this.#rateLimited(c, value);
    c.refused = 0;
    c.feed(value);
  }

  /** Refuses a message over the rate: each request in it is answered with the coded error; abuse closes (1008). */
  #rateLimited(c: Connection, value: unknown): void {
    const { rateLimit } = this.#o.config;
    c.refused++;
    this.metrics.rpc('*', 'PLINTH_ERR_RPC_RATE_LIMITED');
    if (c.refused >= rateLimit.closeAfter) {
      this.#o.log.warn({ connection: c.id, refused: c.refused }, 'control connection closed: rate limit abuse');
      c.socket.close(1008, 'rate limit: control.rateLimit');
      return;
    }
    const err = new PlinthError('PLINTH_ERR_RPC_RATE_LIMITED', `more than control.rateLimit.perSecond = ${rateLimit.perSecond} messages a second (burst ${rateLimit.burst}): refused`, {
      hint: `slow down; after ${rateLimit.closeAfter} refusals in a row the connection is closed. Raise control.rateLimit.* if this is expected`,
    });
    const replyTo = (m: unknown) => {
      const id = typeof m === 'object' && m !== null && 'method' in m ? (m as { id?: unknown }).id : undefined;
      return typeof id === 'string' || typeof id === 'number' ? { jsonrpc: '2.0', id, error: { code: RPC_ERRORS.application, message: err.message, data: err.toJSON() } } : undefined;
    };
    const replies = (Array.isArray(value) ? value : [value]).map(replyTo).filter((r) => r !== undefined);
    if (replies.length === 0 || c.socket.readyState !== c.socket.OPEN) return;
    c.socket.send(JSON.stringify(Array.isArray(value) ? replies : replies[0]));
  }

  async #call(c: Connection, method: string, roles: ControlRole[], params: unknown, signal: AbortSignal, notification: boolean): Promise<unknown> {
    const { config, log } = this.#o;
    let outcome = 'ok';
    try {
      if (!roles.includes(c.role)) {
        throw new PlinthError('PLINTH_ERR_RPC_FORBIDDEN', `a ${c.role} token may not call ${method}`, { hint: `${method} needs a token with role ${roles.join(' or ')}` });
      }
      if (Array.isArray(params)) throw new RpcError(RPC_ERRORS.invalidParams, 'Invalid params: give params by name (an object)', { code: 'PLINTH_ERR_RPC_PARAMS_INVALID', message: `${method} takes its params by name`, problems: [{ path: '', message: 'must be an object' }] });
      const p = (params ?? {}) as Record<string, unknown>;
      const problems = this.#validators.get(method)?.(p);
      if (problems) {
        throw new RpcError(RPC_ERRORS.invalidParams, `Invalid params: ${problems.map((x) => `${x.path || '/'} ${x.message}`).join('; ')}`, {
          code: 'PLINTH_ERR_RPC_PARAMS_INVALID',
          message: `${method}: params do not match schemas/rpc/${method}.json`,
          problems,
          hint: 'docs/rpc.md lists every method\'s params',
        });
      }
      if (c.inFlight >= config.maxConcurrentRequests) {
        throw new PlinthError('PLINTH_ERR_RPC_TOO_MANY_REQUESTS', `this connection already has ${c.inFlight} requests in flight (control.maxConcurrentRequests = ${config.maxConcurrentRequests})`, { hint: 'wait for replies before sending more, or raise control.maxConcurrentRequests' });
      }
      c.inFlight++;
      try {
        return await this.#methods.get(method)!(p, c, signal);
      } finally {
        c.inFlight--;
      }
    } catch (err) {
      if (err instanceof RpcError) {
        outcome = String(err.code);
        throw err;
      }
      if (isPlinthError(err)) {
        outcome = err.code;
        throw err;
      }
      outcome = 'PLINTH_ERR_INTERNAL';
      log.error({ method, err }, `control method ${method} failed unexpectedly`);
      throw new RpcError(RPC_ERRORS.internal, 'Internal error', { code: 'PLINTH_ERR_INTERNAL', message: `${method} failed: ${(err as Error)?.message ?? String(err)}`, hint: 'see the host log' });
    } finally {
      if (!notification || outcome !== 'ok') this.metrics.rpc(method, outcome);
    }
  }

  async #http(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const { config } = this.#o;
    try {
      if (req.method === 'GET' && url.pathname === '/health') return sendJson(res, 200, { status: 'ok' });
      if (req.method === 'GET' && url.pathname === '/ready') {
        const list = this.#o.host.list();
        const reasons = config.requiredExtensions
          .map((id) => {
            const e = list.find((x) => x.id === id && (x.state === 'active' || x.state === 'degraded')) ?? list.find((x) => x.id === id);
            if (!e) return { id, state: 'missing', reason: null };
            return e.state === 'active' || e.state === 'degraded' ? undefined : { id, state: e.state, reason: e.reason };
          })
          .filter((r) => r !== undefined);
        return sendJson(res, reasons.length === 0 ? 200 : 503, reasons.length === 0 ? { status: 'ready', required: config.requiredExtensions } : { status: 'not ready', reasons });
      }
      if (req.method === 'GET' && url.pathname === '/metrics') {
        const needsToken = config.metricsAuth === 'token' || (config.metricsAuth === 'auto' && !isLoopback(config.host));
        if (needsToken && !this.tokens.match(presentedToken(req))) return sendJson(res, 401, { code: 'PLINTH_ERR_CONTROL_AUTH', message: 'GET /metrics needs a bearer token here (control.metricsAuth)' });
        const text = await this.metrics.text();
        res.writeHead(200, { 'content-type': this.metrics.contentType });
        return void res.end(text);
      }
      if (url.pathname.startsWith('/hooks/')) {
        if (req.method !== 'POST') return sendJson(res, 405, { message: 'POST only' });
        if (!this.#hooks) return sendJson(res, 404, { code: 'PLINTH_ERR_WEBHOOK_NOT_FOUND', message: 'this host has no webhook triggers (no pipeline engine)' });
        const { status, body } = await this.#hooks.receive(decodeURIComponent(url.pathname.slice('/hooks/'.length)), req);
        return sendJson(res, status, body);
      }
      if (url.pathname === '/rpc') return sendJson(res, 426, { message: 'Upgrade Required: /rpc is a WebSocket (JSON-RPC 2.0)' });
      sendJson(res, 404, { message: 'not found', paths: ['/rpc (WebSocket)', '/health', '/ready', '/metrics', '/hooks/<name>'] });
    } catch (err) {
      this.#o.log.error({ err, path: url.pathname }, 'control HTTP request failed');
      if (!res.headersSent) sendJson(res, 500, { code: 'PLINTH_ERR_INTERNAL', message: String((err as Error)?.message ?? err) });
    }
  }
}
