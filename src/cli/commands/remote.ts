// CLI commands that talk to a running host over the control channel (issue 12): status, ls --remote,
// call --remote, emit, subscribe, run --remote, runs, logs -f, reload. Each finds the host through --url, else
// <dataDir>/serve.json, else the default port; its token through --token, else PLINTH_TOKEN, else <dataDir>/token.
// When no host runs, the error says how to start one.
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { connectControl, resolveEndpoint, SERVE_FILE, type ControlClient } from '../../control/index.ts';
import type { RpcMethods, RpcNotifications } from '../../control/rpc-types.ts';
import { EXIT, table, usageError, type Io, type Outcome } from '../output.ts';

export interface RemoteFlags extends ConfigFlags {
  url?: string;
  token?: string;
  json?: boolean;
}

async function client(flags: RemoteFlags): Promise<ControlClient> {
  const config = await loadHostConfig({ flags });
  // --token, else the config's control.token (the host's admin token when both read one config), else PLINTH_TOKEN / the token file.
  const token = flags.token ?? config.control.token;
  const endpoint = resolveEndpoint({ ...(flags.url !== undefined ? { url: flags.url } : {}), ...(token !== undefined ? { token } : {}), dataDir: config.dataDir });
  return connectControl(endpoint);
}

async function withClient<T>(flags: RemoteFlags, fn: (c: ControlClient) => Promise<T>): Promise<T> {
  const c = await client(flags);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** Resolves on SIGINT/SIGTERM (or when `until` resolves): streaming commands end cleanly, exit 0. */
function untilStopped(signals: NodeJS.EventEmitter, until?: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      signals.removeListener('SIGINT', done);
      signals.removeListener('SIGTERM', done);
      resolve();
    };
    signals.once('SIGINT', done);
    signals.once('SIGTERM', done);
    void until?.then(done, done);
  });
}

type Extension = RpcMethods['extensions.list']['result']['extensions'][number];

export function status(io: Io, flags: RemoteFlags): Promise<Outcome> {
  return withClient(flags, async (c) => {
    const info = await c.request('host.info');
    const { extensions } = await c.request('extensions.list');
    if (!flags.json) {
      io.out(`plinth ${info.version} (pid ${info.pid}), up ${Math.round(info.uptimeMs / 1000)} s: ${info.extensions.active} active, ${info.extensions.failed} failed of ${info.extensions.total}; ${info.connections ?? 1} control connection(s)`);
      if (extensions.length > 0) io.out(table(['ID', 'VERSION', 'RUNTIME', 'STATE', 'BREAKER', 'RESTARTS', 'SINCE', 'REASON'], extensions.map((e: Extension) => [e.id, e.version || '-', e.runtime || '-', e.state, e.breaker ?? '-', String(e.restarts ?? 0), e.since ?? '', e.reason ? `${e.reason.code}: ${e.reason.message}`.slice(0, 80) : ''])));
      // Remote extensions: their pool of runners (issue 13), one line per runner.
      for (const e of extensions) {
        if (!e.pool) continue;
        io.out(`\n${e.id} pool (${e.pool.strategy}): ${e.pool.ready} ready of ${e.pool.instances.length} runner(s), ${e.pool.outstanding} call(s) in flight`);
        if (e.pool.instances.length > 0) {
          io.out(table(['RUNNER', 'CONNECTION', 'STATE', 'OUTSTANDING', 'HEALTHY', 'BREAKER', 'CALLS', 'FAILURES', 'SINCE'], e.pool.instances.map((i) => [i.instance, String(i.connection), i.state, String(i.outstanding), i.healthy === null ? '-' : i.healthy ? 'yes' : 'no', i.breaker, String(i.calls), String(i.failures), i.since])));
        }
      }
    }
    return { code: EXIT.ok, data: { host: info, extensions } };
  });
}

export function lsRemote(io: Io, flags: RemoteFlags): Promise<Outcome> {
  return withClient(flags, async (c) => {
    const { extensions } = await c.request('extensions.list');
    if (!flags.json) io.out(extensions.length === 0 ? 'the host runs no extensions' : table(['ID', 'VERSION', 'RUNTIME', 'STATE', 'PATH'], extensions.map((e: Extension) => [e.id, e.version || '-', e.runtime || '-', e.state, e.path ?? ''])));
    return { code: extensions.some((e: Extension) => e.state === 'failed') ? EXIT.failed : EXIT.ok, data: { extensions } };
  });
}

