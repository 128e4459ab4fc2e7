// `plinth dev <dir> [--url <host>] [--record]` and `plinth replay <dir> [--stage s]`: the extension author's loop
// (src/dev has the parts; this file wires them to the terminal: signals, the log stream, exit codes).
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../../errors.ts';
import { loadHostConfig, type ConfigFlags, type HostConfig } from '../../config/index.ts';
import { LogHub, SERVE_FILE, resolveEndpoint, type LogRecord } from '../../control/index.ts';
import { checkExtension, DevPrinter, DevSession, loadRunner, replay, shortJson, useColor, type DevProblem, type ReplayResult } from '../../dev/index.ts';
import { createLogger, jsonLogs } from '../log.ts';
import { EXIT, shownPath, usageError, type Io, type Outcome } from '../output.ts';
import { hostServing } from './remote.ts';
import { VERSION } from '../version.ts';

export interface DevFlags extends ConfigFlags {
  url?: string;
  token?: string;
  record?: boolean;
  json?: boolean;
  logFormat?: string;
  /** false: no control channel for the embedded host. */
  control?: boolean;
  /** false: do not type-check TypeScript sources. */
  typecheck?: boolean;
  /** false: do not run the package's build script. */
  build?: boolean;
}

async function extensionFolder(dir: string): Promise<string> {
  const abs = path.resolve(dir);
  const isDir = await stat(abs).then((s) => s.isDirectory(), () => false);
  if (!isDir) throw usageError(`${dir} is not a folder`, 'give the extension folder (the one holding its package.json)');
  const hasPackage = await stat(path.join(abs, 'package.json')).then((s) => s.isFile(), () => false);
  if (!hasPackage) throw usageError(`${dir} has no package.json`, 'give the extension folder (the one holding its package.json), e.g. one made by `plinth new`');
  return abs;
}

/** The host config of a dev session: the dev trust policy unless --trust-policy says otherwise. */
function devConfig(flags: ConfigFlags): Promise<HostConfig> {
  return loadHostConfig({ flags: { ...flags, dev: true, trustPolicy: flags.trustPolicy ?? 'warn' } });
}

