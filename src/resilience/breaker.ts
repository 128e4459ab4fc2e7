// A circuit breaker per extension (DESIGN.md §4). Its own state machine, not opossum's (issue 8), because the
// design needs what opossum cannot express:
//   - only outcomes of calls admitted in the current state count: every admission carries the state's generation,
//     and an outcome from an older generation is dropped (opossum closed on a call started while closed that
//     succeeded after it went half-open, with zero probes);
//   - the caller's mistakes (STAGE_INPUT_INVALID, STAGE_UNKNOWN, CANCELLED, SHUTDOWN, CIRCUIT_OPEN) are no outcome
//     at all (opossum's errorFilter counts a filtered error as a success: 10 bad inputs then 6 failures left it
//     closed at 100 % failure rate, and a late CANCELLED closed it from half-open);
//   - N half-open probes (opossum admits one) and a slow-call rate next to the failure rate.
//
// Decision on opossum (issue 8 and 14): not here. It serves where it fits cleanly, the breaker per extension and origin
// around ctx.fetch (src/policy/fetch-breaker.ts), where every rejection is a failure and no call crosses states. Its rolling window
// (lib/status.js `Status`) was the candidate part, and it can be driven by an injected clock (a
// `rotateBucketController` emitter, snapshots off, so no timers), but it does not fit cleanly where the window
// lives, on the per-call path: `increment('successes' | 'failures')` pushes every call's latency into an array of
// the bucket even with percentiles off (memory grows with the calls in the window: 300 000 numbers per extension at
// 30 000 calls/s over the default 10 s), reading `stats` allocates and walks every key of every bucket (too dear to
// do on each outcome, which is when the design decides to open), and it has no slow-call count. The window below is
// three Int32Array bucket counters and two integer sums: no allocation per call, time from the injected clock, no
// timer at all (open → half-open happens when the recovery timeout has passed and the breaker is next asked, so
// there is nothing to clear on dispose). States are named constants; `state` events fire only on a real change
// (STYLE.md "State machines, named", the convention taken from opossum).
import { EventEmitter } from 'node:events';
import { PlinthError } from '../errors.ts';
import type { BreakerSettings } from '../config/index.ts';

export type { BreakerSettings } from '../config/index.ts';

export const BREAKER_STATES = { closed: 'closed', open: 'open', halfOpen: 'half-open' } as const;
export type BreakerState = (typeof BREAKER_STATES)[keyof typeof BREAKER_STATES];

/** What a call's end tells the breaker: it worked, it failed, or it says nothing about the extension's health. */
export type BreakerOutcome = 'success' | 'failure' | 'ignored';

/** Failures that say nothing about the extension's health (the caller's mistake, or the host's own doing). */
export const NOT_COUNTED: ReadonlySet<string> = new Set(['PLINTH_ERR_STAGE_INPUT_INVALID', 'PLINTH_ERR_STAGE_UNKNOWN', 'PLINTH_ERR_CIRCUIT_OPEN', 'PLINTH_ERR_SHUTDOWN', 'PLINTH_ERR_CANCELLED', 'PLINTH_ERR_CALL_OPTIONS_INVALID']);

/** The outcome a call's error means to the breaker. */
export function outcomeOf(err: unknown): BreakerOutcome {
  return err instanceof PlinthError && NOT_COUNTED.has(err.code) ? 'ignored' : 'failure';
}

export interface BreakerEvents {
  state: [next: BreakerState, previous: BreakerState];
}

export interface BreakerOptions {
  /** Milliseconds on a monotonic clock; tests pass a fake one. Default performance.now. */
  now?: () => number;
  /** Time slices of the rolling window. Default 10. */
  buckets?: number;
}

/** One admitted call. Exactly one of its methods counts; later calls (and calls from an older state) are no-ops. */
export interface BreakerPermit {
  /** The state the call was admitted in. */
  readonly state: BreakerState;
  /** Records the call's end. `durationMs` is how long the extension took (not time spent queued). */
  record(outcome: BreakerOutcome, durationMs: number): void;
}

const BUCKETS = 10;

export class Breaker extends EventEmitter<BreakerEvents> {
  readonly #extension: string;
  readonly #settings: BreakerSettings;
  readonly #now: () => number;
  readonly #window: RollingWindow;
  #state: BreakerState = BREAKER_STATES.closed;
  /** Bumped on every transition: a permit from another generation no longer counts. */
  #generation = 0;
  #openedAt = 0;
  /** Half-open: probes admitted and still running, and finished probes (all successes, or it would have opened). */
  #probesRunning = 0;
  #probesDone = 0;
  #probesSlow = 0;

