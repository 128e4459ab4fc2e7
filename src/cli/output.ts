// What commands print: JSON for scripts (`--json`), plain text for people; errors on stderr with their code.
import { PlinthError, isPlinthError, type ErrorCode } from '../errors.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/** Errors in how Plinth was invoked or configured, rather than in what it found: exit 2. */
const USAGE_CODES = new Set<ErrorCode>(['PLINTH_ERR_USAGE', 'PLINTH_ERR_CONFIG_INVALID', 'PLINTH_ERR_CONFIG_UNREADABLE']);

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
};

export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

/** Prints an error for people on stderr (and as JSON on stdout with --json); returns the exit code. */
export function reportError(io: Io, err: unknown, json: boolean): number {
  const error = isPlinthError(err) ? err : undefined;
  if (json) printJson(io, { ok: false, error: error ? error.toJSON() : { message: String((err as Error)?.message ?? err) } });
  if (error) {
    io.err(error.describe() + (error.file && !error.describe().includes(error.file) ? `\n  file: ${error.file}` : ''));
    return USAGE_CODES.has(error.code) ? EXIT.usage : EXIT.failed;
  }
  io.err(`plinth: internal error: ${(err as Error)?.stack ?? String(err)}`);
  return EXIT.failed;
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
