// Call options are checked the same way in every runtime (and by the supervisor before a call is queued): a bad
// value is the caller's mistake, PLINTH_ERR_CALL_OPTIONS_INVALID, never a TypeError in one runtime and a
// PlinthError in another.
import { PlinthError } from '../errors.ts';

/** Throws PLINTH_ERR_CALL_OPTIONS_INVALID unless `timeoutMs` is a positive finite number. */
export function checkTimeout(extension: string, timeoutMs: unknown): asserts timeoutMs is number {
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new PlinthError('PLINTH_ERR_CALL_OPTIONS_INVALID', `extension ${extension}: timeoutMs must be a positive finite number of milliseconds, got ${String(timeoutMs)}`, {
      extension,
      hint: 'pass timeoutMs in milliseconds, or leave it out for the stage\'s default',
    });
  }
}
