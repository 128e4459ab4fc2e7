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

// --- fair comparisons: warmed up, alternated, repeated ----------------------------------------------------

/** Cumulative CPU time in µs of the two sides of a call path: the caller's process and the sandbox doing the work. */
export interface CpuReading {
  host: number;
  sandbox: number;
  /** Which sandbox process or thread was read: a round across a restart has no sandbox figure. */
  source?: number | string;
}

/** One way of making the same call: the host's path or a raw baseline. */
export interface Contender {
  name: string;
  call: () => Promise<unknown>;
  cpu: () => CpuReading;
}

export interface Measured extends Figures {
  /** CPU µs per call of the calling process and of the sandbox process or thread. */
  hostCpuUs: number;
  sandboxCpuUs: number;
  /** Calls that rejected (counted, not hidden: a figure with failures is no figure), and the first error. */
  failed: number;
  firstError: unknown;
}

export type Load = { kind: 'sequential' } | { kind: 'pipelined'; inFlight: number };

async function measure(c: Contender, load: Load, count: number): Promise<Measured> {
  let failed = 0;
  let firstError: unknown;
  const call = () =>
    c.call().catch((err: unknown) => {
      if (failed++ === 0) firstError = err;
    });
  const before = c.cpu();
  const f = load.kind === 'sequential' ? await sequential(call, count, 0) : await pipelined(call, count, load.inFlight);
  const after = c.cpu();
  // pipelined() issues `inFlight` extra calls first to fill the pipe; they are in the CPU time too.
  const calls = count + (load.kind === 'pipelined' ? load.inFlight : 0);
  const sandboxCpuUs = before.source === after.source ? (after.sandbox - before.sandbox) / calls : Number.NaN;
  return { ...f, hostCpuUs: (after.host - before.host) / calls, sandboxCpuUs, failed, firstError };
}

/**
 * Warms every contender up with `warmup` calls, then runs `rounds` rounds of `count` calls each, alternating which
 * contender goes first (round r starts at contender r mod n), so neither side always runs on a warmer or a colder
 * machine. Returns every round's figures per contender, in the order given.
 */
export async function rounds(contenders: Contender[], load: Load, count: number, roundCount: number, warmup: number): Promise<Measured[][]> {
  for (const c of contenders) await measure(c, load, warmup);
  const results: Measured[][] = contenders.map(() => []);
  for (let r = 0; r < roundCount; r++) {
    for (let k = 0; k < contenders.length; k++) {
      const i = (r + k) % contenders.length;
      results[i]!.push(await measure(contenders[i]!, load, count));
    }
  }
  return results;
}

/** "median [min–max]" of a list; values that are NaN (no figure that round) are left out. */
function spread(values: number[], digits: number, unit = ''): string {
  const s = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (s.length === 0) return 'n/a';
  const note = s.length < values.length ? ` (${values.length - s.length} round(s) without)` : '';
  return `${fmt(median(s), digits)}${unit} [${fmt(s[0] ?? 0, digits)}–${fmt(s.at(-1) ?? 0, digits)}]${note}`;
}

/**
 * The figures of a comparison: per contender the median of its rounds with [min–max], and per baseline the median
 * of the per-round ratios host/baseline (paired within a round) with their [min–max].
 */
export function compareRounds(label: string, contenders: Contender[], results: Measured[][]): string {
  const lines = [`${label} (${results[0]?.length ?? 0} rounds, median [min–max]):`];
  for (const [i, c] of contenders.entries()) {
    const r = results[i]!;
    lines.push(
      `  ${c.name.padEnd(22)} ${spread(r.map((m) => m.opsPerSec), 0, ' ops/s').padEnd(34)} p50 ${spread(r.map((m) => m.p50Ms), 3, ' ms').padEnd(26)} p99 ${fmt(median(r.map((m) => m.p99Ms)), 3)} ms   ` +
        `CPU/call: caller ${spread(r.map((m) => m.hostCpuUs), 1, ' µs').padEnd(22)} sandbox ${spread(r.map((m) => m.sandboxCpuUs), 1, ' µs').padEnd(22)} total ${spread(r.map((m) => m.hostCpuUs + m.sandboxCpuUs), 1, ' µs')}`,
    );
  }
  for (const [i, c] of contenders.entries()) {
    const failures = results[i]!.filter((m) => m.failed > 0);
    if (failures.length > 0) {
      const first = failures[0]!.firstError;
      lines.push(`  !! ${c.name}: ${failures.reduce((n, m) => n + m.failed, 0)} call(s) FAILED in ${failures.length} round(s); first: ${first instanceof Error ? `${(first as { code?: string }).code ?? first.name}: ${first.message}` : String(first)}`);
    }
  }
  const host = results[0]!;
  for (let i = 1; i < contenders.length; i++) {
    const ratios = host.map((m, r) => m.opsPerSec / results[i]![r]!.opsPerSec);
    const cpu = host.map((m, r) => (m.hostCpuUs + m.sandboxCpuUs) / (results[i]![r]!.hostCpuUs + results[i]![r]!.sandboxCpuUs));
    lines.push(`  → ${contenders[0]!.name} / ${contenders[i]!.name}: throughput ratio ${spread(ratios, 2, '×')}   CPU per call ${spread(cpu, 2, '×')}`);
  }
  return lines.join('\n');
}
