// What each control-channel method does (schemas/rpc/ has their params and results). Each runs for one
// connection: subscriptions and watched runs belong to it and end with it.
import { PlinthError } from '../errors.ts';
import type { EventBus } from '../events/index.ts';
import { isReservedTopic, isValidPattern } from '../events/index.ts';
import type { Json } from '../sdk/index.ts';
import type { PipelineService, RunRecord } from '../pipeline/types.ts';
import type { RegistryEntry } from '../registry/index.ts';
import type { HostConfig, ControlRole } from '../config/index.ts';
import { LEVEL_NAMES, LEVEL_NUMBERS, type LogHub } from './logs.ts';
import type { RegisterParams, RegisterResult, RunnerLink } from '../sandbox/index.ts';
import type { ContextOp } from '../sandbox/types.ts';
import type { RunnerSession } from '../registry/registry.ts';

/** The host as the control channel sees it (src/host's Host fills it). */
export interface ControlHost {
  readonly config: HostConfig;
  readonly bus: EventBus;
  list(): RegistryEntry[];
  call(id: string, stage: string, input: Json, request?: { timeoutMs?: number; signal?: AbortSignal }): Promise<Json>;
  reload(): Promise<void>;
  setEnabled(id: string, enabled: boolean): Promise<void>;
  /** runner.register (issue 13): verifies and adds the runner of this connection; absent in hosts without runners. */
  registerRunner?(params: RegisterParams, link: RunnerLink): Promise<{ result: RegisterResult; session: RunnerSession }>;
}

export interface Session {
  id: number;
  role: ControlRole;
  notify(method: string, params: unknown): void;
  /** Subscriptions of this connection, by id; each value ends it. */
  subscriptions: Map<string, () => void>;
  /** Runs whose runs.progress this connection gets. */
  runs: Set<string>;
  nextSubscription(): string;
  /** This connection as a runner's link (its Peer, its close). */
  runnerLink(): RunnerLink;
  /** Set once this connection registered a runner. */
  runner: RunnerSession | undefined;
}

export interface MethodDeps {
  host: ControlHost;
  pipelines: PipelineService | undefined;
  logs: LogHub | undefined;
  version: string;
  apiVersion: string;
  startedAt: number;
  connections(): number;
}

type P = Record<string, unknown>;
/** A param the schema already checked is a string (or absent, where a default is given). */
const str = (v: unknown): string => v as string;
export type MethodImpl = (params: P, session: Session, signal: AbortSignal) => unknown;

function findExtension(host: ControlHost, id: string): RegistryEntry {
  const all = host.list().filter((e) => e.id === id);
  // The running copy first (a shadowed one is listed too).
  const e = all.find((x) => x.state === 'active' || x.state === 'degraded') ?? all[0];
  if (!e) throw new PlinthError('PLINTH_ERR_EXTENSION_NOT_FOUND', `no extension "${id}"`, { extension: id, hint: 'list them with `plinth ls --remote`' });
  return e;
}

function engine(deps: MethodDeps): PipelineService {
  if (!deps.pipelines) throw new PlinthError('PLINTH_ERR_RPC_UNAVAILABLE', 'this host has no pipeline engine', { hint: 'pipelines.* and runs.* need a host with the pipeline engine (host.info says `pipelines`)' });
  return deps.pipelines;
}

function run(p: PipelineService, runId: string): RunRecord {
  const r = p.get(runId);
  if (!r) throw new PlinthError('PLINTH_ERR_RUN_NOT_FOUND', `no run ${runId}`, { hint: 'list runs with `plinth runs`' });
  return r;
}

const source = (params: P) => (params.file !== undefined ? { file: str(params.file) } : { definition: params.definition });

function letterQuery(params: P) {
  const q: Record<string, unknown> = {};
  for (const k of ['topic', 'subscriber', 'since', 'until', 'limit'] as const) if (params[k] !== undefined) q[k] = params[k];
  if (Array.isArray(params.ids)) q.ids = params.ids;
  return q;
}

