// The harness behind `plinth/sdk/testing` (index.ts has the public types): an embedded Host over a temp plugin
// directory holding the extension, so a test exercises exactly what a host would run — snapshot, signature,
// manifest and schemas, grants, limits, the real worker or isolate sandbox.
import { createPrivateKey } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { PlinthError } from '../errors.ts';
import { loadHostConfig, type HostConfig } from '../config/index.ts';
import { startHost, type Host } from '../host/index.ts';
import { IsolateProcess } from '../sandbox/index.ts';
import { removeTree } from '../snapshot/index.ts';
import { generateKeyPair, loadTrustStore, signExtension, verifyExtension, SIGNATURE_FILE } from '../trust/index.ts';
import type { Runtime } from '../manifest/index.ts';
import type { Json } from '../sdk/index.ts';
import type { LoadedExtension, LogRecord, TestOptions } from './index.ts';

const TEST_PUBLISHER = 'plinth-test';
const LEVELS: Record<number, LogRecord['level']> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
/** Never copied into the staged package: VCS data, `plinth dev` recordings, the signature (re-signed). */
const NOT_STAGED = new Set(['.git', '.plinth', SIGNATURE_FILE]);

/** Hosts of this process still running: the shared isolate sandbox processes end with the last of them. */
let running = 0;

async function readManifest(dir: string): Promise<{ id: string; runtime: Runtime; pkg: Record<string, unknown> }> {
  const file = path.join(dir, 'package.json');
  let pkg: unknown;
  try {
    pkg = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `${file} cannot be read as JSON: ${(err as Error).message}`, { file, cause: err, hint: 'pass the extension folder, the one holding its package.json' });
  }
  const p = (typeof pkg === 'object' && pkg !== null ? pkg : {}) as Record<string, unknown>;
  const block = (typeof p.plinth === 'object' && p.plinth !== null ? p.plinth : {}) as Record<string, unknown>;
  if (typeof p.name !== 'string' || typeof p.plinth !== 'object') {
    throw new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `${file} has no name or no "plinth" block, so it is not an extension`, { file, hint: 'pass the extension folder (see `plinth new`)' });
  }
  const runtime = block.runtime === 'worker' || block.runtime === 'remote' ? block.runtime : 'isolate';
  return { id: p.name, runtime, pkg: p };
}

/** A copy of the extension, signed with a throw-away key that the harness's trust store trusts. */
async function stageSignedCopy(dir: string, into: string, runtime: Runtime, pkg: Record<string, unknown>): Promise<{ plugins: string; trust: string }> {
  const plugins = path.join(into, 'plugins');
  const copy = path.join(plugins, 'extension');
  await mkdir(plugins, { recursive: true });
  // Links are kept as links, so the host refuses them as it would refuse the folder itself.
  await cp(dir, copy, { recursive: true, verbatimSymlinks: true, filter: (src) => src === dir || !NOT_STAGED.has(path.relative(dir, src).split(path.sep)[0]!) });
  if (runtime === 'remote') {
    // A remote extension's module is served by a worker here: same definition, same ctx, same checks.
    const block = { ...(pkg.plinth as Record<string, unknown>), runtime: 'worker' };
    await writeFile(path.join(copy, 'package.json'), JSON.stringify({ ...pkg, plinth: block }, null, 2) + '\n');
  }
  const pair = generateKeyPair();
  await signExtension(copy, createPrivateKey(pair.privateKeyPem), TEST_PUBLISHER);
  const trust = path.join(into, 'trust.json');
  await writeFile(trust, JSON.stringify({ publishers: { [TEST_PUBLISHER]: { keys: [pair.publicKeyPem] } } }));
  return { plugins, trust };
}

/** The error with the staged copy's paths replaced by the author's folder, which is what they know. */
function inAuthorsTerms(err: unknown, copy: string, dir: string): unknown {
  if (!(err instanceof PlinthError)) return err;
  const swap = (text: string | undefined) => text?.split(copy).join(dir);
  return new PlinthError(err.code, swap(err.message) ?? err.message, {
    ...(err.extension ? { extension: err.extension } : {}),
    ...(err.file ? { file: swap(err.file)! } : {}),
    ...(err.hint ? { hint: swap(err.hint)! } : {}),
    ...(err.extensionStack ? { extensionStack: err.extensionStack } : {}),
    problems: err.problems.map((p) => ({ ...p, message: swap(p.message) ?? p.message })),
    cause: err,
  });
}

