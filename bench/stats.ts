// Measurement helpers for benchmarks: sequential and N-in-flight runs with latency percentiles.

export interface Figures {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

function figures(latencies: number[], elapsedMs: number): Figures {
  const sorted = latencies.sort((a, b) => a - b);
  return { opsPerSec: (latencies.length / elapsedMs) * 1000, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

/** `count` calls one after another. */
export async function sequential(call: () => Promise<unknown>, count: number, warmup = Math.min(200, count)): Promise<Figures> {
  for (let i = 0; i < warmup; i++) await call();
  const latencies: number[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await call();
    latencies.push(performance.now() - t);
  }
  return figures(latencies, performance.now() - start);
}

/** `count` calls with `inFlight` outstanding at all times. */
export async function pipelined(call: () => Promise<unknown>, count: number, inFlight: number): Promise<Figures> {
  await Promise.all(Array.from({ length: inFlight }, () => call()));
  const latencies: number[] = [];
  let issued = 0;
  const start = performance.now();
  const lane = async () => {
    while (issued < count) {
      issued++;
      const t = performance.now();
      await call();
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return figures(latencies, performance.now() - start);
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** One line: host figures beside the baseline measured in the same run, and the ratio (host / raw ops/s). */
export function compareLine(label: string, host: Figures, raw: Figures, rawName: string): string {
  const ratio = host.opsPerSec / raw.opsPerSec;
  return (
    `${label.padEnd(34)} host ${fmt(host.opsPerSec).padStart(8)} ops/s  p50 ${fmt(host.p50Ms, 3).padStart(7)} ms  p99 ${fmt(host.p99Ms, 3).padStart(7)} ms | ` +
    `${rawName} ${fmt(raw.opsPerSec).padStart(8)} ops/s  p50 ${fmt(raw.p50Ms, 3).padStart(7)} ms  p99 ${fmt(raw.p99Ms, 3).padStart(7)} ms | ratio ${ratio.toFixed(2)}×`
  );
}
