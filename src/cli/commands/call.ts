// `plinth call <extension> <stage>`: an embedded host runs one stage and prints its output JSON on stdout.
import { readFile } from 'node:fs/promises';
import { PlinthError } from '../../errors.ts';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { startHost, type Host } from '../../host/index.ts';
import type { Json } from '../../sdk/index.ts';
import { EXIT, usageError, type Io, type Outcome } from '../output.ts';
import { createLogger, jsonLogs } from '../log.ts';
import { checkPluginDirs } from '../plugins.ts';

export interface CallFlags extends ConfigFlags {
  input?: string;
  inputFile?: string;
  timeout?: string;
  verbose?: boolean;
  json?: boolean;
  logFormat?: string;
}

async function readInput(flags: CallFlags): Promise<Json> {
  if (flags.input !== undefined && flags.inputFile !== undefined) throw usageError('give --input or --input-file, not both');
  let text: string;
  let from: string;
  if (flags.inputFile !== undefined) {
    from = flags.inputFile === '-' ? 'standard input' : flags.inputFile;
    try {
      text = flags.inputFile === '-' ? await readStdin() : await readFile(flags.inputFile, 'utf8');
    } catch (err) {
      throw usageError(`cannot read --input-file ${flags.inputFile}: ${(err as Error).message}`);
    }
  } else {
    text = flags.input ?? '{}';
    from = '--input';
  }
  try {
    return JSON.parse(text) as Json;
  } catch (err) {
    throw usageError(`${from} is not valid JSON: ${(err as Error).message}`, `pass the stage input as JSON, e.g. --input '{"text":"a,b\\n1,2"}'`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Why `extension` cannot be called, as the real error: the reason it failed to validate, verify, resolve or start
 * (its code, problems with paths, hint), not a generic "unavailable" (issue 9).
 */
function notCallable(host: Host, extension: string): PlinthError | undefined {
  const entries = host.list().filter((e) => e.id === extension);
  if (entries.length === 0 || entries.some((e) => e.state === 'active' || e.state === 'degraded')) return undefined;
  const failed = entries.find((e) => e.state === 'failed' && e.reason) ?? entries.find((e) => e.reason);
  if (failed?.reason) return PlinthError.fromJSON(failed.reason);
  const first = entries[0]!;
  return new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${extension} is ${first.state}`, {
    extension,
    ...(first.path ? { file: first.path } : {}),
    hint: first.state === 'stopped' ? `it is disabled: set extensions.${extension}.enabled to true in the host config` : 'see `plinth ls` for its state',
  });
}

export async function call(io: Io, extension: string, stage: string, flags: CallFlags): Promise<Outcome> {
  const input = await readInput(flags);
  const timeoutMs = flags.timeout === undefined ? undefined : Number(flags.timeout);
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw usageError(`--timeout must be a positive number of milliseconds, got ${flags.timeout}`);
  const config = await loadHostConfig({ flags });
  await checkPluginDirs(config.plugins);
  // Operators' logs go to stderr (extensions' console output included); without --verbose only warnings and
  // errors, so stdout holds the output and nothing else.
  // A refusal of the called extension itself is its error below: not printed twice unless asked (-v).
  const logger = createLogger({
    level: flags.verbose ? config.log.level : 'warn',
    json: jsonLogs(flags),
    ...(flags.verbose ? {} : { skip: (r: Record<string, unknown>) => r.extension === extension && typeof r.code === 'string' && r.level === 50 && r.from !== 'extension' }),
  });
  // Ctrl-C during a call: stop the sandboxes (the isolate sandbox process is in its own process group, so the
  // terminal's signal does not reach it), then exit 130; during start-up, once started. A second Ctrl-C ends at
  // once (Node's default).
  let host: Host | undefined;
  let interruptedBy: NodeJS.Signals | undefined;
  const exitCode = (signal: NodeJS.Signals) => (signal === 'SIGTERM' ? 143 : 130);
  const interrupted = (signal: NodeJS.Signals) => {
    interruptedBy ??= signal;
    logger.warn({ signal }, `${signal}: stopping the call`);
    if (host) void host.stop(1000).finally(() => process.exit(exitCode(signal)));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    host = await startHost(config, { logger });
  } catch (err) {
    process.removeListener('SIGINT', interrupted);
    process.removeListener('SIGTERM', interrupted);
    throw err;
  }
  if (interruptedBy) {
    await host.stop(1000);
    process.exit(exitCode(interruptedBy));
  }
  try {
    const refusal = notCallable(host, extension);
    if (refusal) throw refusal;
    const output = await host.call(extension, stage, input, timeoutMs === undefined ? {} : { timeoutMs });
    if (!flags.json) io.out(JSON.stringify(output, null, 2));
    return { code: EXIT.ok, data: output };
  } finally {
    process.removeListener('SIGINT', interrupted);
    process.removeListener('SIGTERM', interrupted);
    await host.stop();
  }
}
