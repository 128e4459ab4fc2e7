// Operators' logs on stderr: pino underneath (structured fields everywhere), printed as JSON lines (`--json`,
// `--log-format json`, or by default when stderr is not a terminal) or as one readable line per record:
//   10:02:03.120 ERROR bad-ext  PLINTH_ERR_SIG_FILE_CHANGED: … changed  file=/srv/plugins/bad-ext/index.js
// Written synchronously (stderr is synchronous for files, pipes and terminals on Linux), so nothing is lost when
// a second Ctrl-C exits at once.
import { pino, type Logger } from 'pino';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Fields shown in the line's own columns, not as key=value. */
const OWN = new Set(['level', 'time', 'msg', 'extension', 'problems', 'err', 'lines']);

export interface LogOptions {
  level: string;
  json: boolean;
  /** Where lines go (tests); default stderr. */
  write?: (line: string) => void;
  /** Records not to print (e.g. what the command reports itself as its error). */
  skip?: (record: Record<string, unknown>) => boolean;
  /** Also handed every record written, parsed (the control channel's logs.subscribe). */
  tap?: (record: Record<string, unknown>) => void;
}

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

function clock(ms: unknown): string {
  const d = new Date(typeof ms === 'number' ? ms : Date.now());
  return d.toISOString().slice(11, 23);
}

/** One pino record (its JSON line) as text for people. */
export function formatRecord(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const level = (LEVELS[rec.level as number] ?? String(rec.level)).padEnd(5);
  const who = typeof rec.extension === 'string' ? ` ${rec.extension}:` : '';
  // A record that brings its own readable `lines` (the start-up summary) shows only its plain fields.
  const own = Array.isArray(rec.lines) ? (rec.lines as unknown[]) : undefined;
  const fields = Object.entries(rec)
    .filter(([k, v]) => !OWN.has(k) && v !== undefined && !(own && typeof v === 'object' && v !== null))
    .map(([k, v]) => `${k}=${value(v)}`);
  const lines = [`${clock(rec.time)} ${level}${who} ${typeof rec.msg === 'string' ? rec.msg : JSON.stringify(rec.msg ?? '')}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}`];
  if (own) for (const l of own) lines.push(`    ${String(l)}`);
  if (Array.isArray(rec.problems)) {
    for (const p of rec.problems as Array<{ path?: unknown; message?: unknown; hint?: unknown }>) {
      lines.push(`    - ${typeof p.path === 'string' && p.path !== '' ? p.path : '/'}: ${String(p.message)}${typeof p.hint === 'string' ? ` (${p.hint})` : ''}`);
    }
  }
  const err = rec.err as { stack?: unknown; message?: unknown } | undefined;
  if (err && typeof err === 'object') lines.push(...String(err.stack ?? err.message).split('\n').map((l) => `    ${l}`));
  return lines.join('\n');
}

export const LOG_FORMATS = ['text', 'json'] as const;

/**
 * JSON lines or text: `--json` (or `--log-format json`) means JSON, `--log-format text` text; by default text
 * on a terminal and JSON lines when stderr is a pipe or a file (a log collector, systemd, a test harness).
 */
export function jsonLogs(flags: { json?: boolean; logFormat?: string }): boolean {
  if (flags.json) return true;
  if (flags.logFormat !== undefined) return flags.logFormat === 'json';
  return process.stderr.isTTY !== true;
}

/** The host's logger for a command: JSON lines (`--json`) or readable lines, on stderr. */
export function createLogger(options: LogOptions): Logger {
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const { skip, tap } = options;
  const skipped = (line: string) => {
    if (!skip && !tap) return false;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return false;
    }
    if (skip?.(record)) return true;
    tap?.(record);
    return false;
  };
  return pino(
    { level: options.level, base: undefined },
    { write: (line: string) => void (skipped(line) || write(options.json ? line : `${formatRecord(line)}\n`)) },
  );
}