export function callRemote(io: Io, extension: string, stage: string, input: unknown, timeoutMs: number | undefined, flags: RemoteFlags, signals: NodeJS.EventEmitter = process): Promise<Outcome> {
  return withClient(flags, async (c) => {
    // Ctrl-C cancels the call on the host ($/cancelRequest), then the command ends with its error.
    const abort = new AbortController();
    const onSignal = () => abort.abort();
    signals.once('SIGINT', onSignal);
    try {
      const result = await c.request('stages.call', { extension, stage, input: input as never, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }, { signal: abort.signal });
      if (!flags.json) io.out(JSON.stringify(result.output, null, 2));
      return { code: EXIT.ok, data: { output: result.output, durationMs: result.durationMs } };
    } finally {
      signals.removeListener('SIGINT', onSignal);
    }
  });
}

export function parseJsonArg(what: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw usageError(`${what} is not valid JSON: ${(err as Error).message}`, `quote it for the shell, e.g. '{"id": 1}'`);
  }
}

export function emit(io: Io, topic: string, payload: unknown, headers: Record<string, string> | undefined, flags: RemoteFlags): Promise<Outcome> {
  return withClient(flags, async (c) => {
    const e = await c.request('events.publish', { topic, payload: payload as never, ...(headers ? { headers } : {}) });
    if (!flags.json) io.out(`published ${e.topic} (${e.id})`);
    return { code: EXIT.ok, data: e };
  });
}

/** Streams events as lines (`<time> <topic> <payload>`) or, with --json, one JSON object per line. `max` ends after that many. */
export function subscribe(io: Io, pattern: string, flags: RemoteFlags & { max?: number }, signals: NodeJS.EventEmitter = process): Promise<Outcome> {
  return withClient(flags, async (c) => {
    let count = 0;
    let enough: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => (enough = resolve));
    c.on('events.event', ({ event }) => {
      io.out(flags.json ? JSON.stringify(event) : `${event.time} ${event.topic} ${JSON.stringify(event.payload)}`);
      if (flags.max !== undefined && ++count >= flags.max) enough();
    });
    c.on('events.dropped', ({ count: n }) => io.err(`warning: ${n} event(s) dropped: this client read too slowly`));
    const closed = new Promise<string>((resolve) => c.onClose(resolve));
    const { subscription } = await c.request('events.subscribe', { pattern });
    io.err(`subscribed to ${pattern} (${subscription}); Ctrl-C to stop`);
    await untilStopped(signals, Promise.race([reached, closed]));
    // Lines were printed as they came; --json's envelope is not printed for a stream (each line is JSON).
    return { code: EXIT.ok, data: { pattern, events: count }, stream: true } as Outcome;
  });
}

export function logsFollow(io: Io, flags: RemoteFlags & { extension?: string; level?: string; max?: number }, signals: NodeJS.EventEmitter = process): Promise<Outcome> {
  return withClient(flags, async (c) => {
    let count = 0;
    let enough: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => (enough = resolve));
    c.on('logs.entry', (e) => {
      io.out(flags.json ? JSON.stringify(e) : `${e.time.slice(11, 23)} ${e.level.toUpperCase().padEnd(5)}${e.extension ? ` ${e.extension}:` : ''} ${e.msg}`);
      if (flags.max !== undefined && ++count >= flags.max) enough();
    });
    const closed = new Promise<string>((resolve) => c.onClose(resolve));
    await c.request('logs.subscribe', { ...(flags.extension ? { extension: flags.extension } : {}), ...(flags.level ? { level: flags.level as 'info' } : {}) });
    io.err(`following the host log${flags.extension ? ` of ${flags.extension}` : ''}; Ctrl-C to stop`);
    await untilStopped(signals, Promise.race([reached, closed]));
    return { code: EXIT.ok, data: { entries: count }, stream: true } as Outcome;
  });
}

export function reload(io: Io, id: string | undefined, flags: RemoteFlags): Promise<Outcome> {
  return withClient(flags, async (c) => {
    const r = await c.request('extensions.reload', id !== undefined ? { id } : {});
    if (!flags.json) io.out(r.extension ? `${r.extension.id} ${r.extension.version}: ${r.extension.state}${r.extension.reloadError ? ` (the copy on disk was refused: ${r.extension.reloadError.code})` : ''}` : `reloaded: ${r.extensions.length} extension(s)`);
    return { code: r.extension?.state === 'failed' ? EXIT.failed : EXIT.ok, data: r };
  });
}

export function runs(io: Io, flags: RemoteFlags & { pipeline?: string; limit?: number }): Promise<Outcome> {
  return withClient(flags, async (c) => {
    const { runs: list } = await c.request('runs.list', { ...(flags.pipeline ? { pipeline: flags.pipeline } : {}), ...(flags.limit ? { limit: flags.limit } : {}) });
    if (!flags.json) io.out(list.length === 0 ? 'no runs' : table(['RUN', 'PIPELINE', 'STATE', 'CREATED', 'ENDED'], list.map((r) => [r.id, r.pipeline, r.state, r.createdAt ?? '', r.endedAt ?? ''])));
    return { code: EXIT.ok, data: { runs: list } };
  });
}

