// Stage-call path benchmark (issue 14: a benchmark that measures fairly). Every figure is printed beside its
// baseline measured in the same run on the same payload: worker extension vs raw piscina.run (and a raw
// worker_threads MessageChannel for reference); isolate extension vs raw isolated-vm driven from a child process
// over IPC. Every contender is warmed up first; then rounds alternate which one goes first; each line gives the
// median of the rounds with [min–max], the median of the per-round ratios, and the CPU µs per call of the calling
// process and of the sandbox thread/process (from /proc). Then cold start and idle memory per extension.
// Not a test: numbers are printed, nothing is asserted.
//   BENCH_QUICK=1           fewer calls and rounds (a quick look; the default is what figures are quoted from)
//   BENCH_ONLY=worker,isolate,cold,memory   run only these parts
//   BENCH_ROUNDS, BENCH_SEQUENTIAL, BENCH_PIPELINED, BENCH_WARMUP   override the counts
import { fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { pino } from 'pino';
import { loadHostConfig } from '../src/config/index.ts';
import { Host } from '../src/host/index.ts';
import { IsolateProcess } from '../src/sandbox/index.ts';
import { removeTree } from '../src/snapshot/index.ts';
import { generateKeyPair, signExtension } from '../src/trust/index.ts';
import { createPrivateKey } from 'node:crypto';
import type { Json } from '../src/sdk/index.ts';
import { compareRounds, median, rounds, type Contender, type CpuReading } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 3 : 5));
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? (QUICK ? 1000 : 3000));
const PIPELINED = Number(process.env.BENCH_PIPELINED ?? (QUICK ? 5000 : 20000));
const WARMUP = Number(process.env.BENCH_WARMUP ?? (QUICK ? 1000 : 3000));
const COLD_REPEATS = QUICK ? 3 : 5;
const ONLY = new Set((process.env.BENCH_ONLY ?? 'worker,isolate,cold,memory').split(',').map((s) => s.trim()));
const IN_FLIGHT = 64;

const payload: Json = {
  records: Array.from({ length: 20 }, (_, i) => ({ id: i, name: `user ${i}`, email: `user${i}@example.com`, amount: i * 1.5, tags: ['a', 'b'] })),
};

const key = generateKeyPair();
const privateKey = createPrivateKey(key.privateKeyPem);

/** A temp plugin dir with the given fixture extensions (copied under new ids), signed, plus a host config. */
async function workspace(extensions: Array<{ fixture: string; id: string }>): Promise<{ root: string; host: Host }> {
  const root = await mkdtemp(path.join(tmpdir(), 'plinth-bench-'));
  await mkdir(path.join(root, 'plugins'));
  for (const { fixture, id } of extensions) {
    const dir = path.join(root, 'plugins', id);
    await cp(path.join(HERE, 'fixtures', fixture), dir, { recursive: true });
    const pkgFile = path.join(dir, 'package.json');
    const pkg = JSON.parse(await readFile(pkgFile, 'utf8')) as { name: string };
    pkg.name = id;
    await writeFile(pkgFile, JSON.stringify(pkg, null, 2));
    await signExtension(dir, privateKey, 'bench');
  }
  await writeFile(path.join(root, 'trust.json'), JSON.stringify({ publishers: { bench: { keys: [key.publicKeyPem] } } }));
  await writeFile(path.join(root, 'plinth.config.yaml'), 'plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\nbudget: { memoryMb: 100000, concurrency: 100000 }\n');
  const config = await loadHostConfig({ cwd: root, env: {} });
  return { root, host: new Host(config, { logger: pino({ level: 'warn' }), stopSandboxProcesses: false }) };
}

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

// --- CPU time from /proc (schedstat: nanoseconds on a CPU, per thread) ------------------------------------

function schedUs(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').split(' ')[0]) / 1000;
  } catch {
    return 0; // the thread has exited
  }
}

/** This process's worker threads (Node names them `WorkerThread`), by thread id. */
function workerThreadIds(): Set<string> {
  const ids = new Set<string>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'WorkerThread') ids.add(tid);
    } catch {
      // exited meanwhile
    }
  }
  return ids;
}

/** Worker threads started by `start()`: the ones there afterwards that were not there before. */
async function threadsStartedBy(start: () => Promise<unknown>): Promise<string[]> {
  const before = workerThreadIds();
  await start();
  return [...workerThreadIds()].filter((t) => !before.has(t));
}

function selfCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Caller = this whole process minus the sandbox's threads in it; sandbox = those threads. */
function threadCpu(tids: string[]): () => CpuReading {
  return () => {
    const total = selfCpuUs();
    let sandbox = 0;
    for (const t of tids) sandbox += schedUs(`/proc/self/task/${t}/schedstat`);
    return { host: total - sandbox, sandbox };
  };
}

/** Caller = this process; sandbox = every thread of the process `pid()` (a sandbox process killed and restarted
 *  during a round makes that round's sandbox figure meaningless; its failed calls are printed). */
function processCpu(pid: () => number | undefined): () => CpuReading {
  return () => {
    let sandbox = 0;
    const p = pid();
    try {
      for (const t of readdirSync(`/proc/${p}/task`)) sandbox += schedUs(`/proc/${p}/task/${t}/schedstat`);
    } catch {
      // gone
    }
    return { host: selfCpuUs(), sandbox, ...(p === undefined ? {} : { source: p }) };
  };
}

async function compare(label: string, contenders: Contender[], inFlight: number | undefined): Promise<void> {
  const load = inFlight === undefined ? ({ kind: 'sequential' } as const) : ({ kind: 'pipelined', inFlight } as const);
  const count = inFlight === undefined ? SEQUENTIAL : PIPELINED;
  const results = await rounds(contenders, load, count, ROUNDS, inFlight === undefined ? Math.min(WARMUP, SEQUENTIAL) : WARMUP);
  console.log(compareRounds(label, contenders, results));
}

async function callPaths(): Promise<void> {
  console.log(
    `\n## Stage call path (payload ${JSON.stringify(payload).length} bytes JSON; ${ROUNDS} alternated rounds of ${SEQUENTIAL} sequential / ${PIPELINED} pipelined calls at ${IN_FLIGHT} in flight, after ${WARMUP} warm-up calls each)\n`,
  );
  const { root, host } = await workspace([
    { fixture: 'echo-worker', id: 'echo-worker' },
    { fixture: 'echo-isolate', id: 'echo-isolate' },
  ]);
  const hostThreads = await threadsStartedBy(() => host.start());

  if (ONLY.has('worker')) {
    // Raw piscina: one thread, same concurrentTasksPerWorker as the extension's limit.
    let pool: Piscina | undefined;
    const rawThreads = await threadsStartedBy(() => {
      pool = new Piscina({ filename: path.join(HERE, 'raw', 'piscina-echo.js'), minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: IN_FLIGHT });
      return pool.run(payload);
    });
    const rawPool = pool!;
    // Raw worker_threads: a MessageChannel echo, pipelined with ids (no pool, no framing): for reference.
    const waiting = new Map<number, () => void>();
    let nextId = 0;
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (m: { id: number }) => {
      waiting.get(m.id)?.();
      waiting.delete(m.id);
    });
    const rawChannel = () =>
      new Promise<void>((resolve) => {
        const id = nextId++;
        waiting.set(id, resolve);
        port1.postMessage({ id, payload });
      });
    let worker: Worker | undefined;
    const channelThreads = await threadsStartedBy(async () => {
      worker = new Worker(path.join(HERE, 'raw', 'channel-echo.js'));
      worker.postMessage({ port: port2 }, [port2]);
      await rawChannel();
    });
    const hostWorker: Contender = { name: 'host worker extension', call: () => host.call('echo-worker', 'echo', payload), cpu: threadCpu(hostThreads) };
    const piscina: Contender = { name: 'raw piscina.run', call: () => rawPool.run(payload), cpu: threadCpu(rawThreads) };
    const channel: Contender = { name: 'raw MessageChannel', call: rawChannel, cpu: threadCpu(channelThreads) };
    await compare('worker, sequential', [hostWorker, piscina, channel], undefined);
    await compare(`worker, ${IN_FLIGHT} in flight`, [hostWorker, piscina, channel], IN_FLIGHT);
    port1.close();
    await worker?.terminate();
    await rawPool.destroy();
  }

  if (ONLY.has('isolate')) {
    // Raw isolated-vm in a child process over IPC, the way the sandbox process is driven.
    const child = fork(path.join(HERE, 'raw', 'ivm-child.js'), [], { execArgv: ['--no-node-snapshot'] });
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    const pending = new Map<number, () => void>();
    child.on('message', (m: { id?: number }) => {
      if (m.id === undefined) return;
      pending.get(m.id)?.();
      pending.delete(m.id);
    });
    let childId = 0;
    const rawIsolate = () =>
      new Promise<void>((resolve) => {
        const id = childId++;
        pending.set(id, resolve);
        child.send({ id, input: payload });
      });
    const hostIsolate: Contender = { name: 'host isolate extension', call: () => host.call('echo-isolate', 'echo', payload), cpu: processCpu(() => IsolateProcess.shared().pid) };
    const raw: Contender = { name: 'raw ivm child', call: rawIsolate, cpu: processCpu(() => child.pid) };
    await compare('isolate, sequential', [hostIsolate, raw], undefined);
    await compare(`isolate, ${IN_FLIGHT} in flight`, [hostIsolate, raw], IN_FLIGHT);
    child.kill();
  }

  await host.stop();
  await removeTree(root); // its data dir holds read-only snapshots
}

