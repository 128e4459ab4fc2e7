// What the watched files of an extension folder contain, so a save is told apart from a write of the same bytes —
// above all the session's own build writing outputs that did not change (a build never triggers itself). A file is
// hashed again only when its size or mtime moved.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

interface Entry {
  size: number;
  mtimeMs: number;
  hash: string;
}

export type Fingerprint = Map<string, Entry>;

/** The same rule as the session's watcher: dot-entries and node_modules anywhere are not watched. */
export function unwatched(name: string): boolean {
  return name.startsWith('.') || name === 'node_modules';
}

/** Every watched file of `dir` (at most `maxFiles` entries looked at), reusing `previous` for untouched files. */
export async function fingerprint(dir: string, maxFiles: number, previous?: Fingerprint): Promise<Fingerprint> {
  const out: Fingerprint = new Map();
  let seen = 0;
  const walk = async (rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return; // removed meanwhile: the watcher reports it
    }
    for (const e of entries) {
      if (unwatched(e.name) || ++seen > maxFiles) continue;
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) {
        try {
          const s = await stat(path.join(dir, r));
          const old = previous?.get(r);
          if (old && old.size === s.size && old.mtimeMs === s.mtimeMs) out.set(r, old);
          else out.set(r, { size: s.size, mtimeMs: s.mtimeMs, hash: createHash('sha1').update(await readFile(path.join(dir, r))).digest('hex') });
        } catch {
          // removed meanwhile
        }
      }
    }
  };
  await walk('');
  return out;
}

/** Whether two fingerprints name the same files with the same contents. */
export function sameContents(a: Fingerprint, b: Fingerprint): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k)?.hash !== v.hash) return false;
  return true;
}
