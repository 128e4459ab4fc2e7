// Helpers of the isolate runtime's tests: a SandboxSpec read from a real fixture package (validated like the host
// does), and a real ContextHandler from src/policy over a temp data dir with in-memory emit/log/kv collectors.
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { readPackageJson, validateExtensionPackage } from '../../../src/manifest/index.ts';
import { createContextHandler } from '../../../src/policy/index.ts';
import { createIsolateSandbox, IsolateProcess, type IsolateSandbox, type IsolateSandboxOptions } from '../../../src/sandbox/isolate/index.ts';
import type { SandboxSpec, ContextOp } from '../../../src/sandbox/types.ts';
import type { Json } from '../../../src/sdk/index.ts';
import { ROOT, tempDir } from '../../helpers.ts';

export const ISOLATE_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'sandbox-isolate');

export async function specFor(dir: string, overrides: Partial<SandboxSpec> = {}): Promise<SandboxSpec> {
  const pkg = await validateExtensionPackage(dir, await readPackageJson(dir));
  const m = pkg.manifest;
  return {
    instanceId: randomUUID(),
    id: pkg.id,
    version: pkg.version,
    dir: pkg.dir,
    mainPath: pkg.mainPath,
    config: {},
    permissions: m.permissions,
    limits: { memoryMb: m.limits?.memoryMb ?? 64, callTimeoutMs: m.limits?.callTimeoutMs ?? 5000, concurrency: m.limits?.concurrency ?? 1 },
    stages: Object.keys(m.stages),
    ...overrides,
  };
}

export const fixture = (name: string, overrides: Partial<SandboxSpec> = {}) => specFor(path.join(ISOLATE_FIXTURES, name), overrides);
export const plugin = (name: string, overrides: Partial<SandboxSpec> = {}) => specFor(path.join(ROOT, 'plugins', name), overrides);

export interface TestHost {
  dataDir: string;
  emitted: Array<{ topic: string; payload: Json }>;
  logs: Array<{ level: string; message: string }>;
  kv: Map<string, Json>;
  ops: ContextOp[];
  handler: (op: ContextOp) => Promise<Json | undefined>;
}

export async function testHost(spec: SandboxSpec, env: NodeJS.ProcessEnv = {}): Promise<TestHost> {
  const dataDir = await tempDir('plinth-isolate-');
  const host: TestHost = { dataDir, emitted: [], logs: [], kv: new Map(), ops: [], handler: () => Promise.resolve(undefined) };
  const inner = createContextHandler({
    extension: spec.id,
    dataDir,
    permissions: spec.permissions,
    emit: (topic, payload) => {
      host.emitted.push({ topic, payload });
      return Promise.resolve();
    },
    log: (level, message) => host.logs.push({ level, message }),
    kv: host.kv,
    env,
  });
  host.handler = (op) => {
    host.ops.push(op);
    return inner(op);
  };
  return host;
}

/** A started sandbox of a fixture with its test host; stopped when the test file ends. */
export async function started(spec: SandboxSpec, options: IsolateSandboxOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<{ sandbox: IsolateSandbox; host: TestHost }> {
  const host = await testHost(spec, options.env);
  const sandbox = createIsolateSandbox(spec, host.handler, options);
  after(() => sandbox.stop(1000));
  await sandbox.start();
  return { sandbox, host };
}

/** Every test file ends by killing its sandbox processes, so nothing holds the runner open. */
export function shutdownAfterAll(): void {
  after(() => IsolateProcess.shutdownAll());
}

export function call(sandbox: IsolateSandbox, stage: string, input: Json = {}, timeoutMs = 3000): Promise<Json> {
  return sandbox.call(stage, input, { timeoutMs, traceId: 'trace-1' });
}

/** Resolves with the time the promise took to settle (either way), and its outcome. */
export async function timed<T>(promise: Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const t0 = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - t0, value };
  } catch (error) {
    return { ms: performance.now() - t0, error };
  }
}

/** Counts event-loop ticks while `promise` runs: proof the host stayed responsive. */
export async function ticksDuring<T>(promise: Promise<T>, everyMs = 50): Promise<{ ticks: number; result: Promise<T> }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, everyMs);
  const settled = promise.then(
    () => undefined,
    () => undefined,
  );
  await settled;
  clearInterval(timer);
  return { ticks, result: promise };
}
