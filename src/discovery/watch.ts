// Watches plugin directories (chokidar) and reports "something changed" once the writes have settled: a file's
// size must hold still (awaitWriteFinish) and then no event may arrive for `debounceMs`. Copying a folder in,
// editing a file or re-signing all end in one callback, not one per file.
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
  const watcher: FSWatcher = watch(dirs, {
    ignoreInitial: true,
    // Dot-files (editor swap files, .git) and dependencies installed inside an extension do not trigger reloads.
    ignored: [/(^|\/)\.[^/]/, /\/node_modules\//],
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
