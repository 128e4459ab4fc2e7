// Where an extension's data lives in the host's data directory, and which publisher it belongs to
// (DESIGN.md §3 "An id belongs to a publisher"; issue 7 §2).
//
// Storage name: one folder name per id, collision-free and reversible. Bytes in [a-z0-9-] are kept; every other
// byte (`@`, `/`, `.`, `_`, `~`, upper case, anything) is percent-encoded with lower-case hex, as npm writes
// `@scope%2fname`: `@acme/vault` → `%40acme%2fvault`, `acme.vault` → `acme%2evault`. The encoding is prefix-free,
// so two distinct ids never share a name; the output is only [a-z0-9%-], so it means the same on a
// case-insensitive file system, has no dot (never `.`/`..`, no trailing dot that Windows would strip, never
// `<name>.publisher.json` of another id) and no `~` (no 8.3 short-name look-alikes); a name that would be a
// Windows device name (`con`, `nul`, `com1` …) has its first byte escaped. A name longer than NAME_LIMIT (only
// ids made mostly of escaped characters get there) is `%h` + the SHA-256 of the id: still one per id, and the
// binding file beside it records the id.
// Upgrade: the old transform (topicWord) wrote only [A-Za-z0-9_-]. A new name never holds `_`, so a folder the
// old transform shared between ids is never picked up; an id made only of [a-z0-9-] keeps its folder.
//
// Binding: `<dataDir>/extensions/<name>.publisher.json` records the publisher that created the data. It sits
// beside the extension's folder, not inside it, so an extension's own fs grants never reach it.
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';

/** The binding of copies that carry no verified publisher (trust policy `warn` let them through unverified). */
export const UNSIGNED_PUBLISHER = 'unsigned';

/** Folder names stay well inside NAME_MAX (255 bytes) with `.publisher.json` appended. */
const NAME_LIMIT = 200;
const KEPT = /^[a-z0-9-]$/;
const DEVICE_NAMES = /^(?:con|prn|aux|nul|com[0-9]|lpt[0-9])$/;

function escapeByte(byte: number): string {
  return `%${byte.toString(16).padStart(2, '0')}`;
}

/** The folder name of `id` under `<dataDir>/extensions/`: one per id, never shared (see the top of this file). */
export function extensionStorageName(id: string): string {
  if (typeof id !== 'string' || id === '') throw new TypeError('an extension id is a non-empty string');
  let name = '';
  for (const byte of Buffer.from(id, 'utf8')) {
    const ch = String.fromCharCode(byte);
    name += byte < 0x80 && KEPT.test(ch) ? ch : escapeByte(byte);
  }
  if (DEVICE_NAMES.test(name)) name = escapeByte(name.charCodeAt(0)) + name.slice(1);
  if (name.length > NAME_LIMIT) name = `%h${createHash('sha256').update(id, 'utf8').digest('hex')}`;
  return name;
}

/** The id a storage name stands for; undefined for a hashed name (its binding file names the id) or a non-name. */
export function extensionIdFromStorageName(name: string): string | undefined {
  if (name.startsWith('%h')) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const ch = name[i]!;
    if (ch === '%') {
      const hex = name.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (KEPT.test(ch)) bytes.push(ch.charCodeAt(0));
    else return undefined;
  }
  const id = Buffer.from(bytes).toString('utf8');
  // Only the canonical spelling of an id is its name (no `_61` for `a`).
  return id !== '' && extensionStorageName(id) === name ? id : undefined;
}

/** The extension's own data folder: the root of its `permissions.fs` paths. */
export function extensionDataDir(dataDir: string, id: string): string {
  return path.join(dataDir, 'extensions', extensionStorageName(id));
}

/** The file recording which publisher the data of `id` belongs to (beside its folder, out of its reach). */
export function publisherBindingFile(dataDir: string, id: string): string {
  return path.join(dataDir, 'extensions', `${extensionStorageName(id)}.publisher.json`);
}

export interface PublisherBinding {
  id: string;
  /** A trust-store publisher id, or UNSIGNED_PUBLISHER. */
  publisher: string;
  /** When it was recorded (ISO 8601). */
  since: string;
  /** Set when the operator re-assigned the id (the config key that did it). */
  assignedBy?: string;
  /** The publisher it belonged to before a re-assignment. */
  previous?: string;
}

function invalid(file: string, id: string, why: string, cause?: unknown): PlinthError {
  return new PlinthError('PLINTH_ERR_PUBLISHER_BINDING_INVALID', `extension ${id}: its publisher binding ${file} ${why}; the extension is not started, so its data stays untouched`, {
    extension: id,
    file,
    ...(cause === undefined ? {} : { cause }),
    hint: `restore the file, or delete it to let the next copy of ${id} that starts claim its data (or set extensions.${id}.publisher in the host config)`,
  });
}

/** The recorded binding of `id`, or undefined if its data was never claimed. A damaged file is an error (fail closed). */
export async function readPublisherBinding(dataDir: string, id: string): Promise<PublisherBinding | undefined> {
  const file = publisherBindingFile(dataDir, id);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalid(file, id, `cannot be read (${(err as Error).message})`, err);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(file, id, 'is not valid JSON', err);
  }
  const d = doc as Partial<Record<keyof PublisherBinding, unknown>> | null;
  if (typeof d !== 'object' || d === null || typeof d.publisher !== 'string' || d.publisher === '' || typeof d.id !== 'string') {
    throw invalid(file, id, 'does not hold { "id", "publisher" }');
  }
  if (d.id !== id) throw invalid(file, id, `names another extension (${JSON.stringify(d.id)})`);
  return {
    id,
    publisher: d.publisher,
    since: typeof d.since === 'string' ? d.since : '',
    ...(typeof d.assignedBy === 'string' ? { assignedBy: d.assignedBy } : {}),
    ...(typeof d.previous === 'string' ? { previous: d.previous } : {}),
  };
}

/**
 * Records `binding` atomically: written to a temporary file, then linked into place when `replace` is false (so
 * an existing binding is never overwritten: EEXIST means someone claimed it first) or renamed over it when the
 * operator re-assigns. Returns false if `replace` is false and a binding already exists.
 */
export async function writePublisherBinding(dataDir: string, binding: PublisherBinding, options: { replace: boolean }): Promise<boolean> {
  const file = publisherBindingFile(dataDir, binding.id);
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(binding, null, 2) + '\n', { flag: 'wx', mode: 0o644 });
  try {
    if (options.replace) {
      await rename(tmp, file);
      return true;
    }
    try {
      await link(tmp, file);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    }
    // A file system without hard links: exclusive create still never overwrites (the content is small).
    try {
      await writeFile(file, JSON.stringify(binding, null, 2) + '\n', { flag: 'wx', mode: 0o644 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
