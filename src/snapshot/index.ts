// Verified snapshots (DESIGN.md §3 "what runs is what was verified"; STYLE.md "npm's cacache"): an extension is
// copied, file by file, into an immutable folder named by the hash of its contents under the host's data dir,
// hashing the bytes as they are copied. The signature is then checked against those hashes, the manifest read
// from the copy, and the sandbox loads, restarts and hot-swaps only from it. Nothing reads the plugin folder
// after the copy, so a file changed there later — even between a crash and the restart — never runs unchecked.
//
// Layout: `<root>/<sha256 of every file, plinth.sig included>/…`, read-only (files 0444, folders 0555).
// A snapshot is built in `<root>/.tmp-<pid>-<random>` beside it and renamed into place: two scans taking the
// same snapshot at once both succeed, and a reader never sees a half-written one. An existing snapshot is
// re-hashed before it is reused (integrity on every read, like cacache); a damaged one is replaced.
// A rescan of an unchanged package hashes it in place first: if the snapshot of exactly those hashes exists and
// re-hashes to them, it is used as it is (what runs is the snapshot, whose bytes were just hashed), so a reload
// reads each unchanged package twice and writes nothing.
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError, isPlinthError } from '../errors.ts';
import { copyPackage, hashPackage, SIGNATURE_FILE, type FileHashes, type PackageLimits } from '../trust/index.ts';

export const SNAPSHOTS_FOLDER = 'snapshots';
const TEMP_PREFIX = '.tmp-';

/** Where a host keeps its snapshots. */
export function snapshotsDir(dataDir: string): string {
  return path.join(dataDir, SNAPSHOTS_FOLDER);
}

export interface Snapshot {
  /** The snapshot folder: load, restart and swap from here. */
  dir: string;
  /** The plugin folder it was copied from (for listings and messages). */
  sourceDir: string;
  /** Every file but plinth.sig → SHA-256 of the bytes in the snapshot: what a signature must cover. */
  files: FileHashes;
  /** Empty folders of the package: the caller refuses them (trust refuseEmptyFolders) after the signature check. */
  emptyFolders: string[];
}

/** The snapshot's name: SHA-256 over every file and its hash, plinth.sig included (a re-signed package is another snapshot). */
function snapshotKey(files: FileHashes, signature: string | undefined): string {
  const entries = Object.keys(files)
    .sort()
    .map((f) => [f, files[f]!]);
  if (signature !== undefined) entries.push([SIGNATURE_FILE, signature]);
  return createHash('sha256').update(JSON.stringify(entries), 'utf8').digest('hex');
}

function failed(sourceDir: string, extension: string | undefined, err: unknown, root: string): PlinthError {
  return new PlinthError('PLINTH_ERR_SNAPSHOT_FAILED', `${extension ? `extension ${extension} at ${sourceDir}` : sourceDir}: cannot write its snapshot under ${root}: ${(err as Error).message}`, {
    ...(extension ? { extension } : {}),
    file: root,
    cause: err,
    hint: 'check that the host may write to its data dir (dataDir / PLINTH_DATA_DIR / --data-dir) and that the disk is not full',
  });
}

/** Makes every folder of a tree read-only (files were created 0444); children first. */
async function freeze(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) if (e.isDirectory()) await freeze(path.join(dir, e.name));
  await chmod(dir, 0o555);
}

/** Removes a snapshot or temp tree, making its read-only folders writable first. */
export async function removeTree(dir: string): Promise<void> {
  const thaw = async (d: string): Promise<void> => {
    try {
      await chmod(d, 0o755);
      for (const e of await readdir(d, { withFileTypes: true })) if (e.isDirectory()) await thaw(path.join(d, e.name));
    } catch {
      // gone already, or not ours: rm reports what matters
    }
  };
  await thaw(dir);
  await rm(dir, { recursive: true, force: true });
}

/** Whether an existing snapshot still holds exactly these bytes (false when there is none). */
async function intact(dir: string, files: FileHashes, signature: string | undefined): Promise<boolean> {
  try {
    const now = await hashPackage(dir);
    const keys = Object.keys(files);
    return now.signature === signature && Object.keys(now.files).length === keys.length && keys.every((f) => now.files[f] === files[f]);
  } catch {
    return false;
  }
}

/**
 * Copies the package in `sourceDir` into a verified-to-be snapshot under `root`, hashing while copying. Throws
 * the package-shape refusals of trust/files.ts (SIG_SYMLINK, PACKAGE_EMPTY_FOLDER, PACKAGE_NAME_CONFLICT,
 * PACKAGE_FILE_NAME_INVALID, PACKAGE_CHANGED, PACKAGE_TOO_LARGE past `limits`), and SNAPSHOT_FAILED when the data dir cannot be written.
 * Checking the signature is the caller's next step (trust verifyFiles on `dir` and `files`).
 */
export async function takeSnapshot(sourceDir: string, root: string, extension?: string, limits?: PackageLimits): Promise<Snapshot> {
  // Unchanged since the last scan: the existing snapshot, checked byte for byte, is this package.
  const seen = await hashPackage(sourceDir, extension, sourceDir, limits);
  const known = path.join(root, snapshotKey(seen.files, seen.signature));
  if (await intact(known, seen.files, seen.signature)) return { dir: known, sourceDir, files: seen.files, emptyFolders: seen.emptyFolders };

  const temp = path.join(root, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await mkdir(temp, { recursive: true });
  } catch (err) {
    throw failed(sourceDir, extension, err, root);
  }
  try {
    let copy;
    try {
      copy = await copyPackage(sourceDir, temp, extension, sourceDir, limits);
      await freeze(temp);
    } catch (err) {
      // A refusal, or a source file the host cannot read, is the package's problem; the rest is the data dir's.
      const at = (err as NodeJS.ErrnoException).path;
      if (isPlinthError(err) || (typeof at === 'string' && !at.startsWith(root))) throw err;
      throw failed(sourceDir, extension, err, root);
    }
    const dir = path.join(root, snapshotKey(copy.files, copy.signature));
    const snapshot: Snapshot = { dir, sourceDir, files: copy.files, emptyFolders: copy.emptyFolders };
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(temp, dir);
        return snapshot;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw failed(sourceDir, extension, err, root);
      }
      // Another scan made it first (same contents, same name), or a damaged copy is in the way.
      if (await intact(dir, copy.files, copy.signature)) return snapshot;
      if (attempt > 0) throw failed(sourceDir, extension, new Error(`${dir} exists and does not match its name`), root);
      const aside = path.join(root, `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}-damaged`);
      await rename(dir, aside).catch(() => undefined);
      await removeTree(aside);
    }
  } finally {
    await removeTree(temp).catch(() => undefined);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes every snapshot under `root` that is not in `keep` (the snapshot folders of running extensions and of
 * the copies the last scan considered), and temp folders left by processes that are gone. Call it only when no
 * snapshot of this process is being taken. Returns the folders removed.
 */
export async function pruneSnapshots(root: string, keep: Set<string>): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const dir = path.join(root, name);
    if (name.startsWith(TEMP_PREFIX)) {
      const pid = Number(name.slice(TEMP_PREFIX.length).split('-')[0]);
      if (Number.isInteger(pid) && pid !== process.pid && pidAlive(pid)) continue; // another host's scan in progress
    } else if (keep.has(dir)) continue;
    await removeTree(dir);
    removed.push(dir);
  }
  return removed;
}
