// Resilience (DESIGN.md §4): circuit breaker, restart backoff, per-extension concurrency quota, host budget.
export { Breaker, BREAKER_STATES, type BreakerState, type BreakerSettings } from './breaker.ts';
export { backoffDelay, sleep, type BackoffSettings } from './backoff.ts';
export { Bulkhead } from './bulkhead.ts';
export { Budget, type Reservation } from './budget.ts';
