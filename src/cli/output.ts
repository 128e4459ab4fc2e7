// What commands print: JSON for scripts (`--json`), plain text for people; errors on stderr with their code.
import path from 'node:path';
import { PlinthError, isPlinthError, type ErrorCode } from '../errors.ts';

/** 3: what was checked (a pipeline) is invalid — distinct from a usage error and from a failure while running. */
export const EXIT = { ok: 0, failed: 1, usage: 2, invalid: 3 } as const;

/** Errors in how Plinth was invoked or configured, rather than in what it found: exit 2. */
const USAGE_CODES = new Set<ErrorCode>(['PLINTH_ERR_USAGE', 'PLINTH_ERR_CONFIG_INVALID', 'PLINTH_ERR_CONFIG_UNREADABLE', 'PLINTH_ERR_PLUGIN_DIR_MISSING', 'PLINTH_ERR_EXTENSION_NAME_INVALID']);

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
};

/** What a command ends with: its exit code and, for `--json`, its result (the envelope's `data`). */
export interface Outcome {
  code: number;
  data: unknown;
  /** The envelope's `error` when the command ends with a coded problem but still has a result to give. */
  error?: Record<string, unknown>;
}

/**
 * The one `--json` shape of every command, on stdout (README "JSON output"):
 *   { "ok": <exit code is 0>, "command": "<name>", "data": <result or null>, "error": <coded error or null> }
 */
export interface Envelope {
  ok: boolean;
  command: string;
  data: unknown;
  error: Record<string, unknown> | null;
}

export function printEnvelope(io: Io, envelope: Envelope): void {
  io.out(JSON.stringify(envelope, null, 2));
}

/** Prints an error for people on stderr (and the envelope on stdout with --json); returns the exit code. */
export function reportError(io: Io, err: unknown, json: boolean, command = 'plinth'): number {
  const error = isPlinthError(err) ? err : undefined;
  const code = error ? (USAGE_CODES.has(error.code) ? EXIT.usage : error.code === 'PLINTH_ERR_PIPELINE_INVALID' ? EXIT.invalid : EXIT.failed) : EXIT.failed;
  if (json) printEnvelope(io, { ok: false, command, data: null, error: error ? error.toJSON() : { message: String((err as Error)?.message ?? err) } });
  if (error) io.err(error.describe() + (error.file && !error.describe().includes(error.file) ? `\n  file: ${error.file}` : ''));
  else io.err(`plinth: internal error: ${(err as Error)?.stack ?? String(err)}`);
  return code;
}

/** A plain text table: a header row, columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function usageError(message: string, hint?: string): PlinthError {
  return new PlinthError('PLINTH_ERR_USAGE', message, hint === undefined ? {} : { hint });
}

/** A path as people read it in a listing: relative to the working directory when inside it, else absolute. */
export function shownPath(p: string, cwd = process.cwd()): string {
  if (p === '') return '';
  const rel = path.relative(cwd, p);
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? p : rel;
}
