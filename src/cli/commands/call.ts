// `plinth call <extension> <stage>`: an embedded host runs one stage and prints its output JSON on stdout.
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { PlinthError } from '../../errors.ts';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { startHost } from '../../host/index.ts';
import type { Json } from '../../sdk/index.ts';
import { EXIT, usageError, type Io } from '../output.ts';

export interface CallFlags extends ConfigFlags {
  input?: string;
  inputFile?: string;
  timeout?: string;
  verbose?: boolean;
  json?: boolean;
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

export async function call(io: Io, extension: string, stage: string, flags: CallFlags): Promise<number> {
  const input = await readInput(flags);
  const timeoutMs = flags.timeout === undefined ? undefined : Number(flags.timeout);
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) throw usageError(`--timeout must be a positive number of milliseconds, got ${flags.timeout}`);
  const config = await loadHostConfig({ flags });
  if (config.plugins.length === 0) throw usageError('no plugin directories given', 'pass --plugins <dir>[,<dir>…] or set `plugins` in plinth.config.yaml');
  // Operators' logs go to stderr; without --verbose only warnings and errors, so stdout stays the output.
  const logger = pino({ level: flags.verbose ? config.log.level : 'warn', base: undefined }, pino.destination(2));
  const host = await startHost(config, { logger });
  try {
    const ext = host.get(extension);
    if (ext && ext.state !== 'active') {
      const info = ext.info();
      throw info.reason ? PlinthError.fromJSON(info.reason) : new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${extension} is ${info.state}`, { extension });
    }
    const output = await host.call(extension, stage, input, timeoutMs === undefined ? {} : { timeoutMs });
    io.out(JSON.stringify(output, null, 2));
    return EXIT.ok;
  } finally {
    await host.stop();
  }
}
