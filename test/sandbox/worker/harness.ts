// Shared set-up for the worker runtime's tests: a SandboxSpec read from a real fixture (or bundled) extension
// folder through the manifest validator, and the real ContextHandler of src/policy over a temp data directory,
// an in-memory event collector and a Map as kv store. No mocks: piscina threads run for real.
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { readPackageJson, validateExtensionPackage } from '../../../src/manifest/index.ts';
import { createContextHandler } from '../../../src/policy/index.ts';
import { createWorkerSandbox } from '../../../src/sandbox/worker/index.ts';
import type { Sandbox, SandboxExit, SandboxSpec, CallOptions } from '../../../src/sandbox/types.ts';
import type { Json } from '../../../src/sdk/index.ts';
import { ROOT, tempDir } from '../../helpers.ts';

export const WORKER_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'sandbox-worker');
export const PLUGINS = path.join(ROOT, 'plugins');

let instances = 0;

export async function loadSpec(dir: string, overrides: { config?: Record<string, Json>; limits?: Partial<SandboxSpec['limits']> } = {}): Promise<SandboxSpec> {
  const pkg = await validateExtensionPackage(dir, await readPackageJson(dir));
  const limits = { memoryMb: 128, callTimeoutMs: 10_000, concurrency: 1, ...pkg.manifest.limits, ...overrides.limits };
  return {
    instanceId: `${pkg.id}#${process.pid}.${++instances}`,
    id: pkg.id,
    version: pkg.version,
    dir: pkg.dir,
    mainPath: pkg.mainPath,
    config: overrides.config ?? {},
    permissions: pkg.manifest.permissions,
    limits,
    stages: Object.keys(pkg.manifest.stages),
  };
}

export interface Harness {
  sandbox: Sandbox;
  spec: SandboxSpec;
  dataDir: string;
  emitted: Array<{ topic: string; payload: Json }>;
  logs: Array<{ level: string; message: string; fields?: Record<string, Json> }>;
  kv: Map<string, Json>;
  /** Every ctx op the host was asked for, in order. */
  ops: string[];
  exits: SandboxExit[];
  /** Resolves with the first onExit report. */
  exited: Promise<SandboxExit>;
}

export async function harness(
  dir: string,
  options: { config?: Record<string, Json>; limits?: Partial<SandboxSpec['limits']>; env?: NodeJS.ProcessEnv; threads?: number; dataDir?: string } = {},
): Promise<Harness> {
  const spec = await loadSpec(dir, options);
  const dataDir = options.dataDir ?? (await tempDir('plinth-worker-'));
  const emitted: Harness['emitted'] = [];
  const logs: Harness['logs'] = [];
  const kv = new Map<string, Json>();
  const ops: string[] = [];
  const handler = createContextHandler({
    extension: spec.id,
    dataDir,
    permissions: spec.permissions,
    emit: (topic, payload) => {
      emitted.push({ topic, payload });
      return Promise.resolve();
    },
    log: (level, message, line) => logs.push({ level, message, ...(line.fields ? { fields: line.fields } : {}) }),
    kv,
    env: options.env ?? {},
  });
  const sandbox = createWorkerSandbox(
    spec,
    (op) => {
      ops.push(op.op);
      return handler(op);
    },
    options.threads === undefined ? {} : { threads: options.threads },
  );
  const exits: SandboxExit[] = [];
  const exited = new Promise<SandboxExit>((resolve) =>
    sandbox.onExit((exit) => {
      exits.push(exit);
      resolve(exit);
    }),
  );
  return { sandbox, spec, dataDir, emitted, logs, kv, ops, exits, exited };
}

export function opts(timeoutMs = 5_000, extra: Partial<CallOptions> = {}): CallOptions {
  return { timeoutMs, traceId: 'trace-test', ...extra };
}

/** Rejects if `promise` has not settled within `ms`: every wait in these tests is bounded. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** 1-based line of the first line of `file` containing `marker`. */
export async function lineOf(file: string, marker: string): Promise<number> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  const i = lines.findIndex((l) => l.includes(marker));
  if (i < 0) throw new Error(`${marker} not found in ${file}`);
  return i + 1;
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