async function coldStart(): Promise<void> {
  console.log(`\n## Cold start (scan + manifest + signature check + sandbox start → active; median of ${COLD_REPEATS})\n`);
  for (const runtime of ['worker', 'isolate'] as const) {
    const warm: number[] = [];
    const first: number[] = [];
    for (let i = 0; i < COLD_REPEATS; i++) {
      const { root, host } = await workspace([{ fixture: `echo-${runtime}`, id: `echo-${runtime}` }]);
      // For isolates, the first start forks the shared sandbox process; later ones load into the running process.
      await IsolateProcess.shutdownAll();
      const t0 = performance.now();
      await host.start();
      first.push(performance.now() - t0);
      const again = new Host(host.config, { logger: pino({ level: 'warn' }), stopSandboxProcesses: false });
      await host.stop();
      const t1 = performance.now();
      await again.start();
      warm.push(performance.now() - t1);
      await again.stop();
      await removeTree(root); // its data dir holds read-only snapshots
    }
    if (runtime === 'isolate') console.log(`isolate extension: ${median(warm).toFixed(1)} ms into a running sandbox process   (first one, forking the sandbox process: ${median(first).toFixed(1)} ms)`);
    else console.log(`worker extension: ${median(warm).toFixed(1)} ms   (first in this host process: ${median(first).toFixed(1)} ms)`);
  }
}

async function idleMemory(): Promise<void> {
  console.log('\n## Idle memory per extension\n');
  const isolates = 20;
  await IsolateProcess.shutdownAll();
  const probe = await workspace([{ fixture: 'echo-isolate', id: 'echo-isolate-0' }]);
  await probe.host.start();
  const pid = IsolateProcess.shared().pid!;
  await new Promise((r) => setTimeout(r, 300));
  const one = rssMb(pid);
  await probe.host.stop();
  await removeTree(probe.root); // its data dir holds read-only snapshots

  await IsolateProcess.shutdownAll();
  const many = await workspace(Array.from({ length: isolates }, (_, i) => ({ fixture: 'echo-isolate', id: `echo-isolate-${i}` })));
  await many.host.start();
  await new Promise((r) => setTimeout(r, 300));
  const all = rssMb(IsolateProcess.shared().pid!);
  console.log(`isolate: sandbox process RSS with 1 extension ${one.toFixed(1)} MB (process baseline), with ${isolates}: ${all.toFixed(1)} MB → ${((all - one) / (isolates - 1)).toFixed(2)} MB per additional isolate extension   (target ≤ 2 MB)`);
  await many.host.stop();
  await removeTree(many.root); // its data dir holds read-only snapshots

  // Workers share the host process: measured in a fresh process of its own, so garbage from the runs above
  // does not blur the figure.
  const child = fork(fileURLToPath(import.meta.url), ['worker-memory'], { execArgv: ['--no-node-snapshot', '--expose-gc'], stdio: 'inherit' });
  await new Promise((resolve) => child.once('exit', resolve));
}

async function workerMemory(): Promise<void> {
  const workers = 10;
  const w = await workspace(Array.from({ length: workers }, (_, i) => ({ fixture: 'echo-worker', id: `echo-worker-${i}` })));
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      global.gc?.();
      await new Promise((r) => setTimeout(r, 200));
    }
    return process.memoryUsage().rss / 1024 / 1024;
  };
  const before = await settle();
  await w.host.start();
  const after = await settle();
  console.log(`worker: host RSS ${before.toFixed(1)} MB → ${after.toFixed(1)} MB with ${workers} worker extensions (fresh process) → ${((after - before) / workers).toFixed(2)} MB per worker extension   (target ≤ 10 MB)`);
  await w.host.stop();
  await removeTree(w.root); // its data dir holds read-only snapshots
}

if (process.argv.includes('worker-memory')) {
  await workerMemory();
  process.exit(0);
}

if (ONLY.has('worker') || ONLY.has('isolate')) await callPaths();
if (ONLY.has('cold')) await coldStart();
if (ONLY.has('memory')) await idleMemory();
await IsolateProcess.shutdownAll();
