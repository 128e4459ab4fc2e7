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

/**
 * Loading an extension (module, initialize(), start()) ran past its limits.startTimeoutMs. Coded as every failed
 * start is (EXTENSION_LOAD_FAILED, the Sandbox contract); the message and hint name the limit and its keys.
 */
export function startTimedOut(extension: string, startTimeoutMs: number): PlinthError {
  return new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${extension}: loading it (module, initialize(), start()) took longer than limits.startTimeoutMs ${startTimeoutMs} ms`, {
    extension,
    hint: 'make initialize()/start() faster, or raise limits.startTimeoutMs in its manifest (the host caps it at ceilings.startTimeoutMs)',
  });
}
