// The file list a signature covers: every regular file of the package except plinth.sig, by relative path
// with forward slashes, sorted. Symbolic links and special files are refused: what is signed must be what runs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';

export const SIGNATURE_FILE = 'plinth.sig';

export async function listPackageFiles(dir: string, extension?: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries) {
      const relPath = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isSymbolicLink()) {
        throw new PlinthError('PLINTH_ERR_SIG_SYMLINK', `${extension ? `extension ${extension}: ` : ''}${relPath} is a symbolic link`, {
          ...(extension ? { extension } : {}),
          file: path.join(dir, relPath),
          hint: 'replace the link with a copy of the file it points to, then sign again',
        });
      }
      if (e.isDirectory()) await walk(relPath);
      else if (e.isFile()) {
        if (relPath !== SIGNATURE_FILE) out.push(relPath);
      } else {
        throw new PlinthError('PLINTH_ERR_SIG_SYMLINK', `${extension ? `extension ${extension}: ` : ''}${relPath} is not a regular file`, {
          ...(extension ? { extension } : {}),
          file: path.join(dir, relPath),
          hint: 'a package may hold only regular files and folders',
        });
      }
    }
  };
  await walk('');
  return out.sort();
}

export function hashFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** SHA-256 of every file of the package, a few at a time. */
export async function hashPackageFiles(dir: string, extension?: string): Promise<Record<string, string>> {
  const files = await listPackageFiles(dir, extension);
  const hashes: string[] = new Array<string>(files.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const i = next++;
      hashes[i] = await hashFile(path.join(dir, files[i]!));
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, files.length) }, worker));
  const out: Record<string, string> = {};
  files.forEach((f, i) => (out[f] = hashes[i]!));
  return out;
}
