// A concurrency quota (bulkhead): at most `limit` calls in flight; more wait in FIFO order instead of
// overloading a sandbox. A waiting call leaves the queue when its signal aborts (its deadline passed). This is the
// one place a supervised extension's `limits.concurrency` is enforced (the worker runtime's own queue only guards
// a sandbox used without a supervisor, and with this in front never has more than `limit` calls to hold).
/**
 * A wait bounded by a deadline (Date.now() time) and, optionally, a caller's signal: one plain timer made only if
 * the call has to wait (issue 12: AbortSignal.timeout + AbortSignal.any per queued call cost more than the wait's
 * bookkeeping). At the deadline the wait rejects with `timedOut()`; on the caller's abort, with its reason.
 */
export interface WaitBound {
  deadline: number;
  signal?: AbortSignal | undefined;
  timedOut: () => Error;
}

export class Bulkhead {
  readonly #limit: number;
  #active = 0;
  readonly #queue: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`bulkhead limit must be a positive integer, got ${limit}`);
    this.#limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /**
   * `bound` may be a function (called only if the call has to wait: no signal, no timer otherwise) or a WaitBound
   * (a timer of its own only while waiting).
   */
  run<T>(action: () => Promise<T>, bound?: AbortSignal | (() => AbortSignal) | WaitBound): Promise<T> {
    // A caller takes a free slot only when nobody is queued, and a released slot is handed straight to the first
    // waiter (never put back for a newcomer to grab between the release and the waiter's wake-up: issue 8).
    if (this.#active >= this.#limit || this.#queue.length > 0) return this.#runQueued(action, bound);
    // A free slot: no async frame of its own (this is every call's path; issue 14), one settlement handler.
    this.#active++;
    let running: Promise<T>;
    try {
      running = action();
    } catch (err) {
      this.#release();
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the action's own error, as thrown
      return Promise.reject(err);
    }
    return running.then(
      (value) => {
        this.#release();
        return value;
      },
      (err: unknown) => {
        this.#release();
        throw err;
      },
    );
  }

  async #runQueued<T>(action: () => Promise<T>, bound?: AbortSignal | (() => AbortSignal) | WaitBound): Promise<T> {
    await (isWaitBound(bound) ? this.#waitUntil(bound) : this.#wait(typeof bound === 'function' ? bound() : bound));
    try {
      return await action();
    } finally {
      this.#release();
    }
  }

  /** The slot goes to the first waiter, or back to the pool. */
  #release(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#active--;
  }

  #waitUntil(bound: WaitBound): Promise<void> {
    return new Promise((resolve, reject) => {
      const { signal } = bound;
      if (signal?.aborted) return reject(signal.reason as Error);
      const leave = () => {
        const i = this.#queue.indexOf(entry);
        if (i >= 0) this.#queue.splice(i, 1);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        leave();
        reject(signal!.reason as Error);
      };
      const timer = setTimeout(() => {
        leave();
        reject(bound.timedOut());
      }, Math.max(1, bound.deadline - Date.now()));
      // Like AbortSignal.timeout: a waiting call alone does not keep the process up.
      timer.unref();
      const entry = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(entry);
    });
  }

  #wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const entry = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.#queue.indexOf(entry);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(entry);
    });
  }
}

function isWaitBound(v: unknown): v is WaitBound {
  return typeof v === 'object' && v !== null && typeof (v as { deadline?: unknown }).deadline === 'number' && !(v instanceof AbortSignal);
}
