// `plinth serve`: the host over the plugin directories, hot-reloading them, until SIGINT/SIGTERM; and
// `plinth lock`: writes plinth.lock.json from the current resolution.
import path from 'node:path';
import type { Logger } from 'pino';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { Host, type HostExtensionInfo } from '../../host/index.ts';
import { createRegistry, loadTrustStoreFor } from '../../registry/index.ts';
import { LOCKFILE_NAME } from '../../resolve/index.ts';
import { EXIT, shownPath, usageError, type Io, type Outcome } from '../output.ts';
import { createLogger, jsonLogs } from '../log.ts';
import { checkPluginDirs } from '../plugins.ts';
import { writeFile, rm } from 'node:fs/promises';
import { ControlServer, LogHub, SERVE_FILE, webhookTargetForService, type LogRecord } from '../../control/index.ts';
import { HOST_API_VERSION } from '../../registry/index.ts';
import { VERSION } from '../version.ts';

export interface ServeFlags extends ConfigFlags {
  frozenLockfile?: boolean;
  lockfile?: string;
  watch?: boolean;
  stopTimeout?: string;
  json?: boolean;
  logFormat?: string;
  /** Control channel address (`control.host`, `control.port`). */
  host?: string;
  port?: string;
  allowInsecure?: boolean;
}

function lockfilePath(flags: ServeFlags, configFile: string | undefined): string {
  return path.resolve(flags.lockfile ?? path.join(configFile ? path.dirname(configFile) : process.cwd(), LOCKFILE_NAME));
}

/** The start-up summary: what is active, what failed and why (one record; readable lines under `lines`). */
function summarise(logger: Logger, all: HostExtensionInfo[], plugins: string[]): void {
  const where = (p: string) => shownPath(p);
  // A copy refused before resolution is also listed under its id without a folder, with the same reason: once.
  const list = all.filter((e) => e.path !== '' || !all.some((o) => o !== e && o.id === e.id && o.path !== '' && o.reason?.code === e.reason?.code));
  const active = list.filter((e) => e.state === 'active' || e.state === 'degraded');
  const failed = list.filter((e) => e.state === 'failed');
  const other = list.filter((e) => !active.includes(e) && !failed.includes(e));
  const lines = [
    ...active.map((e) => `active   ${e.id} ${e.version} (${e.runtime})${e.state === 'degraded' ? ' degraded' : ''}`),
    ...failed.map((e) => `FAILED   ${e.id}${e.version ? ` ${e.version}` : ''}${e.path ? ` (${where(e.path)})` : ''}: ${e.reason ? `${String(e.reason.code)}: ${String(e.reason.message)}` : 'no reason recorded'}`),
    ...other.map((e) => `${e.state.padEnd(8)} ${e.id}${e.version ? ` ${e.version}` : ''}${e.path ? ` (${where(e.path)})` : ''}${e.reason ? `: ${String(e.reason.code)}: ${String(e.reason.message)}` : ''}`),
  ];
  const record = {
    active: active.length,
    failed: failed.length,
    plugins,
    extensions: list.map((e) => ({ id: e.id, version: e.version, runtime: e.runtime, state: e.state, folder: e.path, ...(e.reason ? { code: e.reason.code, reason: e.reason.message } : {}) })),
    lines,
  };
  const msg = `serving ${active.length} extension(s)${failed.length > 0 ? `, ${failed.length} failed` : ''}`;
  if (failed.length > 0) logger.warn(record, msg);
  else logger.info(record, msg);
}

/**
 * Pipelines under serve (issue 11): the runs a killed host left unfinished are listed (and resumed when
 * `pipelines.resumeInterrupted` is true), then the triggers of the files in `pipelines.files` start.
 */
async function startPipelines(logger: Logger, host: Host): Promise<void> {
  const interrupted = host.pipelines.interrupted();
  const resume = host.config.pipelines.resumeInterrupted;
  if (interrupted.length > 0) {
    logger.warn(
      { runs: interrupted.map((r) => ({ id: r.id, pipeline: r.pipeline, createdAt: r.createdAt })), resume },
      `${interrupted.length} interrupted pipeline run(s): ${interrupted.map((r) => `${r.id} (${r.pipeline})`).join(', ')}${resume ? ' — resuming them' : ' — `plinth resume <id>` resumes one, or set pipelines.resumeInterrupted: true'}`,
    );
  }
  if (resume) {
    for (const r of interrupted) {
      try {
        await host.pipelines.resume(r.id);
        logger.info({ runId: r.id, pipeline: r.pipeline }, `resumed run ${r.id} of ${r.pipeline}`);
      } catch (err) {
        logger.error({ runId: r.id, err }, `could not resume run ${r.id}: ${(err as Error).message}`);
      }
    }
  }
  for (const r of interrupted) void host.pipelines.wait(r.id).then((run) => run.state !== 'interrupted' && logger.info({ runId: run.id, pipeline: run.pipeline, state: run.state }, `run ${run.id} of ${run.pipeline} ${run.state}`));
  const files = host.config.pipelines.files;
  if (files.length === 0) return;
  const { pipelines, issues } = await host.pipelines.startTriggers(files);
  logger.info({ pipelines, refused: issues.map((i) => i.file) }, `pipeline triggers started for ${pipelines.length} pipeline(s)${issues.length > 0 ? `; ${issues.length} file(s) refused` : ''}`);
}

