// Resilience (DESIGN.md §4): circuit breaker, restart backoff, per-extension concurrency quota, host budget.
export { Breaker, BREAKER_STATES, outcomeOf, type BreakerState, type BreakerSettings, type BreakerOutcome, type BreakerPermit } from './breaker.ts';
export { backoffDelay, sleep, type BackoffSettings } from './backoff.ts';
export { Bulkhead, type WaitBound } from './bulkhead.ts';
export { Budget, type Reservation } from './budget.ts';
