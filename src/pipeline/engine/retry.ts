// Retry policies of a stage (issue 11, the seed's four): how many attempts in all and how long to wait before
// each next one. `attempts` counts every call, the first included (Temporal's maximumAttempts).
import type { RetryPolicy, RetrySpec } from '../types.ts';

/**
 * Caller mistakes and outcomes no retry can change: the input, the call's options or a reference are wrong, the
 * stage or extension does not exist, or the run itself was cancelled. Never retried, whatever the policy says.
 */
export const NEVER_RETRIED: ReadonlySet<string> = new Set([
  'PLINTH_ERR_STAGE_INPUT_INVALID',
  'PLINTH_ERR_STAGE_UNKNOWN',
  'PLINTH_ERR_EXTENSION_NOT_FOUND',
  'PLINTH_ERR_CALL_OPTIONS_INVALID',
  'PLINTH_ERR_LIMIT_ABOVE_CEILING',
  'PLINTH_ERR_EXPRESSION_FAILED',
  'PLINTH_ERR_SCHEMA_VALIDATION_LIMIT',
  'PLINTH_ERR_CANCELLED',
]);

export function maxAttempts(policy: RetryPolicy): number {
  return policy.policy === 'none' ? 1 : Math.max(1, Math.floor(policy.attempts));
}

/** May a failure with `code` be tried again under `spec` (attempts left aside)? */
export function isRetryable(code: string, spec: RetrySpec): boolean {
  return !NEVER_RETRIED.has(code) && !spec.nonRetryable.includes(code);
}

/**
 * The wait before attempt `next` (2 for the first retry). Exponential: initialDelay · factor^(next-2), capped at
 * maxDelay, then spread by ±jitter (a fraction: 0.2 → 80 %–120 %) and capped again, so many failing stages do not
 * retry in lockstep.
 */
export function retryDelayMs(policy: RetryPolicy, next: number, random: () => number = Math.random): number {
  switch (policy.policy) {
    case 'none':
    case 'immediate':
      return 0;
    case 'fixed':
      return Math.max(0, policy.intervalMs);
    case 'exponential': {
      const base = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** Math.max(0, next - 2));
      const jitter = Math.min(1, Math.max(0, policy.jitter));
      const spread = base * (1 + jitter * (2 * random() - 1));
      return Math.round(Math.max(0, Math.min(policy.maxDelayMs, spread)));
    }
  }
}
