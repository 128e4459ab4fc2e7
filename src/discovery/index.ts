// Finds extensions in plugin directories: every subfolder (and @scope/name subfolder) whose package.json has a
// `plinth` block. Other folders are ignored silently; anything unreadable is reported, never thrown, so one
// broken extension never stops the others. Discovery only finds: the manifest is validated later, from the
// verified snapshot (src/snapshot), never from this first read of the plugin folder.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import { readPackageJson, isExtensionPackage } from '../manifest/index.ts';

export interface DiscoveredExtension {
  /** The package name as first read (or the folder name): a label until the snapshot's manifest is validated. */
  id: string;
  /** Absolute extension folder and the plugin directory it was found in. */
  dir: string;
  pluginDir: string;
  /** Position in discovery order: lower wins ties between copies of one id. */
  order: number;
}

export interface DiscoveryFailure {
  /** The package name when it could be read, else the folder name (e.g. `@acme/broken`). */
  id: string;
  dir: string;
  pluginDir: string;
  error: PlinthError;
}

export interface DiscoveryResult {
  extensions: DiscoveredExtension[];
  failures: DiscoveryFailure[];
  /** Problems with a plugin directory itself (missing, unreadable). */
  directoryErrors: PlinthError[];
}

function unreadable(dir: string, err: unknown): PlinthError {
  return new PlinthError('PLINTH_ERR_PLUGIN_DIR_UNREADABLE', `cannot read ${dir}: ${(err as Error).message}`, {
    file: dir,
    cause: err,
    hint: 'check that the folder exists and the host user may read it',
  });
}

/** Candidate folders of one plugin directory, as `[folder name relative to it, absolute path]`, sorted. */
async function candidateFolders(pluginDir: string, errors: PlinthError[]): Promise<Array<[string, string]>> {
  const list = async (dir: string, prefix: string): Promise<Array<[string, string]>> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      errors.push(unreadable(dir, err));
      return [];
    }
    const out: Array<[string, string]> = [];
    for (const name of names) {
      if (name.startsWith('.') || name === 'node_modules') continue;
      const full = path.join(dir, name);
      let isDir: boolean;
      try {
        isDir = (await stat(full)).isDirectory(); // follows links: a linked extension folder is fine
      } catch (err) {
        errors.push(unreadable(full, err));
        continue;
      }
      if (!isDir) continue;
      if (prefix === '' && name.startsWith('@')) out.push(...(await list(full, `${name}/`)));
      else out.push([prefix + name, full]);
    }
    return out;
  };
  return list(pluginDir, '');
}

async function inspectFolder(folder: string, dir: string, pluginDir: string): Promise<Omit<DiscoveredExtension, 'order'> | DiscoveryFailure | undefined> {
  let raw: unknown;
  try {
    raw = await readPackageJson(dir);
  } catch (err) {
    return { id: folder, dir, pluginDir, error: err as PlinthError };
  }
  if (raw === undefined || !isExtensionPackage(raw)) return undefined;
  const name = (raw as { name?: unknown }).name;
  const id = typeof name === 'string' && name !== '' ? name : folder;
  return { id, dir, pluginDir };
}

/**
 * Discovers the extensions of `pluginDirs`. Every copy is returned, in discovery order (plugin directories
 * as listed, folders sorted by name within each): when one id is installed more than once, dependency resolution
 * chooses the copy (src/resolve), with this order breaking ties.
 */
export async function discoverExtensions(pluginDirs: string[]): Promise<DiscoveryResult> {
  const result: DiscoveryResult = { extensions: [], failures: [], directoryErrors: [] };
  for (const pluginDir of pluginDirs) {
    try {
      if (!(await stat(pluginDir)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      result.directoryErrors.push(
        code === 'ENOENT'
          ? new PlinthError('PLINTH_ERR_PLUGIN_DIR_MISSING', `plugin directory ${pluginDir} does not exist`, { file: pluginDir, hint: 'create it, or fix --plugins / the `plugins` setting' })
          : unreadable(pluginDir, err),
      );
      continue;
    }
    const folders = await candidateFolders(pluginDir, result.directoryErrors);
    const found = await Promise.all(folders.map(([folder, dir]) => inspectFolder(folder, dir, pluginDir)));
    for (const f of found) {
      if (f === undefined) continue;
      if ('error' in f) result.failures.push(f);
      else result.extensions.push({ ...f, order: result.extensions.length });
    }
  }
  return result;
}
export { watchPluginDirs, type PluginWatcher, type WatchOptions } from './watch.ts';
