// Shared test helpers: real temp directories, fixture folders copied into them, keys made per run,
// and the CLI run as a subprocess on the same Node as the tests.
import { cp, mkdtemp, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';
import { generateKeyPair, parseTrustStore, type TrustStore } from '../src/trust/index.ts';
import { PlinthError } from '../src/errors.ts';
import { removeTree } from '../src/snapshot/index.ts';
import { createPrivateKey, type KeyObject } from 'node:crypto';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'extensions');
export const BIN = path.join(ROOT, 'bin', 'plinth.js');

// Registered at import, so it belongs to the test file itself: an `after` called from inside a `before` hook
// would run as soon as that hook ends, deleting folders the suite still uses.
const created: string[] = [];
// removeTree: hosts leave read-only snapshot folders in their data dirs, which a plain rm cannot delete unless root.
after(() => Promise.all(created.map((dir) => removeTree(dir))));

/** A fresh temp directory, removed when the test file ends. */
export async function tempDir(prefix = 'plinth-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Copies fixture extension folders into `dir` under the given folder names; returns `dir`. */
export async function pluginDir(dir: string, folders: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [folder, fixture] of Object.entries(folders)) await cp(path.join(FIXTURES, fixture), path.join(dir, folder), { recursive: true });
  return dir;
}

export interface TestPublisher {
  id: string;
  privateKey: KeyObject;
  privateKeyPem: string;
  publicKeyPem: string;
  keyId: string;
}

export function makePublisher(id = 'test-pub'): TestPublisher {
  const pair = generateKeyPair();
  return { id, ...pair, privateKey: createPrivateKey(pair.privateKeyPem) };
}

export function trustStoreDoc(publishers: TestPublisher[], revoked: Record<string, string[]> = {}): unknown {
  return {
    publishers: Object.fromEntries(
      publishers.map((p) => [p.id, { keys: [p.publicKeyPem], ...(revoked[p.id] ? { revoked: revoked[p.id] } : {}) }]),
    ),
  };
}

export function trustStore(publishers: TestPublisher[], revoked: Record<string, string[]> = {}): TrustStore {
  return parseTrustStore(trustStoreDoc(publishers, revoked), 'test-trust.json');
}

export async function writeTrustStore(file: string, publishers: TestPublisher[], revoked: Record<string, string[]> = {}): Promise<string> {
  await writeFile(file, JSON.stringify(trustStoreDoc(publishers, revoked), null, 2));
  return file;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `plinth <args>` as a real subprocess; never rejects on a non-zero exit. */
export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Asserts that `promise` rejects with a PlinthError of `code`; returns the error for further checks. */
export async function rejectsWith<T = unknown>(promise: Promise<T>, code: string): Promise<PlinthError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof PlinthError && err.code === code) return err;
    throw new Error(`expected a PlinthError ${code}, got ${err instanceof PlinthError ? err.code : String(err)}`, { cause: err });
  }
  throw new Error(`expected a PlinthError ${code}, but it resolved`);
}

/**
 * Waits until `check` holds, polling every 20 ms, and fails after `ms`: for state that lives in another thread or
 * process (or behind I/O), where there is no event to wait on.
 */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(20);
  }
}
