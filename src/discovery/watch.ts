// Watches plugin directories (chokidar) and reports "something changed" once the writes have settled: a file's
// size must hold still (awaitWriteFinish) and then no event may arrive for `debounceMs`. Copying a folder in,
// editing a file or re-signing all end in one callback, not one per file.
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';

export interface PluginWatcher {
  close(): Promise<void>;
  /** Resolves when the initial scan of the watched folders is done (events before it are not reported). */
  ready: Promise<void>;
}

export interface WatchOptions {
  debounceMs?: number;
  /** How long a written file's size must stay the same before it counts as written. */
  stabilityMs?: number;
  onError?: (err: unknown) => void;
}

export function watchPluginDirs(dirs: string[], onChange: (paths: string[]) => void, options: WatchOptions = {}): PluginWatcher {
  const debounceMs = options.debounceMs ?? 100;
  const stabilityMs = options.stabilityMs ?? 50;
  const roots = dirs.map((d) => path.resolve(d));
  const watcher: FSWatcher = watch(dirs, {
    ignoreInitial: true,
    // Dot-files (editor swap files, .git) and dependencies installed inside an extension do not trigger reloads.
    // Matched against the path inside the plugin directory: a plugin directory that itself lies under a dot-folder
    // (~/.plinth/plugins) must still be watched (issue 8).
    ignored: (file: string) => isIgnored(roots, file),
    awaitWriteFinish: { stabilityThreshold: stabilityMs, pollInterval: Math.max(10, Math.round(stabilityMs / 2)) },
    atomic: 50,
  });
  let timer: NodeJS.Timeout | undefined;
  let changed = new Set<string>();
  const fire = () => {
    timer = undefined;
    const paths = [...changed];
    changed = new Set();
    onChange(paths);
  };
  watcher.on('all', (_event, path) => {
    changed.add(path);
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
  });
  watcher.on('error', (err) => options.onError?.(err));
  const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return {
    ready,
    close: async () => {
      if (timer) clearTimeout(timer);
      await watcher.close();
    },
  };
}

/** Whether `file` (absolute, or relative to the working directory) is a dot-entry or under node_modules inside one of `roots`. */
export function isIgnored(roots: string[], file: string): boolean {
  const abs = path.resolve(file);
  for (const root of roots) {
    const rel = path.relative(root, abs);
    if (rel === '') return false;
    if (rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) continue;
    return rel.split(path.sep).some((part) => part.startsWith('.') || part === 'node_modules');
  }
  return false;
}
