// A circuit breaker per extension (DESIGN.md §4), built on opossum for the closed-state rolling failure rate,
// with what opossum lacks: N half-open probe calls (opossum admits one) and opening on a slow-call rate.
// States are named constants; `state` events fire only on a real change (STYLE.md "State machines, named").
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { PlinthError } from '../errors.ts';
import type { BreakerSettings } from '../config/index.ts';

export const BREAKER_STATES = { closed: 'closed', open: 'open', halfOpen: 'half-open' } as const;
export type BreakerState = (typeof BREAKER_STATES)[keyof typeof BREAKER_STATES];

/** Failures that say nothing about the extension's health (the caller's mistake) do not count. */
const NOT_COUNTED = new Set(['PLINTH_ERR_STAGE_INPUT_INVALID', 'PLINTH_ERR_STAGE_UNKNOWN', 'PLINTH_ERR_CIRCUIT_OPEN', 'PLINTH_ERR_SHUTDOWN', 'PLINTH_ERR_CANCELLED']);

function notCounted(err: unknown): boolean {
  return err instanceof PlinthError && NOT_COUNTED.has(err.code);
}

export interface BreakerEvents {
  state: [next: BreakerState, previous: BreakerState];
}

export class Breaker extends EventEmitter<BreakerEvents> {
  readonly #extension: string;
  readonly #settings: BreakerSettings;
  readonly #opossum: CircuitBreaker<[() => Promise<unknown>], unknown>;
  #state: BreakerState = BREAKER_STATES.closed;
  #probesAdmitted = 0;
  #probesSucceeded = 0;
  /** Calls finished in the rolling window: when, and whether slow. */
  #recent: Array<{ at: number; slow: boolean }> = [];

  constructor(extension: string, settings: BreakerSettings) {
    super();
    this.#extension = extension;
    this.#settings = settings;
    this.#opossum = new CircuitBreaker((action: () => Promise<unknown>) => action(), {
      timeout: false, // the sandbox enforces call timeouts and stops the runaway code
      errorThresholdPercentage: settings.failureRateThreshold,
      volumeThreshold: settings.minimumCalls,
      rollingCountTimeout: settings.windowMs,
      rollingCountBuckets: 10,
      resetTimeout: settings.recoveryTimeoutMs,
      errorFilter: notCounted,
    });
    this.#opossum.on('open', () => this.#transition(BREAKER_STATES.open));
    this.#opossum.on('halfOpen', () => {
      this.#probesAdmitted = 0;
      this.#probesSucceeded = 0;
      this.#transition(BREAKER_STATES.halfOpen);
    });
    this.#opossum.on('close', () => this.#transition(BREAKER_STATES.closed));
  }

  get state(): BreakerState {
    return this.#state;
  }

  #transition(next: BreakerState): void {
    if (next === this.#state) return;
    const previous = this.#state;
    this.#state = next;
    if (next !== BREAKER_STATES.closed) this.#recent = [];
    this.emit('state', next, previous);
  }

  #openError(): PlinthError {
    return new PlinthError('PLINTH_ERR_CIRCUIT_OPEN', `extension ${this.#extension}: circuit breaker is ${this.#state}; the call was not run`, {
      extension: this.#extension,
      hint: `it admits ${this.#settings.halfOpenMaxCalls} probe call(s) ${Math.round(this.#settings.recoveryTimeoutMs / 1000)} s after opening; see the failures that opened it`,
    });
  }

  /** Runs `action` through the breaker. Open (or half-open with every probe slot taken) → PLINTH_ERR_CIRCUIT_OPEN. */
  async run<T>(action: () => Promise<T>): Promise<T> {
    if (this.#state === BREAKER_STATES.halfOpen) return this.#probe(action);
    const started = performance.now();
    try {
      const result = (await this.#opossum.fire(action)) as T;
      this.#recordDuration(started);
      return result;
    } catch (err) {
      if ((err as { code?: unknown }).code === 'EOPENBREAKER') throw this.#openError();
      if (!notCounted(err)) this.#recordDuration(started);
      throw err;
    }
  }

  async #probe<T>(action: () => Promise<T>): Promise<T> {
    if (this.#probesAdmitted >= this.#settings.halfOpenMaxCalls) throw this.#openError();
    this.#probesAdmitted++;
    const started = performance.now();
    let outcome: 'success' | 'failure' | 'ignored' = 'failure';
    try {
      const result = await action();
      // A slow probe means the extension has not recovered (unless slow calls are not watched at all).
      const slow = performance.now() - started >= this.#settings.slowCallDurationMs && this.#settings.slowCallRateThreshold < 100;
      outcome = slow ? 'failure' : 'success';
      return result;
    } catch (err) {
      outcome = notCounted(err) ? 'ignored' : 'failure';
      throw err;
    } finally {
      if (this.#state === BREAKER_STATES.halfOpen) {
        if (outcome === 'ignored') this.#probesAdmitted--; // a caller's mistake does not use up a probe
        else if (outcome === 'failure') this.#opossum.open();
        else if (++this.#probesSucceeded >= this.#settings.halfOpenMaxCalls) this.#opossum.close();
      }
    }
  }

  /** Slow-call rate over the rolling window: opens the breaker when it reaches the threshold. */
  #recordDuration(started: number): void {
    const now = performance.now();
    const slow = now - started >= this.#settings.slowCallDurationMs;
    this.#recent.push({ at: now, slow });
    const since = now - this.#settings.windowMs;
    while (this.#recent.length > 0 && this.#recent[0]!.at < since) this.#recent.shift();
    if (this.#state !== BREAKER_STATES.closed || this.#recent.length < this.#settings.minimumCalls) return;
    const slowCount = this.#recent.reduce((n, c) => n + (c.slow ? 1 : 0), 0);
    if ((slowCount / this.#recent.length) * 100 >= this.#settings.slowCallRateThreshold) this.#opossum.open();
  }

  /** Stops its timers (they are unref'd anyway). */
  dispose(): void {
    this.#opossum.shutdown();
    this.removeAllListeners();
  }
}