/** Why the extension is not serving: the host's own reason (code, problems, hint), as `plinth call` reports it. */
function notServing(host: Host, id: string, dir: string): PlinthError | undefined {
  const entries = host.list().filter((e) => e.id === id);
  if (entries.some((e) => e.state === 'active' || e.state === 'degraded')) return undefined;
  const failed = entries.find((e) => e.reason) ?? host.list().find((e) => e.reason);
  if (failed?.reason) return PlinthError.fromJSON(failed.reason);
  return new PlinthError('PLINTH_ERR_EXTENSION_UNAVAILABLE', `extension ${id} at ${dir} did not start (${entries[0]?.state ?? 'not found'})`, { extension: id, file: dir, hint: 'run `plinth ls --plugins <its parent folder>` to see why' });
}

export async function loadExtension(dirArg: string, options: TestOptions): Promise<LoadedExtension<never>> {
  const dir = path.resolve(dirArg);
  const { id, runtime, pkg } = await readManifest(dir);
  const temp = await mkdtemp(path.join(os.tmpdir(), 'plinth-harness-'));
  const copy = path.join(temp, 'plugins', 'extension');
  const logs: LogRecord[] = [];
  const logger = pino(
    { level: 'debug', base: undefined },
    {
      write(line: string) {
        const r = JSON.parse(line) as Record<string, unknown>;
        if (r.from !== 'extension' || r.extension !== id) return;
        const { level, msg, fields, ...rest } = r;
        void rest;
        logs.push({ level: LEVELS[level as number] ?? 'info', message: typeof msg === 'string' ? msg : '', fields: (fields ?? {}) as Record<string, unknown> });
      },
    },
  );
  let host: Host | undefined;
  let stopped: Promise<void> | undefined;
  running++;
  const stop = () =>
    (stopped ??= (async () => {
      try {
        await host?.stop();
      } finally {
        if (--running === 0) await IsolateProcess.shutdownAll();
        // The host's snapshots are read-only folders: removeTree makes them writable first (a plain rm fails unless root).
        await removeTree(temp);
      }
    })());
  try {
    // A release check: the folder's own signature first, as `plinth verify` checks it.
    if (options.trust !== undefined) await verifyExtension(dir, await loadTrustStore(path.resolve(options.trust)), id);
    const staged = await stageSignedCopy(dir, temp, runtime, pkg);
    const base = await loadHostConfig({ env: {}, noFile: true });
    const config: HostConfig = {
      ...base,
      plugins: [staged.plugins],
      dataDir: path.join(temp, 'data'),
      trust: { store: staged.trust, policy: 'required' },
      extensions: options.config === undefined ? {} : { [id]: { enabled: true, config: options.config } },
    };
    host = await startHost(config, { logger, env: { ...(options.env ?? {}) }, stopSandboxProcesses: false });
    const refusal = notServing(host, id, dir);
    if (refusal) throw refusal;
  } catch (err) {
    await stop();
    throw inAuthorsTerms(err, copy, dir);
  }
  const started = host;
  const version = host.list().find((e) => e.id === id)?.version ?? String(pkg.version);
  return {
    id,
    version,
    runtime,
    sandbox: runtime === 'isolate' ? 'isolate' : 'worker',
    logs,
    call: (stage: string, input: Json, callOptions: { timeoutMs?: number; signal?: AbortSignal } = {}) => {
      if (stopped) return Promise.reject(new PlinthError('PLINTH_ERR_SHUTDOWN', `extension ${id} was stopped by the test`, { extension: id, hint: 'call it before stop()' }));
      const timeoutMs = callOptions.timeoutMs ?? options.timeoutMs;
      return started.call(id, stage, input, { ...(timeoutMs === undefined ? {} : { timeoutMs }), ...(callOptions.signal ? { signal: callOptions.signal } : {}) }).catch((err: unknown) => {
        throw inAuthorsTerms(err, copy, dir);
      });
    },
    stop,
    [Symbol.asyncDispose]: stop,
  } as unknown as LoadedExtension<never>;
}
