// The host's log records, fanned out to control-channel subscribers (logs.subscribe → logs.entry). The CLI's
// logger hands every record it writes to a LogHub; what pino filtered out (below log.level) never gets here.
export interface LogRecord {
  level: number;
  time: number;
  msg: string;
  extension?: string;
  [field: string]: unknown;
}

export const LEVEL_NUMBERS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
export const LEVEL_NAMES: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export class LogHub {
  readonly #listeners = new Set<(record: LogRecord) => void>();

  subscribe(listener: (record: LogRecord) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get size(): number {
    return this.#listeners.size;
  }

  publish(record: LogRecord): void {
    for (const l of this.#listeners) {
      try {
        l(record);
      } catch {
        // one subscriber failing never stops the log or the others
      }
    }
  }
}
