// ctx.log bounds (issue 7 §4): one line is at most `quotas.log.maxLineBytes` (message and fields as JSON) and an
// extension writes at most `quotas.log.linesPerSecond` lines, after a burst of `quotas.log.burst` (a token bucket).
// What does not fit is dropped and the line says so: a long message is cut (`truncated: true`), fields that do not
// fit are replaced by `{ dropped: <bytes> }`, and lines over the rate are counted and reported in one host warning
// (PLINTH_ERR_QUOTA_EXCEEDED, naming the key) as soon as the extension may log again.
import type { Json } from '../sdk/index.ts';
import type { Quotas } from './quotas.ts';

export interface BoundedLine {
  message: string;
  /** The extension's fields, or what replaced them. Nested under one key by the host's logger. */
  fields: Record<string, Json> | undefined;
  /** Set when the message was cut or the fields dropped. */
  truncated?: { message?: number; fields?: number };
}

/** Cuts a line to `maxLineBytes`: fields first go whole or not at all, then the message is cut to what is left. */
export function boundLine(message: unknown, fields: unknown, maxLineBytes: number): BoundedLine {
  let text = typeof message === 'string' ? message : String(message);
  let kept: Record<string, Json> | undefined;
  const truncated: NonNullable<BoundedLine['truncated']> = {};
  if (fields !== undefined && fields !== null) {
    const json = JSON.stringify(fields) as string | undefined;
    const size = json === undefined ? 0 : Buffer.byteLength(json);
    // Fields are an object of JSON values, at most half the line so a message always has room; else dropped.
    if (json !== undefined && typeof fields === 'object' && !Array.isArray(fields) && size <= maxLineBytes / 2) kept = JSON.parse(json) as Record<string, Json>;
    else truncated.fields = size;
  }
  const room = maxLineBytes - (kept ? Buffer.byteLength(JSON.stringify(kept)) : 0);
  if (Buffer.byteLength(text) > room) {
    const bytes = Buffer.byteLength(text);
    // Cut on a character boundary: decode the first `room` bytes and drop a split last character.
    text = Buffer.from(text).subarray(0, Math.max(0, room)).toString('utf8').replace(/\uFFFD$/, '');
    truncated.message = bytes;
  }
  return { message: text, fields: kept, ...(Object.keys(truncated).length > 0 ? { truncated } : {}) };
}

/** A token bucket over an injectable clock (tests move time by hand). */
export class LogRate {
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;
  #dropped = 0;

  constructor(quotas: Quotas['log'], now: () => number = Date.now) {
    this.#rate = quotas.linesPerSecond;
    this.#burst = quotas.burst;
    this.#now = now;
    this.#tokens = quotas.burst;
    this.#last = now();
  }

  /**
   * Takes one line's token. `ok: false`: drop the line (`first` on the first drop of a run, so the host warns once).
   * `dropped`: on the first line allowed after drops, how many were lost, so the host can say so.
   */
  take(): { ok: boolean; first: boolean; dropped: number } {
    const now = this.#now();
    // A clock that steps back refills nothing.
    this.#tokens = Math.min(this.#burst, this.#tokens + (Math.max(0, now - this.#last) / 1000) * this.#rate);
    this.#last = now;
    if (this.#tokens < 1) {
      this.#dropped++;
      return { ok: false, first: this.#dropped === 1, dropped: 0 };
    }
    this.#tokens -= 1;
    const dropped = this.#dropped;
    this.#dropped = 0;
    return { ok: true, first: false, dropped };
  }
}
