// Child process for lifecycle.test.ts: uses a worker sandbox in the given mode, then simply returns. The test
// asserts that this process exits on its own — nothing of the sandbox (threads, ports, timers) may keep it alive.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readPackageJson, validateExtensionPackage } from '../../../src/manifest/index.ts';
import { createContextHandler } from '../../../src/policy/index.ts';
import { createWorkerSandbox } from '../../../src/sandbox/worker/index.ts';

const [mode = 'stop', dir = ''] = process.argv.slice(2);
const pkg = await validateExtensionPackage(dir, await readPackageJson(dir));
const dataDir = await mkdtemp(path.join(tmpdir(), 'plinth-worker-child-'));
const spec = {
  instanceId: `${pkg.id}#child`,
  id: pkg.id,
  version: pkg.version,
  dir: pkg.dir,
  mainPath: pkg.mainPath,
  config: {},
  permissions: pkg.manifest.permissions,
  limits: { memoryMb: 64, callTimeoutMs: 5_000, concurrency: 2 },
  stages: Object.keys(pkg.manifest.stages),
};
const context = createContextHandler({ extension: pkg.id, dataDir, permissions: spec.permissions, emit: () => Promise.resolve(), log: () => {}, kv: new Map(), env: {} });
const sandbox = createWorkerSandbox(spec, context);
sandbox.onExit((exit) => console.log(`exit ${exit.reason}`));
await sandbox.start();
const options = { timeoutMs: 5_000, traceId: 'child' };
if (mode === 'crash') {
  await sandbox.call('exit', null, options).catch((err: { code?: string }) => console.log(err.code));
} else {
  await sandbox.call('kv_roundtrip', { key: 'k', value: 1 }, options);
  console.log(JSON.stringify(await sandbox.health(1_000)));
  if (mode === 'stop') await sandbox.stop(1_000);
}
await rm(dataDir, { recursive: true, force: true });
console.log('done');