  constructor(extension: string, settings: BreakerSettings, options: BreakerOptions = {}) {
    super();
    for (const [key, value] of Object.entries(settings)) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TypeError(`breaker setting ${key} must be a positive number, got ${String(value)}`);
    }
    this.#extension = extension;
    this.#settings = settings;
    this.#now = options.now ?? (() => performance.now());
    this.#window = new RollingWindow(settings.windowMs, options.buckets ?? BUCKETS);
  }

  /** The current state; an open breaker whose recovery timeout has passed is half-open. */
  get state(): BreakerState {
    this.#tick();
    return this.#state;
  }

  #tick(): void {
    if (this.#state === BREAKER_STATES.open && this.#now() - this.#openedAt >= this.#settings.recoveryTimeoutMs) this.#transition(BREAKER_STATES.halfOpen);
  }

  /** The one place the state changes. */
  #transition(next: BreakerState): void {
    if (next === this.#state) return;
    const previous = this.#state;
    this.#state = next;
    this.#generation++;
    this.#probesRunning = 0;
    this.#probesDone = 0;
    this.#probesSlow = 0;
    this.#window.clear();
    if (next === BREAKER_STATES.open) this.#openedAt = this.#now();
    this.emit('state', next, previous);
  }

  #openError(): PlinthError {
    return new PlinthError('PLINTH_ERR_CIRCUIT_OPEN', `extension ${this.#extension}: circuit breaker is ${this.#state}; the call was not run`, {
      extension: this.#extension,
      hint: `it admits ${this.#settings.halfOpenMaxCalls} probe call(s) ${Math.round(this.#settings.recoveryTimeoutMs / 1000)} s after opening; see the failures that opened it`,
    });
  }

  /** Admits a call or throws PLINTH_ERR_CIRCUIT_OPEN (open, or half-open with every probe slot taken). */
  admit(): BreakerPermit {
    this.#tick();
    const state = this.#state;
    if (state === BREAKER_STATES.open) throw this.#openError();
    if (state === BREAKER_STATES.halfOpen) {
      if (this.#probesRunning + this.#probesDone >= this.#settings.halfOpenMaxCalls) throw this.#openError();
      this.#probesRunning++;
    }
    const generation = this.#generation;
    let recorded = false;
    return {
      state,
      record: (outcome, durationMs) => {
        if (recorded) return;
        recorded = true;
        if (generation !== this.#generation) return; // admitted in an earlier state: says nothing about this one
        if (state === BREAKER_STATES.closed) this.#recordClosed(outcome, durationMs);
        else this.#recordProbe(outcome, durationMs);
      },
    };
  }

  #slow(durationMs: number): boolean {
    return durationMs >= this.#settings.slowCallDurationMs;
  }

  #recordClosed(outcome: BreakerOutcome, durationMs: number): void {
    if (outcome === 'ignored') return;
    const w = this.#window;
    w.record(this.#now(), outcome === 'failure', this.#slow(durationMs));
    const total = w.total;
    if (total < this.#settings.minimumCalls) return;
    if ((w.failures / total) * 100 >= this.#settings.failureRateThreshold || (w.slow / total) * 100 >= this.#settings.slowCallRateThreshold) this.#transition(BREAKER_STATES.open);
  }

  #recordProbe(outcome: BreakerOutcome, durationMs: number): void {
    this.#probesRunning--;
    if (outcome === 'ignored') return; // a caller's mistake does not use up a probe: the slot is free again
    if (outcome === 'failure') return this.#transition(BREAKER_STATES.open);
    this.#probesDone++;
    if (this.#slow(durationMs)) this.#probesSlow++;
    if (this.#probesDone < this.#settings.halfOpenMaxCalls) return;
    // Every probe succeeded; the probes are judged by the same slow-call rate as the closed window.
    const slowRate = (this.#probesSlow / this.#probesDone) * 100;
    this.#transition(slowRate >= this.#settings.slowCallRateThreshold ? BREAKER_STATES.open : BREAKER_STATES.closed);
  }

  /** Runs `action` through the breaker; its duration is measured here. */
  async run<T>(action: () => Promise<T>): Promise<T> {
    const permit = this.admit();
    const started = this.#now();
    try {
      const result = await action();
      permit.record('success', this.#now() - started);
      return result;
    } catch (err) {
      permit.record(outcomeOf(err), this.#now() - started);
      throw err;
    }
  }

  /** Drops its listeners. The breaker holds no timers. */
  dispose(): void {
    this.removeAllListeners();
  }
}

/**
 * Call, failure and slow-call counts in `buckets` time slices covering `windowMs`, with running sums: recording and
 * reading are O(1) apart from clearing the slices that fell out of the window (at most `buckets`, once per slice).
 */
class RollingWindow {
  readonly #bucketMs: number;
  readonly #total: Int32Array;
  readonly #failures: Int32Array;
  readonly #slow: Int32Array;
  #sumTotal = 0;
  #sumFailures = 0;
  #sumSlow = 0;
  /** Index (time / bucketMs) of the newest slice written; slices older than `buckets` behind it are stale. */
  #current = Number.NEGATIVE_INFINITY;

  constructor(windowMs: number, buckets: number) {
    this.#bucketMs = Math.max(1, windowMs / buckets);
    this.#total = new Int32Array(buckets);
    this.#failures = new Int32Array(buckets);
    this.#slow = new Int32Array(buckets);
  }

  /** Moves the window to `now`, clearing every slice that fell out of it (all of them after a long pause). */
  #advance(now: number): number {
    const slot = Math.floor(now / this.#bucketMs);
    const n = this.#total.length;
    if (slot > this.#current) {
      if (slot - this.#current >= n) this.clear();
      else {
        for (let s = this.#current + 1; s <= slot; s++) {
          const i = s % n;
          this.#sumTotal -= this.#total[i]!;
          this.#sumFailures -= this.#failures[i]!;
          this.#sumSlow -= this.#slow[i]!;
          this.#total[i] = 0;
          this.#failures[i] = 0;
          this.#slow[i] = 0;
        }
      }
      this.#current = slot;
    }
    return this.#current % n;
  }

  record(now: number, failure: boolean, slow: boolean): void {
    const i = this.#advance(now);
    this.#total[i]!++;
    this.#sumTotal++;
    if (failure) {
      this.#failures[i]!++;
      this.#sumFailures++;
    }
    if (slow) {
      this.#slow[i]!++;
      this.#sumSlow++;
    }
  }

  /** Sums as of the last record(): calls, failures and slow calls in the window. */
  get total(): number {
    return this.#sumTotal;
  }

  get failures(): number {
    return this.#sumFailures;
  }

  get slow(): number {
    return this.#sumSlow;
  }

  clear(): void {
    this.#total.fill(0);
    this.#failures.fill(0);
    this.#slow.fill(0);
    this.#sumTotal = 0;
    this.#sumFailures = 0;
    this.#sumSlow = 0;
  }
}