/**
 * Runs until SIGINT/SIGTERM. The first signal (Ctrl-C sends SIGINT to the whole foreground process group; the
 * sandbox processes ignore it and are stopped by the host) stops every extension gracefully, in reverse
 * dependency order, each time-boxed, then exits 0; a second one exits at once (130 for SIGINT, 143 for SIGTERM).
 */
export async function serve(_io: Io, flags: ServeFlags, signals: NodeJS.EventEmitter = process): Promise<Outcome> {
  const config = await loadHostConfig({ flags });
  await checkPluginDirs(config.plugins);
  const stopTimeout = flags.stopTimeout === undefined ? 10_000 : Number(flags.stopTimeout);
  if (!(Number.isInteger(stopTimeout) && stopTimeout > 0)) throw usageError(`--stop-timeout must be a positive number of milliseconds, got ${flags.stopTimeout}`);
  if (flags.host !== undefined) config.control.host = flags.host;
  if (flags.port !== undefined) {
    const port = Number(flags.port);
    if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) throw usageError(`--port must be a port number (0 for any free one), got ${flags.port}`);
    config.control.port = port;
  }
  if (flags.allowInsecure) config.control.allowInsecure = true;
  const logs = new LogHub();
  const logger = createLogger({ level: config.log.level, json: jsonLogs(flags), tap: (r) => logs.size > 0 && logs.publish(r as unknown as LogRecord) });

  // Signal listeners do not keep Node's event loop alive, and every timer and child below is unref'd: without
  // this the process would end on its own as soon as start-up is done (`--no-watch`), or in the middle of a stop.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let received: string | undefined;
  let onFirst: (signal: string) => void = () => undefined;
  const stopRequested = new Promise<string>((resolve) => (onFirst = resolve));
  const onSignal = (signal: string) => {
    if (received === undefined) {
      received = signal;
      onFirst(signal);
      return;
    }
    logger.warn({ signal }, `${signal} again: exiting at once, without waiting for the extensions to stop`);
    process.exit(signal === 'SIGTERM' ? 143 : 130);
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);
  let control: ControlServer | undefined;
  let serveFile: string | undefined;
  try {
    const host = new Host(config, { logger, ...(flags.frozenLockfile ? { frozenLockfile: lockfilePath(flags, config.file) } : {}) });
    await host.start();
    summarise(logger, host.list(), config.plugins);
    await startPipelines(logger, host);
    // The control channel: refused addresses and taken ports end serve with their coded error, after a clean stop.
    try {
      // The pipeline engine, when this host has one (issue 11 exposes it as host.pipelines): pipelines.* and runs.*.
      const pipelines = host.pipelines;
      control = new ControlServer({ host, config: config.control, dataDir: config.dataDir, log: logger, version: VERSION, apiVersion: HOST_API_VERSION, logs, pipelines, webhooks: webhookTargetForService(pipelines) });
      const at = await control.listen();
      serveFile = path.join(config.dataDir, SERVE_FILE);
      await writeFile(serveFile, JSON.stringify({ url: at.url, host: at.host, port: at.port, pid: process.pid, startedAt: new Date().toISOString() }, null, 2) + '\n');
      logger.info({ url: at.url, port: at.port, token: control.tokens.source === 'file' ? control.tokens.file : control.tokens.source === 'env' ? 'PLINTH_TOKEN' : 'control.token' }, `control channel on ${at.url} (HTTP /health /ready /metrics on port ${at.port})`);
    } catch (err) {
      await host.stop(stopTimeout);
      throw err;
    }
    if (flags.watch !== false && received === undefined) {
      await host.watch();
      logger.info({ plugins: config.plugins }, 'watching the plugin directories for changes');
    } else if (flags.watch === false) {
      logger.info({ plugins: config.plugins }, 'not watching the plugin directories (--no-watch): serving until stopped');
    }
    const signal = await stopRequested;
    logger.info({ signal }, `${signal}: stopping (at most ${stopTimeout} ms per extension; ${signal === 'SIGTERM' ? 'another SIGTERM' : 'Ctrl-C again'} exits at once)`);
    await control?.close();
    if (serveFile) await rm(serveFile, { force: true });
    await host.stop(stopTimeout);
    const list = host.list();
    logger.info({ stopped: list.filter((e) => e.state === 'stopped').length }, 'stopped');
    return { code: EXIT.ok, data: { signal, extensions: list } };
  } finally {
    clearInterval(keepAlive);
    signals.removeListener('SIGINT', onSignal);
    signals.removeListener('SIGTERM', onSignal);
  }
}

export async function lock(io: Io, flags: ServeFlags): Promise<Outcome> {
  const config = await loadHostConfig({ flags });
  await checkPluginDirs(config.plugins);
  const registry = createRegistry(config, {
    log: createLogger({ level: 'warn', json: jsonLogs(flags) }),
    trustStore: await loadTrustStoreFor(config.trust.store, config.trust.policy),
  });
  const file = lockfilePath(flags, config.file);
  const { lock: written, failed } = await registry.writeLockfile(file);
  if (!flags.json) {
    io.out(`wrote ${file}: ${Object.keys(written.extensions).length} extension(s)`);
    for (const e of failed) io.err(`not locked: ${e.describe()}`);
  }
  return { code: failed.length > 0 ? EXIT.failed : EXIT.ok, data: { file, lockfile: written, failed: failed.map((e) => e.toJSON()) } };
}
