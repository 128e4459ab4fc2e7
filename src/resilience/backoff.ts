// Exponential backoff with full jitter for restarts: base · 2^attempt, capped, randomised so that many
// extensions failing together do not restart in lockstep.
export interface BackoffSettings {
  baseMs: number;
  maxMs: number;
}

export function backoffDelay(attempt: number, { baseMs, maxMs }: BackoffSettings, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** A promise that resolves after `ms` without holding the process open, or rejects when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    timer.unref();
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