export async function dev(io: Io, dirArg: string, flags: DevFlags, signals: NodeJS.EventEmitter = process): Promise<Outcome> {
  const dir = await extensionFolder(dirArg);
  const config = await devConfig(flags);
  // The author loop is read by people: text unless JSON is asked for (off a terminal too, without colours).
  const json = flags.json === true || flags.logFormat === 'json';
  const printer = new DevPrinter(useColor(process.stderr));
  const logs = new LogHub();
  const shownWarnings = new Set<string>();
  const logger = createLogger({
    level: config.log.level,
    json: true,
    // Problems are printed with their code frames below; the record stays in JSON logs and for `plinth logs -f`.
    write: (line) => {
      if (json) return void process.stderr.write(line);
      if (line.includes('"dev":"rejected"')) return;
      // The same warning on every reload (an unsigned folder under the dev policy) is shown once.
      const warning = /"level":40,/.test(line) ? /"code":"([A-Z_]+)".*"msg":"(.*)"\}\s*$/.exec(line) : null;
      if (warning) {
        if (shownWarnings.has(warning[0])) return;
        shownWarnings.add(warning[0]);
      }
      process.stderr.write(printer.record(line) + '\n');
    },
    tap: (r) => logs.size > 0 && logs.publish(r as unknown as LogRecord),
  });

  // Where to serve: --url, or a host already serving this data dir, joined as a remote runner; else embedded.
  let remote: { url: string; token: string; runExtension: NonNullable<Awaited<ReturnType<typeof loadRunner>>> } | undefined;
  const running = flags.url === undefined && hostServing(config.dataDir);
  if (flags.url !== undefined || running) {
    const runExtension = await loadRunner();
    const endpoint = resolveEndpoint({ ...(flags.url !== undefined ? { url: flags.url } : {}), ...((flags.token ?? config.control.token) !== undefined ? { token: (flags.token ?? config.control.token)! } : {}), dataDir: config.dataDir });
    if (runExtension && endpoint.token !== undefined) remote = { url: endpoint.url, token: endpoint.token, runExtension };
    else if (flags.url !== undefined || !runExtension) {
      const why = !runExtension ? 'this build has no remote runner (runExtension, src/sdk/runner.ts)' : `no token for ${endpoint.url} (--token, PLINTH_TOKEN or <dataDir>/token)`;
      if (flags.url !== undefined) throw new PlinthError(runExtension ? 'PLINTH_ERR_CONTROL_AUTH' : 'PLINTH_ERR_DEV_REMOTE_UNAVAILABLE', `cannot join ${endpoint.url} as a remote runner: ${why}`, { hint: runExtension ? 'pass --token' : 'run plinth dev without --url: it starts an embedded host' });
      logger.warn({ url: endpoint.url }, `a host serves ${config.dataDir} (${endpoint.url}), but ${why}: starting an embedded host instead`);
    }
  }

  // The host records what it sends; a remote host's calls are not seen here (the runner contract has no hook).
  if (remote && flags.record) throw usageError(`--record works with the embedded host only: ${remote.url} is a running host, whose stage inputs this process does not see`, 'run plinth dev without --url (and with no host serving the data dir) to record');

  const devDataDir = path.resolve(flags.dataDir ?? path.join(dir, '.plinth', 'data'));
  if (!remote && hostServing(devDataDir)) {
    const { url, pid } = JSON.parse(await readFile(path.join(devDataDir, SERVE_FILE), 'utf8')) as { url?: string; pid?: number };
    throw new PlinthError('PLINTH_ERR_DEV_ALREADY_RUNNING', `a host already serves the data dir ${shownPath(devDataDir)} (pid ${pid ?? '?'}${url ? `, ${url}` : ''}): another plinth dev of ${shownPath(dir)}?`, {
      file: devDataDir,
      hint: `call it with plinth call --remote … --data-dir ${shownPath(devDataDir)}, stop it, or pass another --data-dir`,
    });
  }

  const session = new DevSession({
    dir,
    config,
    logger,
    logs,
    dataDir: devDataDir,
    version: VERSION,
    ...(flags.record ? { record: true } : {}),
    ...(flags.control === false ? { control: false } : {}),
    ...(flags.typecheck === false ? { typeCheck: false } : {}),
    ...(flags.build === false ? { build: false } : {}),
    ...(remote ? { remote } : {}),
  });
  let hinted = false;
  session.on('rejected', (e) => {
    if (json) return;
    const head = e.serving ? `✗ save rejected — ${e.serving.id} ${e.serving.version} (reload ${e.serving.generation}) keeps serving` : '✗ not serving: fix these and save';
    io.err(`${printer.paint(['bold', 'red'], head)}\n${printer.problems(e.problems, dir)}`);
  });
  session.on('serving', (e) => {
    if (json || hinted) return;
    hinted = true;
    const stages = Object.keys(session.host?.get(e.id)?.pkg.manifest.stages ?? {});
    const stage = stages[0] ?? '<stage>';
    if (remote) io.err(printer.paint('dim', `  joined ${remote.url} as a runner of ${e.id}: call it with  plinth call --remote ${e.id} ${stage} --url ${remote.url} --input '{…}'`));
    else if (session.url) io.err(printer.paint('dim', `  call a stage:  plinth call --remote ${e.id} ${stage} --data-dir ${shownPath(session.dataDir)} --input '{…}'   (control channel ${session.url}; plinth logs -f --data-dir … streams the log)`));
    io.err(printer.paint('dim', `  watching ${shownPath(dir)}: saves are checked and reloaded${flags.record ? `; stage calls are recorded in ${shownPath(path.join(dir, '.plinth', 'recordings'))}` : ''}. Ctrl-C stops.`));
  });

  const keepAlive = setInterval(() => undefined, 1 << 30);
  let onFirst: (signal: string) => void = () => undefined;
  let received: string | undefined;
  const stopRequested = new Promise<string>((resolve) => (onFirst = resolve));
  const onSignal = (signal: string) => {
    if (received === undefined) {
      received = signal;
      return onFirst(signal);
    }
    process.exit(signal === 'SIGTERM' ? 143 : 130);
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);
  try {
    await session.start();
    const signal = await stopRequested;
    logger.info({ signal }, `${signal}: stopping`);
    await session.stop();
    logger.info({}, 'stopped');
    return { code: EXIT.ok, data: { signal, serving: session.serving ?? null } };
  } catch (err) {
    await session.stop().catch(() => undefined);
    throw err;
  } finally {
    clearInterval(keepAlive);
    signals.removeListener('SIGINT', onSignal);
    signals.removeListener('SIGTERM', onSignal);
  }
}