export function runRemote(io: Io, file: string, variables: Record<string, unknown> | undefined, flags: RemoteFlags, signals: NodeJS.EventEmitter = process): Promise<Outcome> {
  return withClient(flags, async (c) => {
    // The file is read here and sent as a definition when it is JSON; otherwise the host reads the path.
    const abs = path.resolve(file);
    await readFile(abs, 'utf8').catch((err: Error) => {
      throw usageError(`cannot read ${file}: ${err.message}`);
    });
    const progress = (p: RpcNotifications['runs.progress']) => {
      if (flags.json) return;
      io.err(`${p.stage ? `  ${p.stage.padEnd(24)}` : 'run '}${p.state}${p.attempt && p.attempt > 1 ? ` (attempt ${p.attempt})` : ''}${p.durationMs !== undefined ? ` ${Math.round(p.durationMs)} ms` : ''}${p.error ? `  ${p.error.code}: ${p.error.message}` : ''}`);
    };
    c.on('runs.progress', progress);
    const { runId } = await c.request('pipelines.run', { file: abs, ...(variables ? { variables } : {}) });
    if (!flags.json) io.err(`run ${runId} started`);
    const abort = new AbortController();
    const onSignal = () => void c.request('pipelines.cancel', { runId }).catch(() => undefined);
    signals.on('SIGINT', onSignal);
    try {
      const { run } = await c.request('pipelines.status', { runId, wait: true }, { signal: abort.signal });
      if (!flags.json) io.out(`run ${run.id}: ${run.state}${run.error ? ` — ${run.error.code}: ${run.error.message}` : ''}`);
      return { code: run.state === 'succeeded' ? EXIT.ok : EXIT.failed, data: { run } };
    } finally {
      signals.removeListener('SIGINT', onSignal);
    }
  });
}

/** Whether <dataDir>/serve.json names a live process (a host is serving this data dir). */
export function hostServing(dataDir: string): boolean {
  try {
    const { pid } = JSON.parse(readFileSync(path.join(dataDir, SERVE_FILE), 'utf8')) as { pid?: unknown };
    if (typeof pid !== 'number') return false;
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface DlqRemoteFilters {
  topic?: string;
  subscriber?: string;
  since?: string;
  until?: string;
  limit?: number;
}

type Letter = RpcMethods['dlq.list']['result']['deadLetters'][number];

/** `plinth dlq …` while a host serves the data dir: through the control channel, so the host's own bus sees it. */
export function dlqRemote(io: Io, action: 'ls' | 'show' | 'replay' | 'purge', ids: number[], filters: DlqRemoteFilters & { all?: boolean; to?: 'original' | 'all' }, flags: RemoteFlags): Promise<Outcome> {
  return withClient(flags, async (c) => {
    const query = { ...filters };
    delete (query as { all?: unknown }).all;
    delete (query as { to?: unknown }).to;
    if (action === 'ls') {
      const { deadLetters } = await c.request('dlq.list', query);
      if (!flags.json) io.out(deadLetters.length === 0 ? 'no dead letters' : table(['ID', 'SUBSCRIBER', 'TOPIC', 'ATTEMPTS', 'DEAD AT'], deadLetters.map((d: Letter) => [String(d.id), d.subscriber, d.event.topic, String(d.attempts.length), d.deadAt])));
      return { code: EXIT.ok, data: { deadLetters } };
    }
    if (action === 'show') {
      const { deadLetter } = await c.request('dlq.get', { id: ids[0]! });
      if (!flags.json) io.out(JSON.stringify(deadLetter, null, 2));
      return { code: EXIT.ok, data: { deadLetter } };
    }
    if (action === 'purge') {
      const { purged } = await c.request('dlq.purge', { ...query, ...(ids.length > 0 ? { ids } : {}), ...(filters.all ? { all: true } : {}) });
      if (!flags.json) io.out(`purged ${purged} dead letter(s)`);
      return { code: EXIT.ok, data: { purged } };
    }
    const targets = ids.length > 0 ? ids : (await c.request('dlq.list', query)).deadLetters.map((d: Letter) => d.id);
    const replayed: Array<{ id: number; to: string[] }> = [];
    for (const id of targets) replayed.push({ id, to: (await c.request('dlq.replay', { id, ...(filters.to ? { to: filters.to } : {}) })).replayedTo });
    if (!flags.json) io.out(replayed.length === 0 ? 'no dead letters matched' : replayed.map((r) => `replayed ${r.id} → ${r.to.join(', ') || '(no subscriber of its topic)'}`).join('\n'));
    return { code: EXIT.ok, data: { replayed } };
  });
}
