// Event bus benchmark (issue 10). Each figure beside its baseline from the same run:
//   publish → in-process subscriber, durable (SQLite store, WAL, pending row + ack per event) vs in-memory bus;
//   publish → an isolate extension's handleEvent vs calling one of its stages directly.
// Not a test: numbers are printed, nothing is asserted.
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPrivateKey } from 'node:crypto';
import { pino } from 'pino';
import { loadHostConfig } from '../src/config/index.ts';
import { Host } from '../src/host/index.ts';
import { DurableBus } from '../src/events/index.ts';
import { openStore } from '../src/store/index.ts';
import { generateKeyPair, signExtension } from '../src/trust/index.ts';
import { compareLine, pipelined, sequential, type Figures } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EVENTS = Number(process.env.BENCH_EVENTS ?? 100_000);
const ISOLATE_EVENTS = Number(process.env.BENCH_ISOLATE_EVENTS ?? 20_000);
const WINDOW = 1000;
const IN_FLIGHT = 64;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Publishes `count` events in windows of WINDOW concurrent publishes; latency is publish call → handler. */
async function publishToInProcess(bus: DurableBus, options: { name?: string }, count: number): Promise<Figures> {
  const latencies: number[] = [];
  let received = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  bus.subscribe('bench.#', (e) => {
    latencies.push(performance.now() - (e.payload as { t: number }).t);
    if (++received === count) done();
  }, { ...options, maxQueued: WINDOW * 4 });
  const payload = { order: 'o-1', amount: 12.5, items: ['a', 'b', 'c'] };
  const start = performance.now();
  for (let sent = 0; sent < count; sent += WINDOW) {
    const batch: Array<Promise<unknown>> = [];
    for (let i = 0; i < WINDOW && sent + i < count; i++) batch.push(bus.publish(`bench.t${i % 16}`, { ...payload, t: performance.now() }, 'bench'));
    await Promise.all(batch);
  }
  await all;
  const elapsed = performance.now() - start;
  await bus.idle();
  const sorted = latencies.sort((a, b) => a - b);
  return { opsPerSec: (count / elapsed) * 1000, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
}

async function inProcess(): Promise<void> {
  console.log(`\n## Publish → in-process subscriber (${EVENTS} events, windows of ${WINDOW} concurrent publishes, 16 topics; latency = publish call → handler)\n`);
  const dir = await mkdtemp(path.join(tmpdir(), 'plinth-bench-events-'));
  const store = openStore(dir);
  const durable = new DurableBus({ store });
  const memory = new DurableBus();
  const d = await publishToInProcess(durable, { name: 'bench-durable' }, EVENTS);
  const m = await publishToInProcess(memory, {}, EVENTS);
  console.log(compareLine('durable (store, ack per event)', d, m, 'in-memory bus'));
  console.log(`target: durable ≥ 20,000 events/s → ${d.opsPerSec >= 20_000 ? 'met' : 'NOT met'} (${Math.round(d.opsPerSec).toLocaleString('en-US')} events/s)`);
  await durable.close();
  await memory.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
}

async function isolateHandleEvent(): Promise<void> {
  console.log(`\n## Publish → isolate extension handleEvent vs calling its stage directly (${ISOLATE_EVENTS} events / calls)\n`);
  const root = await mkdtemp(path.join(tmpdir(), 'plinth-bench-'));
  const key = generateKeyPair();
  await mkdir(path.join(root, 'plugins'));
  const dir = path.join(root, 'plugins', 'event-isolate');
  await cp(path.join(HERE, 'fixtures', 'event-isolate'), dir, { recursive: true });
  await signExtension(dir, createPrivateKey(key.privateKeyPem), 'bench');
  await writeFile(path.join(root, 'trust.json'), JSON.stringify({ publishers: { bench: { keys: [key.publicKeyPem] } } }));
  await writeFile(path.join(root, 'plinth.config.yaml'), 'plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\nevents: { maxQueuedPerSubscriber: 100000, maxInFlightPerSubscriber: 64 }\n');
  const host = new Host(await loadHostConfig({ cwd: root, env: {} }), { logger: pino({ level: 'warn' }) });
  await host.start();
  const stage = () => host.call('event-isolate', 'handle', { n: 1 });

  // One topic: handleEvent one at a time (ordered), against sequential stage calls.
  const oneTopic = async (count: number): Promise<Figures> => {
    const start = performance.now();
    for (let sent = 0; sent < count; sent += WINDOW) await Promise.all(Array.from({ length: Math.min(WINDOW, count - sent) }, () => host.bus.publish('bench.one', { n: 1 }, 'bench')));
    await host.bus.idle(120_000);
    return { opsPerSec: (count / (performance.now() - start)) * 1000, p50Ms: Number.NaN, p99Ms: Number.NaN };
  };
  const manyTopics = async (count: number): Promise<Figures> => {
    const start = performance.now();
    for (let sent = 0; sent < count; sent += WINDOW) await Promise.all(Array.from({ length: Math.min(WINDOW, count - sent) }, (_, i) => host.bus.publish(`bench.t${i % IN_FLIGHT}`, { n: 1 }, 'bench')));
    await host.bus.idle(120_000);
    return { opsPerSec: (count / (performance.now() - start)) * 1000, p50Ms: Number.NaN, p99Ms: Number.NaN };
  };
  await oneTopic(500);
  console.log(compareLine('handleEvent, one topic (in order)', await oneTopic(ISOLATE_EVENTS / 4), await sequential(stage, ISOLATE_EVENTS / 4), 'stage call, sequential'));
  console.log(compareLine(`handleEvent, ${IN_FLIGHT} topics`, await manyTopics(ISOLATE_EVENTS), await pipelined(stage, ISOLATE_EVENTS, IN_FLIGHT), `stage call, ${IN_FLIGHT} in flight`));
  console.log('(handleEvent figures are throughput publish → all handled; p50/p99 are not measured per event there: NaN)');
  await host.stop();
  await rm(root, { recursive: true, force: true });
}

await inProcess();
// BENCH_EVENTS_ONLY=in-process skips the isolate part (for quick before/after runs of the durable path).
if (process.env.BENCH_EVENTS_ONLY !== 'in-process') await isolateHandleEvent();
