// `plinth dev` reload latency (issue 13): from a save (writeFile returns) to the new version serving a call, for an
// isolate extension (test/fixtures/dev/greeter: two modules), target ≤ 300 ms. Printed beside a baseline measured
// in the same run: a bare isolated-vm compile + instantiate + evaluate of the same two modules in a fresh isolate
// and one call of the stage — the least any reload of this code can cost — with the ratio. The session's own
// breakdown (watcher settle + debounce, checks, host reload) is shown too.
// Not a test: numbers are printed, nothing is asserted.
//   BENCH_QUICK=1    fewer saves (a quick look; the default is what figures are quoted from)
//   BENCH_SAVES=n    saves measured
import { once } from 'node:events';
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ivm from 'isolated-vm';
import { pino } from 'pino';
import { loadHostConfig } from '../src/config/index.ts';
import { DevSession, type RejectedEvent, type ServingEvent } from '../src/dev/index.ts';
import { IsolateProcess } from '../src/sandbox/index.ts';
import { removeTree } from '../src/snapshot/index.ts';
import { median } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(HERE, '..', 'test', 'fixtures', 'dev', 'greeter');
const QUICK = process.env.BENCH_QUICK === '1';
const SAVES = Number(process.env.BENCH_SAVES ?? (QUICK ? 7 : 25));

function p90(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(0.9 * s.length))] ?? 0;
}

/** A fresh isolate: compile both modules, link, evaluate, call greet once. */
async function bareCompileRun(index: string, lib: string, salutation: string): Promise<number> {
  const t = performance.now();
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  try {
    const context = await isolate.createContext();
    await context.global.set('console', new ivm.ExternalCopy({}).copyInto());
    const libModule = await isolate.compileModule(lib.replace("'hello'", JSON.stringify(salutation)), { filename: 'bench://greeter/lib.js' });
    const main = await isolate.compileModule(index.replace('console.log(`greeting ${input.name}`);', ''), { filename: 'bench://greeter/index.js' });
    await libModule.instantiate(context, () => {
      throw new Error('lib.js imports nothing');
    });
    await main.instantiate(context, () => libModule);
    await main.evaluate({ timeout: 1000 });
    const ns = main.namespace;
    const exported = await ns.get('default', { reference: true });
    const stages = await exported.get('stages', { reference: true });
    const greet = await stages.get('greet', { reference: true });
    const out = (await greet.apply(undefined, [new ivm.ExternalCopy({ name: 'ada' }).copyInto()], { result: { copy: true }, timeout: 1000 })) as { message: string };
    if (out.message !== `${salutation} ada`) throw new Error(`baseline returned ${JSON.stringify(out)}`);
    return performance.now() - t;
  } finally {
    isolate.dispose();
  }
}

async function main(): Promise<void> {
  console.log(`\n## plinth dev: save → new version serving (isolate extension, ${SAVES} saves, median / p90)\n`);
  const root = await mkdtemp(path.join(tmpdir(), 'plinth-bench-dev-'));
  const dir = path.join(root, 'greeter');
  await cp(FIXTURE, dir, { recursive: true });
  const index = await readFile(path.join(dir, 'index.js'), 'utf8');
  const lib = await readFile(path.join(dir, 'lib.js'), 'utf8');

  // Baseline, warmed up, then measured the same number of times.
  for (let i = 0; i < 3; i++) await bareCompileRun(index, lib, `warm${i}`);
  const baseline: number[] = [];
  for (let i = 0; i < SAVES; i++) baseline.push(await bareCompileRun(index, lib, `base${i}`));

  const config = await loadHostConfig({ cwd: root, noFile: true, env: {}, flags: { dev: true, trustPolicy: 'warn', dataDir: path.join(root, 'data') } });
  const session = new DevSession({ dir, config, logger: pino({ level: 'silent' }), control: false });
  await session.start();
  const host = session.host!;
  const totals: number[] = [];
  const fromEvent: number[] = [];
  const checks: number[] = [];
  const reloads: number[] = [];
  try {
    for (let i = 0; i < SAVES + 2; i++) {
      const salutation = `v${i}`;
      // Listeners of the event that did not come are removed once the other one has (no leak over the saves).
      const done = new AbortController();
      const signal = AbortSignal.any([done.signal, AbortSignal.timeout(30_000)]);
      const verdict = Promise.race([
        once(session, 'serving', { signal }).then(([e]) => e as ServingEvent),
        once(session, 'rejected', { signal }).then(([e]) => {
          throw new Error(`save ${i} rejected: ${JSON.stringify((e as RejectedEvent).problems)}`);
        }),
      ]);
      const t = performance.now();
      await writeFile(path.join(dir, 'lib.js'), `export const salutation = ${JSON.stringify(salutation)};\n`);
      const e = await verdict.finally(() => done.abort());
      const out = (await host.call('greeter', 'greet', { name: 'ada' })) as { message: string };
      const total = performance.now() - t;
      if (out.message !== `${salutation} ada`) throw new Error(`save ${i}: the new version did not serve (${out.message})`);
      if (i < 2) continue; // warm-up saves
      totals.push(total);
      fromEvent.push(e.ms);
      checks.push(e.timings.check);
      reloads.push(e.timings.reload);
    }
  } finally {
    await session.stop();
    await IsolateProcess.shutdownAll();
    await removeTree(root);
  }
  const b = median(baseline);
  const m = median(totals);
  console.log(`save → new version serving a call: ${m.toFixed(0)} ms median, ${p90(totals).toFixed(0)} ms p90   (target ≤ 300 ms)`);
  console.log(`  baseline, bare isolated-vm compile + evaluate + one call of the same modules: ${b.toFixed(1)} ms median → ratio ${(m / b).toFixed(1)}×`);
  const debounce = median(fromEvent.map((x, i) => x - checks[i]! - reloads[i]!));
  console.log(
    `  of which (medians): until the watcher reports the write (native events, the size settling for 20 ms) ${(m - median(fromEvent)).toFixed(0)} ms; debounce (15 ms) ${debounce.toFixed(0)} ms; checks (manifest and schemas, syntax of every module) ${median(checks).toFixed(0)} ms; host reload (snapshot, verify, start beside the old, swap) ${median(reloads).toFixed(0)} ms; then one call`,
  );
}

await main();
