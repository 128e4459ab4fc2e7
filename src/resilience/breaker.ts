// A circuit breaker per extension (DESIGN.md §4), built on opossum for the closed-state rolling failure rate,
// with what opossum lacks: N half-open probe calls (opossum admits one) and opening on a slow-call rate.
// States are named constants; `state` events fire only on a real change (STYLE.md "State machines, named").
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { PlinthError } from '../errors.ts';

/** Host `defaults.breaker`, overridden per extension by the manifest's `breaker` (schemas document each field). */
export interface BreakerSettings {
  failureRateThreshold: number;
  minimumCalls: number;
  windowMs: number;
  recoveryTimeoutMs: number;
  halfOpenMaxCalls: number;
  slowCallDurationMs: number;
  slowCallRateThreshold: number;
}

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
  /** Slow-call counts over the rolling window, in time buckets, so recording a call is O(1). */
  readonly #slowWindow: SlowCallWindow;

  constructor(extension: string, settings: BreakerSettings) {
    super();
    this.#extension = extension;
    this.#settings = settings;
    this.#slowWindow = new SlowCallWindow(settings.windowMs, 10);
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
    if (next !== BREAKER_STATES.closed) this.#slowWindow.clear();
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
    this.#slowWindow.record(now, now - started >= this.#settings.slowCallDurationMs);
    // With no slow call in the window the rate is 0: nothing to compute.
    if (this.#state !== BREAKER_STATES.closed || !this.#slowWindow.anySlow) return;
    const { total, slow } = this.#slowWindow.totals();
    if (total >= this.#settings.minimumCalls && (slow / total) * 100 >= this.#settings.slowCallRateThreshold) this.#opossum.open();
  }

  /** Stops its timers (they are unref'd anyway). */
  dispose(): void {
    this.#opossum.shutdown();
    this.removeAllListeners();
  }
}

/** Call and slow-call counts in `buckets` time slices covering `windowMs`; old slices are cleared as time moves. */
class SlowCallWindow {
  readonly #bucketMs: number;
  readonly #total: Int32Array;
  readonly #slow: Int32Array;
  #current = -1;
  #slowSum = 0;

  constructor(windowMs: number, buckets: number) {
    this.#bucketMs = Math.max(1, windowMs / buckets);
    this.#total = new Int32Array(buckets);
    this.#slow = new Int32Array(buckets);
  }

  get anySlow(): boolean {
    return this.#slowSum > 0;
  }

  record(now: number, slow: boolean): void {
    const slot = Math.floor(now / this.#bucketMs);
    const n = this.#total.length;
    if (slot !== this.#current) {
      // Clear every slice between the last one written and this one (all of them after a long pause).
      for (let s = Math.max(this.#current + 1, slot - n + 1); s <= slot; s++) {
        const i = s % n;
        this.#slowSum -= this.#slow[i]!;
        this.#total[i] = 0;
        this.#slow[i] = 0;
      }
      this.#current = slot;
    }
    const i = slot % n;
    this.#total[i]!++;
    if (slow) {
      this.#slow[i]!++;
      this.#slowSum++;
    }
  }

  totals(): { total: number; slow: number } {
    let total = 0;
    for (const t of this.#total) total += t;
    return { total, slow: this.#slowSum };
  }

  clear(): void {
    this.#total.fill(0);
    this.#slow.fill(0);
    this.#slowSum = 0;
  }
}
