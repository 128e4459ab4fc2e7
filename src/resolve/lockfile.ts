// plinth.lock.json (schemas/lockfile.schema.json): which copy of each extension a host resolved — version, folder
// relative to the lockfile, and a digest of its signed contents — so a host run with --frozen-lockfile refuses to
// start anything that drifted (like `npm ci` against package-lock.json).
import { createHash } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import { toProblems, validators } from '../schema/index.ts';
import type { Candidate } from './index.ts';

export const LOCKFILE_NAME = 'plinth.lock.json';
export const LOCKFILE_VERSION = 1;

export interface LockedExtension {
  version: string;
  /** The extension folder relative to the lockfile's folder, forward slashes. */
  path: string;
  /** `sha256-<hex>`: see fileListDigest. */
  digest: string;
}

export interface Lockfile {
  lockfileVersion: typeof LOCKFILE_VERSION;
  hostVersion: string;
  /** Sorted by id. */
  extensions: Record<string, LockedExtension>;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `sha256-<hex>` of the signed file list (Verification.files or hashPackageFiles): one line per file,
 * `<relative path>\t<sha256 hex>\n`, sorted by path in code-unit order. Any file added, removed or changed changes it.
 */
export function fileListDigest(files: Record<string, string>): string {
  const hash = createHash('sha256');
  for (const f of Object.keys(files).sort(compareStrings)) hash.update(`${f}\t${files[f]}\n`, 'utf8');
  return `sha256-${hash.digest('hex')}`;
}

/** The folder of an extension relative to the lockfile's folder, with forward slashes ("." for the folder itself). */
function relativeDir(lockDir: string, dir: string): string {
  const rel = path.relative(path.resolve(lockDir), path.resolve(dir)).split(path.sep).join('/');
  return rel === '' ? '.' : rel;
}

function lockfilePath(lockDir: string): string {
  return path.join(lockDir, LOCKFILE_NAME);
}

/** A lockfile for the resolved extensions; `digests` maps each id to its fileListDigest. */
export function buildLockfile(resolved: Map<string, Candidate>, digests: Map<string, string>, lockDir: string, hostVersion: string): Lockfile {
  const extensions: Record<string, LockedExtension> = {};
  for (const id of [...resolved.keys()].sort(compareStrings)) {
    const c = resolved.get(id)!;
    const digest = digests.get(id);
    if (digest === undefined) {
      throw new PlinthError('PLINTH_ERR_LOCKFILE_INVALID', `cannot lock ${id} ${c.version} at ${c.dir}: no contents digest was computed for it`, {
        extension: id,
        file: lockfilePath(lockDir),
        hint: 'pass the digest of every resolved extension (fileListDigest of its verified or hashed files)',
      });
    }
    extensions[id] = { version: c.version, path: relativeDir(lockDir, c.dir), digest };
  }
  return { lockfileVersion: LOCKFILE_VERSION, hostVersion, extensions };
}

function invalid(file: string, message: string, problems: PlinthError['problems'] = [], cause?: unknown): PlinthError {
  return new PlinthError('PLINTH_ERR_LOCKFILE_INVALID', message, {
    file,
    problems,
    hint: `fix ${path.basename(file)}, or delete it and start the host without --frozen-lockfile to write a fresh one`,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Stable text: fixed key order, extensions sorted by id, two-space indent, trailing newline. */
function formatLockfile(lock: Lockfile): string {
  const extensions: Record<string, LockedExtension> = {};
  for (const id of Object.keys(lock.extensions).sort(compareStrings)) {
    const e = lock.extensions[id]!;
    extensions[id] = { version: e.version, path: e.path, digest: e.digest };
  }
  return `${JSON.stringify({ lockfileVersion: lock.lockfileVersion, hostVersion: lock.hostVersion, extensions }, null, 2)}\n`;
}

/** Writes the lockfile atomically (temp file in the same folder, then rename): a reader sees the old or the new. */
export async function writeLockfile(file: string, lock: Lockfile): Promise<void> {
  const text = formatLockfile(lock);
  if (!validators.lockfile(JSON.parse(text))) {
    throw invalid(file, `refusing to write an invalid lockfile to ${file}`, toProblems(validators.lockfile.errors));
  }
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await writeFile(tmp, text, { flag: 'wx' });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Reads and validates a lockfile; undefined when the file does not exist. */
export async function readLockfile(file: string): Promise<Lockfile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalid(file, `cannot read ${file}: ${(err as Error).message}`, [], err);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `${file} is not valid JSON: ${(err as Error).message}`, [{ path: '', message: (err as Error).message }], err);
  }
  if (!validators.lockfile(doc)) {
    const problems = toProblems(validators.lockfile.errors);
    throw invalid(file, `${file} does not match schemas/lockfile.schema.json: ${problems.map((p) => `${p.path || '/'} ${p.message}`).join('; ')}`, problems);
  }
  return doc as Lockfile;
}

function shortDigest(digest: string | undefined): string {
  return digest === undefined ? 'not computed' : digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

/**
 * --frozen-lockfile: one LOCKFILE_DRIFT per extension that differs from the lockfile — version, folder or contents
 * changed, resolved but not locked, or locked but no longer resolved. Empty when everything matches.
 */
export function checkFrozen(lock: Lockfile, resolved: Map<string, Candidate>, digests: Map<string, string>, lockDir: string): PlinthError[] {
  const file = lockfilePath(lockDir);
  const hint = 'restore the locked extensions, or start the host without --frozen-lockfile to update plinth.lock.json';
  const out: PlinthError[] = [];
  const ids = [...new Set([...Object.keys(lock.extensions), ...resolved.keys()])].sort(compareStrings);
  for (const id of ids) {
    const locked = Object.hasOwn(lock.extensions, id) ? lock.extensions[id] : undefined;
    const c = resolved.get(id);
    if (!locked && c) {
      out.push(new PlinthError('PLINTH_ERR_LOCKFILE_DRIFT', `${id} ${c.version} at ${c.dir} is not in ${LOCKFILE_NAME}`, { extension: id, file, hint }));
      continue;
    }
    if (locked && !c) {
      out.push(
        new PlinthError('PLINTH_ERR_LOCKFILE_DRIFT', `${id} is locked (${locked.version} at ${locked.path}) but is no longer installed or cannot start`, {
          extension: id,
          file,
          hint,
        }),
      );
      continue;
    }
    if (!locked || !c) continue;
    const drift: string[] = [];
    if (locked.version !== c.version) drift.push(`version locked ${locked.version}, now ${c.version}`);
    const rel = relativeDir(lockDir, c.dir);
    if (path.posix.normalize(locked.path) !== path.posix.normalize(rel)) drift.push(`path locked ${locked.path}, now ${rel}`);
    const digest = digests.get(id);
    if (digest !== locked.digest) drift.push(`contents digest locked ${shortDigest(locked.digest)}, now ${shortDigest(digest)}`);
    if (drift.length > 0) {
      out.push(new PlinthError('PLINTH_ERR_LOCKFILE_DRIFT', `${id} differs from ${LOCKFILE_NAME}: ${drift.join('; ')}`, { extension: id, file: c.dir, hint }));
    }
  }
  return out;
}
