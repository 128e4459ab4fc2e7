// Call options are checked the same way in every runtime (and by the supervisor before a call is queued): a bad
// value is the caller's mistake, PLINTH_ERR_CALL_OPTIONS_INVALID, never a TypeError in one runtime and a
// PlinthError in another.
import { PlinthError } from '../errors.ts';
import type { ContextHandler, SandboxSpec } from './types.ts';

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

/**
 * The values of the env names a spec's permissions list, asked of the ContextHandler once at start: ctx.env is
 * synchronous in the SDK, so a sandbox outside the host process (an isolate, a remote runner) is handed them up
 * front. A name the handler refuses stays unknown to the extension.
 */
export async function grantedEnv(spec: SandboxSpec, context: ContextHandler): Promise<Record<string, string | null>> {
  const env: Record<string, string | null> = {};
  for (const name of spec.permissions.env ?? []) {
    try {
      const value = await context({ op: 'env', name });
      env[name] = typeof value === 'string' ? value : null;
    } catch {
      // not granted after all
    }
  }
  return env;
}
