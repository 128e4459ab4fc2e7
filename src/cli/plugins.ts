// The plugin directories a command was given, checked before anything is scanned: a directory that does not
// exist is a usage error (exit 2), and so is an extension folder given where a plugin directory belongs — the
// usual slip of `--plugins plugins/csv-ingest` for `--plugins plugins`.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import { isExtensionPackage, readPackageJson } from '../manifest/index.ts';
import { usageError } from './output.ts';

export async function checkPluginDirs(dirs: string[]): Promise<void> {
  if (dirs.length === 0) {
    throw usageError('no plugin directories given', 'pass --plugins <dir>[,<dir>…], set PLINTH_PLUGINS, or list them under `plugins` in plinth.config.yaml');
  }
  for (const dir of dirs) {
    let isDir: boolean;
    try {
      isDir = (await stat(dir)).isDirectory();
    } catch {
      throw new PlinthError('PLINTH_ERR_PLUGIN_DIR_MISSING', `plugin directory ${dir} does not exist`, { file: dir, hint: 'create it, or fix --plugins / PLINTH_PLUGINS / the `plugins` setting' });
    }
    if (!isDir) throw usageError(`plugin directory ${dir} is not a directory`, 'pass the folder that holds extension folders');
    let pkg: unknown;
    try {
      pkg = await readPackageJson(dir);
    } catch {
      pkg = undefined; // an unreadable package.json here is not ours to judge: the folder is scanned as given
    }
    if (isExtensionPackage(pkg)) {
      const name = (pkg as { name?: unknown }).name;
      throw usageError(
        `${dir} is itself an extension${typeof name === 'string' ? ` (${name})` : ''}, not a plugin directory`,
        `a plugin directory holds extension folders: pass its parent, --plugins ${path.dirname(dir)}`,
      );
    }
  }
}
