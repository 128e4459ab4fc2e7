// Registry benchmark: start-up of 100 signed isolate extensions from nothing to all active (signature
// verification shown apart), and hot-reload latency from a folder replaced on disk to the new version serving.
import { createPrivateKey } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadHostConfig } from '../src/config/index.ts';
import { Host } from '../src/host/index.ts';
import { IsolateProcess } from '../src/sandbox/index.ts';
import { removeTree } from '../src/snapshot/index.ts';
import { generateKeyPair, loadTrustStore, signExtension, verifyExtension } from '../src/trust/index.ts';
import { scanExtensions } from '../src/registry/index.ts';
import { median } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const COUNT = Number(process.env.BENCH_EXTENSIONS ?? 100);
const key = generateKeyPair();
const privateKey = createPrivateKey(key.privateKeyPem);

async function makeExt(dir: string, fixture: string, id: string, version = '1.0.0'): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await cp(path.join(HERE, 'fixtures', fixture), dir, { recursive: true });
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { name: string; version: string };
  pkg.name = id;
  pkg.version = version;
  await writeFile(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  if (fixture === 'version-isolate') await writeFile(path.join(dir, 'version.js'), `export const VERSION = ${JSON.stringify(version)};\n`);
  await signExtension(dir, privateKey, 'bench');
}

async function workspace(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'plinth-bench-reg-'));
  await mkdir(path.join(root, 'plugins'));
  await writeFile(path.join(root, 'trust.json'), JSON.stringify({ publishers: { bench: { keys: [key.publicKeyPem] } } }));
  await writeFile(path.join(root, 'plinth.config.yaml'), 'plugins: [plugins]\ntrust: { store: trust.json }\ndataDir: data\nbudget: { memoryMb: 100000, concurrency: 100000 }\n');
  return root;
}

async function startup(): Promise<void> {
  console.log(`\n## Start-up of ${COUNT} signed isolate extensions (median of 3; the sandbox process already running)\n`);
  const root = await workspace();
  for (let i = 0; i < COUNT; i++) await makeExt(path.join(root, 'plugins', `ext-${i}`), 'echo-isolate', `ext-${i}`);
  const config = await loadHostConfig({ cwd: root, env: {} });
  const store = await loadTrustStore(path.join(root, 'trust.json'));
  // Warm the shared sandbox process so the figure is the extensions', not one process fork.
  const warm = new Host({ ...config, plugins: [] }, { logger: pino({ level: 'warn' }), stopSandboxProcesses: false });
  await warm.start();
  await IsolateProcess.shared().stats();
  const totals: number[] = [];
  const verifies: number[] = [];
  const scans: number[] = [];
  for (let run = 0; run < 3; run++) {
    const tv = performance.now();
    await Promise.all(Array.from({ length: COUNT }, (_, i) => verifyExtension(path.join(root, 'plugins', `ext-${i}`), store)));
    verifies.push(performance.now() - tv);
    const ts = performance.now();
    await scanExtensions(config.plugins, store, 'required');
    scans.push(performance.now() - ts);
    const host = new Host(config, { logger: pino({ level: 'warn' }), stopSandboxProcesses: false });
    const t = performance.now();
    await host.start();
    totals.push(performance.now() - t);
    const active = host.list().filter((e) => e.state === 'active').length;
    if (active !== COUNT) console.log(`  run ${run}: only ${active} of ${COUNT} active`);
    await host.stop();
  }
  console.log(`nothing → all ${COUNT} active: ${median(totals).toFixed(0)} ms   (target ≤ 1000 ms)`);
  console.log(`  of which discovery + manifests + signatures + resolution (no start): ${median(scans).toFixed(0)} ms; signature verification alone: ${median(verifies).toFixed(0)} ms`);
  await warm.stop();
  await removeTree(root); // its data dir holds read-only snapshots
}

async function reloadLatency(): Promise<void> {
  console.log('\n## Hot-reload latency: folder replaced on disk → new version serving (isolate, debounce included; median of 7)\n');
  const root = await workspace();
  const plugins = path.join(root, 'plugins');
  await makeExt(path.join(plugins, 'hot'), 'version-isolate', 'hot', '1.0.0');
  const config = await loadHostConfig({ cwd: root, env: {} });
  const host = new Host(config, { logger: pino({ level: 'warn' }), stopSandboxProcesses: false });
  await host.start();
  await host.watch();
  const latencies: number[] = [];
  for (let i = 1; i <= 7; i++) {
    const version = `1.0.${i}`;
    const staging = path.join(root, `staging-${i}`);
    await makeExt(staging, 'version-isolate', 'hot', version);
    const t = performance.now();
    await rm(path.join(plugins, 'hot'), { recursive: true, force: true });
    await rename(staging, path.join(plugins, 'hot'));
    for (;;) {
      const answer = (await host.call('hot', 'whoami', {}).catch(() => ({ version: '' }))) as { version: string };
      if (answer.version === version) break;
      if (performance.now() - t > 10_000) throw new Error(`version ${version} not serving after 10 s`);
      await new Promise((r) => setTimeout(r, 2));
    }
    latencies.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`reload latency: median ${median(latencies).toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms   (target ≤ 300 ms)`);
  await host.stop();
  await removeTree(root); // its data dir holds read-only snapshots
}

await startup();
await reloadLatency();
await IsolateProcess.shutdownAll();
