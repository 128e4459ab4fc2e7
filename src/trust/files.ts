// What a package is (DESIGN.md §3), decided in one walk that signing, verifying and snapshotting share: every
// regular file under the folder, by relative path with forward slashes. Refused on the way, whatever the trust
// policy, because the signature and the load path must agree on what the package holds:
// - symbolic links and special files (what is signed must be what runs);
// - empty folders: plinth.sig lists files only, so a folder with none would be neither signed nor compared
//   (reported after any difference in the file list, so a deleted file is named as missing, not its folder);
// - names with control characters: the lockfile digest and messages are line-based;
// - two names that differ only in case or Unicode normalization: one file on macOS or Windows, two in plinth.sig.
// Every file is read from a descriptor opened without following links, and checked to be the file at that path
// inside the package, so the bytes hashed are the bytes of the package — and, when copying, the bytes written.
import { createHash } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import { mkdir, open, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';

export const SIGNATURE_FILE = 'plinth.sig';
/** A folder at the package root that is never part of the package: the author's local `plinth dev` state. */
export const LOCAL_FOLDER = '.plinth';

/** Relative path → SHA-256 hex. Has no prototype: a file may be named `__proto__`, `constructor` or `toString`. */
export type FileHashes = Record<string, string>;

export function emptyFileHashes(): FileHashes {
  return Object.create(null) as FileHashes;
}

/** A copy of `hashes` without a prototype (e.g. `files` parsed from plinth.sig). */
export function toFileHashes(hashes: Readonly<Record<string, string>>): FileHashes {
  const out = emptyFileHashes();
  for (const f of Object.keys(hashes)) out[f] = hashes[f]!;
  return out;
}

// C0 controls and DEL. The digest in plinth.lock.json is `<path>\t<hash>\n` per file: a name holding a tab or a
// newline could make two different file lists digest alike.
function hasControlCharacter(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/**
 * A key under which two paths that a case-insensitive, normalizing file system would take for one are equal:
 * Unicode normalization (APFS), case (upper then lower, so `ß` and `SS` meet), and trailing dots and spaces of
 * each name (which Windows drops). Over-inclusive on purpose: a package needing both names is refused.
 */
function folded(rel: string): string {
  return rel
    .normalize('NFC')
    .toUpperCase()
    .toLowerCase()
    .split('/')
    .map((name) => name.replace(/[. ]+$/, ''))
    .join('/');
}

function who(extension: string | undefined): string {
  return extension ? `extension ${extension}: ` : '';
}

/** Host bounds on a package (host config `packages`); omitted: unbounded (`plinth sign`, `plinth verify`). */
export interface PackageLimits {
  /** Files and folders. */
  maxFiles: number;
  maxBytes: number;
}

function tooLarge(what: string, key: string, reportDir: string, extension: string | undefined): PlinthError {
  return new PlinthError('PLINTH_ERR_PACKAGE_TOO_LARGE', `${who(extension)}the package at ${reportDir} has ${what} (${key})`, {
    ...(extension ? { extension } : {}),
    file: reportDir,
    hint: `slim the package (bundle it, leave test data out), or raise ${key} in the host config`,
  });
}

function refuse(code: 'PLINTH_ERR_SIG_SYMLINK' | 'PLINTH_ERR_PACKAGE_SPECIAL_FILE' | 'PLINTH_ERR_PACKAGE_UNREADABLE' | 'PLINTH_ERR_PACKAGE_EMPTY_FOLDER' | 'PLINTH_ERR_PACKAGE_FILE_NAME_INVALID' | 'PLINTH_ERR_PACKAGE_NAME_CONFLICT' | 'PLINTH_ERR_PACKAGE_CHANGED', message: string, file: string, extension: string | undefined, hint: string): PlinthError {
  return new PlinthError(code, `${who(extension)}${message}`, { ...(extension ? { extension } : {}), file, hint });
}

/** PACKAGE_UNREADABLE: the OS refused to read a file or folder of the package (permissions, an I/O error). */
export function unreadable(rel: string, shown: string, extension: string | undefined, err: unknown): PlinthError {
  const e = err as NodeJS.ErrnoException;
  return new PlinthError('PLINTH_ERR_PACKAGE_UNREADABLE', `${who(extension)}cannot read ${rel === '' ? 'the package folder' : rel}: ${e.code ?? 'error'} ${e.message}`, {
    ...(extension ? { extension } : {}),
    file: shown,
    cause: err,
    hint: 'make the package readable by the user the host runs as (check permissions and the disk), then retry',
  });
}

export interface PackageTree {
  /** The folder walked, with every link in its own path resolved (files are checked to be inside it). */
  root: string;
  /** Every file, plinth.sig included, sorted in code-unit order. */
  files: string[];
  /** Every folder below the root, parents before children. */
  folders: string[];
  /** Folders with nothing in them (refused by refuseEmptyFolders once the file list has been compared). */
  emptyFolders: string[];
}

/** Throws PLINTH_ERR_PACKAGE_EMPTY_FOLDER for the first of `emptyFolders`. */
export function refuseEmptyFolders(emptyFolders: readonly string[], extension: string | undefined, reportDir: string): void {
  const first = emptyFolders[0];
  if (first === undefined) return;
  const more = emptyFolders.length > 1 ? ` (and ${emptyFolders.length - 1} more)` : '';
  throw refuse('PLINTH_ERR_PACKAGE_EMPTY_FOLDER', `${first}/ is an empty folder${more}`, path.join(reportDir, ...first.split('/')), extension, 'remove the empty folder (a package holds files; plinth.sig lists files only), then sign again');
}

/**
 * Walks the package in `dir` and applies the rules above. `reportDir` is the folder messages name (the plugin
 * folder the user knows, when `dir` is a copy of it).
 */
export async function walkPackage(dir: string, extension?: string, reportDir = dir, limits?: PackageLimits): Promise<PackageTree> {
  const root = await realpath(dir);
  const files: string[] = [];
  const folders: string[] = [];
  const emptyFolders: string[] = [];
  const seen = new Map<string, string>();
  const shown = (rel: string) => path.join(reportDir, ...rel.split('/'));
  const walk = async (rel: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(rel === '' ? root : path.join(root, ...rel.split('/')), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (rel === '' || code === 'ENOENT' || code === 'ENOTDIR') throw err; // the folder itself, or a swap: reported by the caller
      throw unreadable(rel, shown(rel), extension, err);
    }
    if (rel !== '' && entries.length === 0) emptyFolders.push(rel);
    for (const e of entries) {
      // The author's working folder at the root (`plinth dev` recordings and data) is never part of the package:
      // not signed, not hashed, not copied into a snapshot, so nothing in it can run.
      if (rel === '' && e.name === LOCAL_FOLDER) continue;
      if (limits && files.length + folders.length >= limits.maxFiles) throw tooLarge(`more than ${limits.maxFiles} files and folders`, 'packages.maxFiles', reportDir, extension);
      const relPath = rel === '' ? e.name : `${rel}/${e.name}`;
      if (hasControlCharacter(e.name)) {
        throw refuse('PLINTH_ERR_PACKAGE_FILE_NAME_INVALID', `${JSON.stringify(relPath)} has a control character in its name`, shown(relPath), extension, 'rename it without tabs, newlines or other control characters, then sign again');
      }
      const key = folded(relPath);
      const other = seen.get(key);
      if (other !== undefined) {
        throw refuse('PLINTH_ERR_PACKAGE_NAME_CONFLICT', `${JSON.stringify(relPath)} and ${JSON.stringify(other)} differ only in case or Unicode normalization`, shown(relPath), extension, 'keep one of them: on a case-insensitive file system they are the same file');
      }
      seen.set(key, relPath);
      if (e.isSymbolicLink()) {
        throw refuse('PLINTH_ERR_SIG_SYMLINK', `${relPath} is a symbolic link`, shown(relPath), extension, 'replace the link with a copy of the file it points to, then sign again');
      }
      if (e.isDirectory()) {
        folders.push(relPath);
        await walk(relPath);
      } else if (e.isFile()) files.push(relPath);
      else throw refuse('PLINTH_ERR_PACKAGE_SPECIAL_FILE', `${relPath} is not a regular file (a FIFO, socket or device)`, shown(relPath), extension, 'a package may hold only regular files and folders: remove it, then sign again');
    }
  };
  await walk('');
  files.sort();
  return { root, files, folders, emptyFolders };
}

/** Opens `rel` of the walked package for reading, refusing anything but that very regular file. */
async function openPackageFile(tree: PackageTree, rel: string, extension: string | undefined, reportDir: string): Promise<FileHandle> {
  const file = path.join(tree.root, ...rel.split('/'));
  const shown = path.join(reportDir, ...rel.split('/'));
  const changed = (what: string) => refuse('PLINTH_ERR_PACKAGE_CHANGED', `${rel} ${what} while the package was being read`, shown, extension, 'wait until the package is completely written (copy it elsewhere, then rename it into the plugin directory)');
  let fh: FileHandle;
  try {
    // O_NOFOLLOW: a file swapped for a link after the walk is refused, not followed. O_NONBLOCK: a FIFO swapped
    // in cannot hang the open; fstat then refuses it.
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw refuse('PLINTH_ERR_SIG_SYMLINK', `${rel} is a symbolic link`, shown, extension, 'replace the link with a copy of the file it points to, then sign again');
    if (code === 'ENOENT' || code === 'ENOTDIR') throw changed('disappeared');
    throw unreadable(rel, shown, extension, err);
  }
  try {
    if (!(await fh.stat()).isFile()) throw refuse('PLINTH_ERR_PACKAGE_SPECIAL_FILE', `${rel} is not a regular file (a FIFO, socket or device)`, shown, extension, 'a package may hold only regular files and folders: remove it, then sign again');
    // A folder on the way swapped for a link would make `file` name something outside the package. On Linux the
    // descriptor says exactly which file it is.
    if (process.platform === 'linux') {
      let actual: string | undefined;
      try {
        actual = await readlink(`/proc/self/fd/${fh.fd}`);
      } catch {
        actual = undefined; // no /proc mounted: the walk's checks stand
      }
      if (actual !== undefined && actual !== file) throw changed('was moved or replaced');
    }
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

const CHUNK = 64 * 1024;

/** Bytes a package may still have, shared by the files read in parallel; checked as each chunk is read. */
interface ByteBudget {
  left: number;
  limit: number;
  fail: () => PlinthError;
}

function byteBudget(limits: PackageLimits | undefined, reportDir: string, extension: string | undefined): ByteBudget | undefined {
  if (!limits) return undefined;
  const mb = Math.round(limits.maxBytes / (1024 * 1024));
  return { left: limits.maxBytes, limit: limits.maxBytes, fail: () => tooLarge(`more than ${mb} MiB of files`, 'packages.maxMb', reportDir, extension) };
}

/** Reads the whole file from its descriptor, hashing it and handing each chunk to `sink` (the copy). */
async function hashHandle(fh: FileHandle, sink?: (chunk: Uint8Array) => Promise<void>, budget?: ByteBudget): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    const { bytesRead } = await fh.read(buffer, 0, CHUNK, null);
    if (bytesRead === 0) break;
    if (budget && (budget.left -= bytesRead) < 0) throw budget.fail();
    const chunk = buffer.subarray(0, bytesRead);
    hash.update(chunk);
    if (sink) await sink(chunk);
  }
  return hash.digest('hex');
}

/** Runs `task` for each item, a few at a time. */
async function eachLimited<T>(items: T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      await task(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The file list a signature covers: every file but plinth.sig, sorted. */
export async function listPackageFiles(dir: string, extension?: string): Promise<string[]> {
  return (await walkPackage(dir, extension)).files.filter((f) => f !== SIGNATURE_FILE);
}

export function hashFile(file: string): Promise<string> {
  return open(file, constants.O_RDONLY | constants.O_NOFOLLOW).then(async (fh) => {
    try {
      return await hashHandle(fh);
    } finally {
      await fh.close();
    }
  });
}

/** The package's file hashes (plinth.sig apart) and empty folders, read in place. `reportDir`: the folder messages name. */
export async function hashPackage(dir: string, extension?: string, reportDir = dir, limits?: PackageLimits): Promise<PackageHashes> {
  const tree = await walkPackage(dir, extension, reportDir, limits);
  const budget = byteBudget(limits, reportDir, extension);
  const hashes: string[] = new Array<string>(tree.files.length);
  await eachLimited(tree.files, 8, async (rel, i) => {
    const fh = await openPackageFile(tree, rel, extension, reportDir);
    try {
      hashes[i] = await hashHandle(fh, undefined, budget);
    } finally {
      await fh.close();
    }
  });
  return collect(tree, hashes);
}

function collect(tree: PackageTree, hashes: string[]): PackageHashes {
  const files = emptyFileHashes();
  let signature: string | undefined;
  tree.files.forEach((f, i) => {
    if (f === SIGNATURE_FILE) signature = hashes[i]!;
    else files[f] = hashes[i]!;
  });
  return { files, signature, emptyFolders: tree.emptyFolders };
}

/** SHA-256 of every file of the package but plinth.sig, read in place (what `plinth sign` signs); refuses empty folders. */
export async function hashPackageFiles(dir: string, extension?: string): Promise<FileHashes> {
  const { files, emptyFolders } = await hashPackage(dir, extension);
  refuseEmptyFolders(emptyFolders, extension, dir);
  return files;
}

export interface PackageHashes {
  /** Every file but plinth.sig → SHA-256 of its bytes (as read, or as copied): what the signature must cover. */
  files: FileHashes;
  /** SHA-256 of plinth.sig, if the package has one. */
  signature: string | undefined;
  /** Empty folders of the package (copied as they are; see refuseEmptyFolders). */
  emptyFolders: string[];
}

/**
 * Copies the package in `dir` into the empty folder `dest`, hashing each file's bytes as they are copied, from
 * the descriptor they are read from: the copy holds exactly the bytes hashed. Files are created read-only.
 * `reportDir` is the folder messages name.
 */
export async function copyPackage(dir: string, dest: string, extension?: string, reportDir = dir, limits?: PackageLimits): Promise<PackageHashes> {
  const tree = await walkPackage(dir, extension, reportDir, limits);
  const budget = byteBudget(limits, reportDir, extension);
  for (const folder of tree.folders) await mkdir(path.join(dest, ...folder.split('/')));
  const hashes: string[] = new Array<string>(tree.files.length);
  await eachLimited(tree.files, 8, async (rel, i) => {
    const source = await openPackageFile(tree, rel, extension, reportDir);
    try {
      // 'wx': the copy is a new file (never through a link); mode 0444: read-only from the start.
      const target = await open(path.join(dest, ...rel.split('/')), 'wx', 0o444);
      try {
        hashes[i] = await hashHandle(source, async (chunk) => {
          let written = 0;
          while (written < chunk.length) written += (await target.write(chunk, written, chunk.length - written)).bytesWritten;
        }, budget);
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
  });
  return collect(tree, hashes);
}
