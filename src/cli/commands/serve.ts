// `plinth serve`: the host over the plugin directories, hot-reloading them, until SIGINT/SIGTERM; and
// `plinth lock`: writes plinth.lock.json from the current resolution.
import path from 'node:path';
import { pino } from 'pino';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { Host } from '../../host/index.ts';
import { createRegistry, loadTrustStoreFor } from '../../registry/index.ts';
import { LOCKFILE_NAME } from '../../resolve/index.ts';
import { EXIT, printJson, usageError, type Io } from '../output.ts';

export interface ServeFlags extends ConfigFlags {
  frozenLockfile?: boolean;
  lockfile?: string;
  watch?: boolean;
  stopTimeout?: string;
  json?: boolean;
}

function lockfilePath(flags: ServeFlags, configFile: string | undefined): string {
  return path.resolve(flags.lockfile ?? path.join(configFile ? path.dirname(configFile) : process.cwd(), LOCKFILE_NAME));
}

export async function serve(io: Io, flags: ServeFlags, signals: NodeJS.EventEmitter = process): Promise<number> {
  const config = await loadHostConfig({ flags });
  if (config.plugins.length === 0) throw usageError('no plugin directories given', 'pass --plugins <dir>[,<dir>…] or set `plugins` in plinth.config.yaml');
  const stopTimeout = flags.stopTimeout === undefined ? 10_000 : Number(flags.stopTimeout);
  if (!(Number.isInteger(stopTimeout) && stopTimeout > 0)) throw usageError(`--stop-timeout must be a positive number of milliseconds, got ${flags.stopTimeout}`);
  const logger = pino({ level: config.log.level, base: undefined }, pino.destination(2));
  const host = new Host(config, { logger, ...(flags.frozenLockfile ? { frozenLockfile: lockfilePath(flags, config.file) } : {}) });
  await host.start();
  const list = host.list();
  const active = list.filter((e) => e.state === 'active').length;
  logger.info({ active, failed: list.filter((e) => e.state === 'failed').length, plugins: config.plugins }, `serving ${active} extension(s)`);
  if (flags.watch !== false) {
    await host.watch();
    logger.info({ plugins: config.plugins }, 'watching the plugin directories for changes');
  }
  // Runs until SIGINT/SIGTERM: a graceful, time-boxed stop of every extension; a second signal exits at once.
  const signal = await new Promise<string>((resolve) => {
    const onSignal = (name: string) => {
      signals.removeListener('SIGINT', onSignal);
      signals.removeListener('SIGTERM', onSignal);
      signals.once('SIGINT', () => process.exit(130));
      signals.once('SIGTERM', () => process.exit(143));
      resolve(name);
    };
    signals.on('SIGINT', onSignal);
    signals.on('SIGTERM', onSignal);
  });
  logger.info({ signal }, `${signal}: stopping (at most ${stopTimeout} ms per extension)`);
  await host.stop(stopTimeout);
  logger.info('stopped');
  if (flags.json) printJson(io, host.list());
  return EXIT.ok;
}

export async function lock(io: Io, flags: ServeFlags): Promise<number> {
  const config = await loadHostConfig({ flags });
  if (config.plugins.length === 0) throw usageError('no plugin directories given', 'pass --plugins <dir>[,<dir>…] or set `plugins` in plinth.config.yaml');
  const registry = createRegistry(config, {
    log: pino({ level: 'warn', base: undefined }, pino.destination(2)),
    trustStore: await loadTrustStoreFor(config.trust.store, config.trust.policy),
  });
  const file = lockfilePath(flags, config.file);
  const { lock: written, failed } = await registry.writeLockfile(file);
  if (flags.json) printJson(io, { file, lockfile: written, failed: failed.map((e) => e.toJSON()) });
  else {
    io.out(`wrote ${file}: ${Object.keys(written.extensions).length} extension(s)`);
    for (const e of failed) io.err(`not locked: ${e.describe()}`);
  }
  return failed.length > 0 ? EXIT.failed : EXIT.ok;
}
