// A concurrency quota (bulkhead): at most `limit` calls in flight; more wait in FIFO order instead of
// overloading a sandbox. A waiting call leaves the queue when its signal aborts (its deadline passed). This is the
// one place a supervised extension's `limits.concurrency` is enforced (the worker runtime's own queue only guards
// a sandbox used without a supervisor, and with this in front never has more than `limit` calls to hold).
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

  /** `signal` may be a function: it is then called only if the call has to wait (no signal, no timer otherwise). */
  async run<T>(action: () => Promise<T>, signal?: AbortSignal | (() => AbortSignal)): Promise<T> {
    // A caller takes a free slot only when nobody is queued, and a released slot is handed straight to the first
    // waiter (never put back for a newcomer to grab between the release and the waiter's wake-up: issue 8).
    if (this.#active >= this.#limit || this.#queue.length > 0) await this.#wait(typeof signal === 'function' ? signal() : signal);
    else this.#active++;
    try {
      return await action();
    } finally {
      const next = this.#queue.shift();
      if (next) next();
      else this.#active--;
    }
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
