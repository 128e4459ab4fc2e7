// Remote-runtime benchmark (issue 13): `stages.call` over the control channel to an extension served by a runner
// process on the same machine (client → plinth serve → runner → back), beside a raw ws JSON-RPC echo server
// (bench/raw/ws-echo.js: one hop, nothing checked) measured in the same run, sequential and 100 in flight, rounds
// alternating, median; target ≥ 0.8× the raw echo. Then a pool of 4 runners against one: echo (the work is the
// call path, in the host) and `spin` (1 ms of CPU per call in the runner, where more runners can help).
//   BENCH_QUICK=1   fewer calls and one round (a quick look)
//   BENCH_CALLS=n   calls per round (default 3000)
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectControl, type ControlClient } from '../src/control/index.ts';
import { generateKeyPair, signExtension } from '../src/trust/index.ts';
import { compareLine, median, pipelined, sequential, type Figures } from './stats.ts';
import { waitLine } from './child.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(HERE, '..', 'bin', 'plinth.js');
const QUICK = process.env.BENCH_QUICK === '1';
const CALLS = Number(process.env.BENCH_CALLS ?? (QUICK ? 500 : 3000));
const ROUNDS = QUICK ? 1 : 3;
const profile = () => (process.env.BENCH_PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_PROFILE_DIR] : []);
const RUNNER_TOKEN = 'bench-runner-token-0123456789abcdef';

async function setup(): Promise<{ root: string; dir: string; serve: ChildProcess; url: string; token: string }> {
  const key = generateKeyPair();
  const root = await mkdtemp(path.join(tmpdir(), 'plinth-bench-remote-'));
  await mkdir(path.join(root, 'plugins'));
  const dir = path.join(root, 'echo-remote');
  await cp(path.join(HERE, 'fixtures', 'echo-remote'), dir, { recursive: true });
  await signExtension(dir, createPrivateKey(key.privateKeyPem), 'bench');
  await writeFile(path.join(root, 'trust.json'), JSON.stringify({ publishers: { bench: { keys: [key.publicKeyPem] } } }));
  await writeFile(
    path.join(root, 'plinth.config.json'),
    JSON.stringify({
      plugins: ['plugins'],
      trust: { store: 'trust.json' },
      dataDir: 'data',
      log: { level: 'warn' },
      sandbox: { remote: 'trusted' },
      control: { port: 0, rateLimit: { perSecond: 1_000_000, burst: 1_000_000 }, tokens: [{ token: RUNNER_TOKEN, role: 'runner' }] },
    }),
  );
  // BENCH_PROFILE_DIR=<dir>: plinth serve and the runners write V8 CPU profiles there when they stop (--cpu-prof).
  const serve = spawn(process.execPath, ['--no-node-snapshot', ...profile(), BIN, 'serve', '--no-watch', '--log-format', 'json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PLINTH_LOG_LEVEL: 'info' } });
  await waitLine(serve, 'stderr', /control channel on/);
  const info = JSON.parse(await readFile(path.join(root, 'data', 'serve.json'), 'utf8')) as { url: string };
  return { root, dir, serve, url: info.url, token: (await readFile(path.join(root, 'data', 'token'), 'utf8')).trim() };
}

async function startRunner(dir: string, url: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...profile(), path.join(HERE, 'remote-runner.ts'), dir, url, RUNNER_TOKEN], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitLine(child, 'stdout', /"registered"/);
  return child;
}

async function startEcho(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [path.join(HERE, 'raw', 'ws-echo.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await waitLine(child, 'stdout', /\{"port":\d+\}/);
  return { child, url: `ws://127.0.0.1:${(JSON.parse(line) as { port: number }).port}/rpc` };
}

const medianFigures = (all: Figures[]): Figures => ({ opsPerSec: median(all.map((f) => f.opsPerSec)), p50Ms: median(all.map((f) => f.p50Ms)), p99Ms: median(all.map((f) => f.p99Ms)) });
const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });

async function main(): Promise<void> {
  const s = await setup();
  const echo = await startEcho();
  const runners: ChildProcess[] = [];
  try {
    runners.push(await startRunner(s.dir, s.url));
    const ours = await connectControl({ url: s.url, token: s.token });
    const raw = await connectControl({ url: echo.url, token: undefined });
    const input = { id: 1, name: 'a record', tags: ['x', 'y'] };
    const call = (c: ControlClient, stage = 'echo', i: unknown = input) => () => c.request('stages.call', { extension: 'echo-remote', stage, input: i as never });
    console.log(`\n## Remote runtime: ${CALLS} calls per round, ${ROUNDS} round(s) alternating, median (client, plinth serve, runners and the echo server on one 2-core machine)\n`);
    for (const [label, run] of [
      ['stages.call → runner, sequential', (f: () => Promise<unknown>) => sequential(f, CALLS)],
      ['stages.call → runner, 100 in flight', (f: () => Promise<unknown>) => pipelined(f, CALLS, 100)],
    ] as const) {
      const a: Figures[] = [];
      const b: Figures[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        if (r % 2 === 0) {
          a.push(await run(call(ours)));
          b.push(await run(call(raw)));
        } else {
          b.push(await run(call(raw)));
          a.push(await run(call(ours)));
        }
      }
      console.log(compareLine(label, medianFigures(a), medianFigures(b), 'raw ws echo'));
    }

    const spinInput = { ms: 1 };
    const measurePool = async (): Promise<{ echo: Figures; spin: Figures }> => {
      const e: Figures[] = [];
      const p: Figures[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        e.push(await pipelined(call(ours), CALLS, 100));
        p.push(await pipelined(call(ours, 'spin', spinInput), Math.max(200, Math.round(CALLS / 3)), 100));
      }
      return { echo: medianFigures(e), spin: medianFigures(p) };
    };
    const one = await measurePool();
    for (let i = 0; i < 3; i++) runners.push(await startRunner(s.dir, s.url));
    const { extension } = await ours.request('extensions.get', { id: 'echo-remote' });
    const four = await measurePool();
    const calls = extension.pool?.instances.length ?? 0;
    console.log(`\n## Pool of ${calls} runners vs 1 (100 in flight, round-robin)\n`);
    console.log(`echo (work in the host's call path): 1 runner ${fmt(one.echo.opsPerSec)} ops/s, 4 runners ${fmt(four.echo.opsPerSec)} ops/s: ${(four.echo.opsPerSec / one.echo.opsPerSec).toFixed(2)}×`);
    console.log(`spin 1 ms CPU in the runner:         1 runner ${fmt(one.spin.opsPerSec)} ops/s, 4 runners ${fmt(four.spin.opsPerSec)} ops/s: ${(four.spin.opsPerSec / one.spin.opsPerSec).toFixed(2)}× (a runner serves one CPU-bound call at a time; 2 cores bound the gain)`);
    const after = await ours.request('extensions.get', { id: 'echo-remote' });
    console.log(`calls per runner: ${(after.extension.pool?.instances ?? []).map((i) => i.calls).join(', ')}`);
    await ours.close();
    await raw.close();
  } finally {
    for (const r of runners) r.kill(process.env.BENCH_PROFILE_DIR ? 'SIGTERM' : 'SIGKILL');
    const exited = new Promise((r) => s.serve.once('exit', r));
    s.serve.kill('SIGTERM');
    echo.child.kill('SIGTERM');
    await exited;
  }
}

await main();
