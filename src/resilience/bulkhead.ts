// A concurrency quota (bulkhead): at most `limit` calls in flight; more wait in FIFO order instead of
// overloading a sandbox. A waiting call leaves the queue when its signal aborts (its deadline passed).
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

  async run<T>(action: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#active >= this.#limit) await this.#wait(signal);
    this.#active++;
    try {
      return await action();
    } finally {
      this.#active--;
      this.#queue.shift()?.();
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
