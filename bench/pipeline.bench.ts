// Pipeline engine overhead (issue 11): a DAG of no-op isolate stages run by the engine — journal on (every state
// change committed to the SQLite store), `pipeline.*` events published on the durable bus — against the same calls
// made directly, in the same shape (same order, same parallelism), in the same process. The difference per
// stage is what the engine costs: scheduling, template resolution, journal writes, events, progress.
// DAG: blocks of 10 stages chained one after another — a root, 8 stages that need it (fan-out), a join that needs
// all 8 (fan-in); the next block's root needs the join. 1 000 stages (target ≤ 50 µs/stage) and 10 000 (linear?).
// Not a test: numbers are printed, nothing is asserted. BENCH_PIPELINE_ROUNDS (default 3) rounds, median shown;
// BENCH_PIPELINE_STAGES picks the sizes.
import { cp, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPrivateKey } from 'node:crypto';
import { pino } from 'pino';
import { loadHostConfig } from '../src/config/index.ts';
import { Host } from '../src/host/index.ts';
import { generateKeyPair, signExtension } from '../src/trust/index.ts';
import { removeTree } from '../src/snapshot/index.ts';
import type { PipelineDefinition, StageDefinition } from '../src/pipeline/index.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.BENCH_PIPELINE_ROUNDS ?? 3);
// BENCH_PIPELINE_STAGES=1000 (comma-separated) runs only those sizes, e.g. a quick 1 000-stage check.
const SIZES = (process.env.BENCH_PIPELINE_STAGES ?? '1000,10000').split(',').map(Number);
const FAN = 8;
const BLOCK = FAN + 2;

function dag(stages: number): PipelineDefinition {
  const list: StageDefinition[] = [];
  const add = (id: string, needs: string[]) =>
    list.push({ id, extension: 'echo-isolate', stage: 'echo', with: { n: list.length }, needs, retry: { retry: { policy: 'none' }, nonRetryable: [] }, continueOnError: false, location: { path: `/stages/${list.length}` } });
  for (let b = 0; b < stages / BLOCK; b++) {
    add(`b${b}-root`, b === 0 ? [] : [`b${b - 1}-join`]);
    for (let i = 0; i < FAN; i++) add(`b${b}-s${i}`, [`b${b}-root`]);
    add(`b${b}-join`, Array.from({ length: FAN }, (_, i) => `b${b}-s${i}`));
  }
  return { name: `bench-${stages}`, version: '1.0.0', maxConcurrentStages: FAN, onFailure: 'stop', triggers: [{ type: 'manual' }], stages: list };
}

/** CPU time (user + system, all threads) of this process so far, in µs: where the engine's own work shows. */
function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** The same calls, same dependencies, no engine. */
async function direct(host: Host, stages: number): Promise<number> {
  const call = (n: number) => host.call('echo-isolate', 'echo', { n });
  const start = performance.now();
  let n = 0;
  for (let b = 0; b < stages / BLOCK; b++) {
    await call(n++);
    await Promise.all(Array.from({ length: FAN }, () => call(n++)));
    await call(n++);
  }
  return performance.now() - start;
}

async function engine(host: Host, def: PipelineDefinition): Promise<{ totalMs: number; checkMs: number }> {
  const start = performance.now();
  const { runId } = host.pipelines.startDefinition(def);
  const checked = performance.now();
  const run = await host.pipelines.wait(runId);
  if (run.state !== 'succeeded') throw new Error(`bench run ${run.state}: ${run.error?.message}`);
  return { totalMs: performance.now() - start, checkMs: checked - start };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'plinth-bench-pipeline-'));
  const key = generateKeyPair();
  const dir = path.join(root, 'plugins', 'echo-isolate');
  await mkdir(path.dirname(dir), { recursive: true });
  await cp(path.join(HERE, 'fixtures', 'echo-isolate'), dir, { recursive: true });
  await signExtension(dir, createPrivateKey(key.privateKeyPem), 'bench');
  await writeFile(path.join(root, 'trust.json'), JSON.stringify({ publishers: { bench: { keys: [key.publicKeyPem] } } }));
  await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\npipelines: { maxConcurrentStages: ${FAN} }\n`);
  const host = new Host(await loadHostConfig({ cwd: root, env: {} }), { logger: pino({ level: 'warn' }) });
  await host.start();
  // Timers of the host are unref'd: keep the process up while a run is awaited.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    console.log(`\n## Pipeline engine overhead per stage (no-op isolate stages; journal on; events on the durable bus; ${ROUNDS} rounds, median)\n`);
    console.log('DAG: blocks of 10 (root → 8 in parallel → join), chained. overhead = (engine run − same calls made directly) / stages.\n');
    // Warm-up: the isolate, the store, the JIT.
    await direct(host, 100);
    await engine(host, dag(100));
    for (const stages of SIZES) {
      const def = dag(stages);
      const e: number[] = [];
      const d: number[] = [];
      const c: number[] = [];
      // Host-process CPU per stage of each side: the engine's own work, apart from how the machine's load
      // stretches the wall clock (2 shared cores: the wall-clock difference also holds scheduling delays).
      const eCpu: number[] = [];
      const dCpu: number[] = [];
      const runDirect = async () => {
        const t = cpuUs();
        d.push(await direct(host, stages));
        dCpu.push((cpuUs() - t) / stages);
      };
      const runEngine = async () => {
        const t = cpuUs();
        const x = await engine(host, def);
        eCpu.push((cpuUs() - t) / stages);
        e.push(x.totalMs);
        c.push(x.checkMs);
      };
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which goes first, so neither always runs on a warmer machine.
        if (r % 2 === 0) {
          await runDirect();
          await runEngine();
        } else {
          await runEngine();
          await runDirect();
        }
      }
      const overheads = e.map((ms, i) => ((ms - d[i]!) * 1000) / stages);
      const cpuOverheads = eCpu.map((us, i) => us - dCpu[i]!);
      console.log(
        `${String(stages).padStart(6)} stages: engine ${median(e).toFixed(0)} ms, direct ${median(d).toFixed(0)} ms → overhead ${median(overheads).toFixed(1)} µs/stage ` +
          `(rounds: ${overheads.map((o) => o.toFixed(1)).join(', ')}; of which the pre-run check ${((median(c) * 1000) / stages).toFixed(1)} µs/stage)\n` +
          `${''.padStart(14)}host CPU per stage: engine ${median(eCpu).toFixed(1)} µs, direct ${median(dCpu).toFixed(1)} µs → engine's own CPU ${median(cpuOverheads).toFixed(1)} µs/stage (rounds: ${cpuOverheads.map((o) => o.toFixed(1)).join(', ')})`,
      );
    }
  } finally {
    clearInterval(keepAlive);
    await host.stop();
    await removeTree(root);
  }
}

await main();