export function createMethods(deps: MethodDeps): Map<string, MethodImpl> {
  const { host } = deps;
  const m = new Map<string, MethodImpl>();
  m.set('host.info', (_p, session) => {
    const list = host.list();
    return {
      name: 'plinth',
      version: deps.version,
      apiVersion: deps.apiVersion,
      pid: process.pid,
      startedAt: new Date(deps.startedAt).toISOString(),
      uptimeMs: Math.round(Date.now() - deps.startedAt),
      dataDir: host.config.dataDir,
      plugins: host.config.plugins,
      extensions: { total: list.length, active: list.filter((e) => e.state === 'active' || e.state === 'degraded').length, failed: list.filter((e) => e.state === 'failed').length },
      pipelines: deps.pipelines !== undefined,
      connections: deps.connections(),
      role: session.role,
    };
  });
  m.set('extensions.list', () => ({ extensions: host.list() }));
  m.set('extensions.get', (p) => ({ extension: findExtension(host, str(p.id)) }));
  m.set('extensions.reload', async (p) => {
    if (p.id !== undefined) findExtension(host, str(p.id));
    await host.reload();
    return { extensions: host.list(), ...(p.id !== undefined ? { extension: findExtension(host, str(p.id)) } : {}) };
  });
  m.set('extensions.enable', async (p) => {
    await host.setEnabled(str(p.id), true);
    return { extension: findExtension(host, str(p.id)) };
  });
  m.set('extensions.disable', async (p) => {
    await host.setEnabled(str(p.id), false);
    return { extension: findExtension(host, str(p.id)) };
  });
  m.set('stages.call', async (p, _s, signal) => {
    const started = performance.now();
    const output = await host.call(str(p.extension), str(p.stage), p.input as Json, { signal, ...(p.timeoutMs !== undefined ? { timeoutMs: p.timeoutMs as number } : {}) });
    return { output, durationMs: Math.round((performance.now() - started) * 1000) / 1000 };
  });
  m.set('pipelines.validate', async (p) => {
    const { definition, issues } = await engine(deps).validate(source(p));
    return { valid: issues.length === 0, issues, ...(definition ? { definition } : {}) };
  });
  m.set('pipelines.run', async (p, session) => {
    const { runId } = await engine(deps).start(source(p), { ...(p.variables ? { variables: p.variables as Record<string, Json> } : {}), trigger: { type: 'manual', detail: { via: 'control' } } });
    session.runs.add(runId);
    return { runId };
  });
  m.set('pipelines.status', async (p, session, signal) => {
    const e = engine(deps);
    const runId = str(p.runId);
    const current = run(e, runId);
    if (p.wait !== true) return { run: current };
    session.runs.add(runId);
    return { run: await e.wait(runId, signal) };
  });
  m.set('pipelines.cancel', async (p) => {
    const e = engine(deps);
    run(e, str(p.runId));
    await e.cancel(str(p.runId), p.force === true ? { force: true } : {});
    return { runId: str(p.runId), state: e.get(str(p.runId))?.state };
  });
  m.set('pipelines.resume', async (p, session) => {
    const e = engine(deps);
    run(e, str(p.runId));
    const out = await e.resume(str(p.runId));
    session.runs.add(out.runId);
    return out;
  });
  m.set('runs.list', (p) => {
    const filter: { pipeline?: string; state?: RunRecord['state']; limit?: number } = {};
    if (p.pipeline !== undefined) filter.pipeline = str(p.pipeline);
    if (p.state !== undefined) filter.state = p.state as RunRecord['state'];
    if (p.limit !== undefined) filter.limit = p.limit as number;
    return { runs: engine(deps).list(filter) };
  });
  m.set('runs.get', (p) => ({ run: run(engine(deps), str(p.runId)) }));

  m.set('events.publish', async (p) => {
    const topic = str(p.topic);
    if (isReservedTopic(topic)) throw new PlinthError('PLINTH_ERR_TOPIC_RESERVED', `"${topic}" is a topic only the host publishes on`, { hint: 'publish under another root than extension., pipeline. or host.' });
    const e = await host.bus.publish(topic, p.payload as Json, 'control', p.headers as Record<string, string> | undefined);
    return { id: e.id, topic: e.topic, time: e.time };
  });
  m.set('events.subscribe', (p, session) => {
    const pattern = str(p.pattern);
    if (!isValidPattern(pattern)) throw new PlinthError('PLINTH_ERR_EVENT_TOPIC_INVALID', `not a valid topic pattern: ${JSON.stringify(pattern)}`, { hint: 'words, `*` (one word) and `#` (zero or more), separated by dots' });
    const subscription = session.nextSubscription();
    // In memory, not durable: the connection's queue is its send buffer (bounded; see the server's notify).
    const off = host.bus.subscribe(pattern, (event) => session.notify('events.event', { subscription, event }), { durable: false });
    session.subscriptions.set(subscription, off);
    return { subscription };
  });
  m.set('events.unsubscribe', (p, session) => {
    const id = str(p.subscription);
    const off = session.subscriptions.get(id);
    if (!off) throw new PlinthError('PLINTH_ERR_SUBSCRIPTION_NOT_FOUND', `this connection has no subscription ${id}`, { hint: 'use the id events.subscribe or logs.subscribe returned on this connection' });
    off();
    session.subscriptions.delete(id);
    return { unsubscribed: true };
  });
  m.set('dlq.list', (p) => ({ deadLetters: host.bus.listDeadLetters(letterQuery(p)) }));
  m.set('dlq.get', (p) => {
    const d = host.bus.getDeadLetter(p.id as number);
    if (!d) throw new PlinthError('PLINTH_ERR_DEAD_LETTER_NOT_FOUND', `no dead letter ${str(p.id)}`, { hint: 'list them with `plinth dlq ls`' });
    return { deadLetter: d };
  });
  m.set('dlq.replay', (p) => ({ id: p.id, replayedTo: host.bus.replayDeadLetter(p.id as number, (p.to as 'original' | 'all' | undefined) ?? 'original').replayedTo }));
  m.set('dlq.purge', (p) => {
    const q = letterQuery(p);
    if (p.all !== true && Object.keys(q).length === 0) throw new PlinthError('PLINTH_ERR_RPC_PARAMS_INVALID', 'which dead letters? give ids, filters, or all: true', { problems: [{ path: '', message: 'no ids, filters or all' }] });
    return { purged: host.bus.purgeDeadLetters(q) };
  });
  m.set('logs.subscribe', (p, session) => {
    if (!deps.logs) throw new PlinthError('PLINTH_ERR_RPC_UNAVAILABLE', 'this host does not stream its log', { hint: 'logs.subscribe works against `plinth serve`' });
    const min = LEVEL_NUMBERS[str(p.level ?? 'info')] ?? 30;
    const extension = p.extension === undefined ? undefined : str(p.extension);
    const subscription = session.nextSubscription();
    const off = deps.logs.subscribe((r) => {
      if (r.level < min || (extension !== undefined && r.extension !== extension)) return;
      const { level, time, msg, extension: ext, ...fields } = r;
      session.notify('logs.entry', { subscription, level: LEVEL_NAMES[level] ?? String(level), time: new Date(time).toISOString(), msg: String(msg ?? ''), ...(typeof ext === 'string' ? { extension: ext } : {}), fields });
    });
    session.subscriptions.set(subscription, off);
    return { subscription };
  });
  m.set('runner.register', async (p, session) => {
    if (!host.registerRunner) throw new PlinthError('PLINTH_ERR_RPC_UNAVAILABLE', 'this host takes no remote runners', { hint: 'register with a `plinth serve` host' });
    if (session.runner) throw new PlinthError('PLINTH_ERR_RUNNER_REFUSED', `this connection already registered ${session.runner.id}`, { hint: 'one extension per runner connection: open another connection for another extension' });
    const { result, session: runner } = await host.registerRunner(p as unknown as RegisterParams, session.runnerLink());
    session.runner = runner;
    return result;
  });
  const registered = (session: Session): RunnerSession => {
    if (!session.runner) throw new PlinthError('PLINTH_ERR_RUNNER_NOT_REGISTERED', 'this connection has not registered an extension', { hint: 'call runner.register first' });
    return session.runner;
  };
  m.set('runner.drain', (_p, session) => {
    registered(session).drain();
    return { draining: true };
  });
  m.set('ctx', async (p, session) => {
    const value = await registered(session).ctx(p.op as ContextOp);
    return value === undefined ? {} : { value };
  });
  return m;
}