export interface ReplayFlags extends ConfigFlags {
  stage?: string;
  json?: boolean;
  logFormat?: string;
}

/** Lines for people: each call that differs, with its changes; then the counts. */
function describeReplay(result: ReplayResult, dir: string, printer: DevPrinter): string[] {
  const lines: string[] = [];
  for (const e of result.entries) {
    if (e.status === 'same') continue;
    const at = `${path.relative(dir, e.file)}:${e.line}`;
    const label = { changed: 'output changed', failed: 'now fails', fixed: 'now succeeds (it failed when recorded)', 'still-failing': 'fails differently', same: 'same' }[e.status];
    lines.push(`${printer.paint('bold', `${e.stage}`)}  ${at}${e.time ? ` (recorded ${e.time})` : ''}  ${printer.paint(e.status === 'fixed' ? 'green' : 'red', label)}`);
    if (e.status === 'changed') {
      for (const c of e.changes) {
        const p = c.path === '' ? '(the whole output)' : c.path;
        if (c.kind === 'added') lines.push(`    ${printer.paint('green', `+ ${p}: ${shortJson(c.after)}`)}`);
        else if (c.kind === 'removed') lines.push(`    ${printer.paint('red', `- ${p}: ${shortJson(c.before)}`)}`);
        else lines.push(`    ${printer.paint('yellow', `~ ${p}:`)} ${printer.paint('red', shortJson(c.before))} → ${printer.paint('green', shortJson(c.after))}`);
      }
      if (e.more > 0) lines.push(`    … and ${e.more} more`);
    } else {
      const was = e.recorded.error ? `${e.recorded.error.code}: ${e.recorded.error.message}` : shortJson(e.recorded.output);
      const now = e.now.error ? `${e.now.error.code}: ${e.now.error.message}` : shortJson(e.now.output);
      lines.push(`    was: ${was}`, `    now: ${now}`);
    }
  }
  const { same, changed, invalid } = result.counts;
  lines.push(`${result.entries.length} recorded call(s) replayed against ${result.extension} ${result.version}: ${same} same, ${changed} changed${invalid > 0 ? `, ${invalid} unreadable line(s)` : ''}`);
  return lines;
}

/** Exit 0 when every output is the same, 1 when any changed (or a recording line is unreadable), 2 usage. */
export async function replayCommand(io: Io, dirArg: string, flags: ReplayFlags): Promise<Outcome> {
  const dir = await extensionFolder(dirArg);
  const config = await devConfig(flags);
  const json = jsonLogs(flags);
  const printer = new DevPrinter(useColor(process.stderr));
  const logger = createLogger({ level: 'warn', json });
  const out = new DevPrinter(useColor(process.stdout));
  let result: ReplayResult;
  try {
    result = await replay({ dir, config, logger, ...(flags.stage !== undefined ? { stage: flags.stage } : {}) });
  } catch (err) {
    const problems = (err as { devProblems?: DevProblem[] }).devProblems;
    if (problems && !flags.json) io.err(printer.problems(problems, dir));
    throw err;
  }
  if (flags.stage !== undefined && result.entries.length === 0 && result.problems.length === 0) {
    const check = await checkExtension(dir, { schemaLimits: config.extensionSchemas });
    if (check.pkg && !Object.hasOwn(check.pkg.manifest.stages, flags.stage)) {
      throw usageError(`${check.pkg.id} has no stage "${flags.stage}" and nothing is recorded for it`, `its stages: ${Object.keys(check.pkg.manifest.stages).join(', ') || '(none)'}`);
    }
  }
  const changed = result.counts.changed > 0 || result.counts.invalid > 0;
  if (!flags.json) {
    if (result.problems.length > 0) io.err(printer.problems(result.problems, dir));
    if (result.entries.length === 0 && result.problems.length === 0) io.out(`nothing recorded${flags.stage !== undefined ? ` for stage ${flags.stage}` : ''} in ${shownPath(path.join(dir, '.plinth', 'recordings'))}: record calls with plinth dev ${shownPath(dir)} --record`);
    else io.out(describeReplay(result, dir, out).join('\n'));
  }
  return { code: changed ? EXIT.failed : EXIT.ok, data: result };
}
