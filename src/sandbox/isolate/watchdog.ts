// The host's memory wall around a sandbox process (DESIGN.md §4): isolated-vm's memoryLimit is not a hard limit
// (resizable ArrayBuffers and WebAssembly.Memory grow outside it), so the host reads the process's RSS every
// interval and has it killed past a limit. The RSS comes from /proc/<pid>/status; where procfs is missing the
// process is asked over its link (process.memoryUsage.rss()), with a warning, since a process that stops
// answering cannot report (the call walls kill such a process instead).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const warnedNoProcfs = new Set<string>();
/** Said once per procfs location, at the first sandbox process: the watchdog works, but by asking the process. */
function warnNoProcfs(procRoot: string): void {
  if (warnedNoProcfs.has(procRoot)) return;
  warnedNoProcfs.add(procRoot);
  process.emitWarning(`no procfs at ${procRoot}: the isolate sandbox process's memory (RSS) is read from the process itself over its link, which a process that stops answering cannot report`, { code: 'PLINTH_NO_PROCFS' });
}

export interface MemoryWatchdogOptions {
  procRoot: string;
  intervalMs: number;
  /** pid of the watched process (undefined until forked, or once gone). */
  pid: () => number | undefined;
  /** The process's own report of its RSS over the link (used only without procfs); rejects if it cannot answer. */
  askRss: () => Promise<number>;
  /** Whether the process can be asked yet (it has said it is ready). */
  canAsk: () => boolean;
  /** Current limit in MB (it depends on the isolates the process hosts). */
  limitMb: () => number;
  /** Called once the RSS is past the limit (the owner kills the process). */
  onOver: (rssBytes: number, limitMb: number) => void;
}

export class MemoryWatchdog {
  readonly #options: MemoryWatchdogOptions;
  /** Whether the RSS is read from procfs (else asked of the process over the link). */
  readonly procfs: boolean;
  #timer: NodeJS.Timeout | undefined;
  #asking = false;
  lastRssBytes = 0;

  constructor(options: MemoryWatchdogOptions) {
    this.#options = options;
    this.procfs = existsSync(path.join(options.procRoot, 'self', 'status'));
    if (!this.procfs) warnNoProcfs(options.procRoot);
    this.#timer = setInterval(() => this.check(), options.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One reading (the interval calls it; exposed so a test can drive it). */
  check(): void {
    if (this.#timer === undefined) return;
    const pid = this.#options.pid();
    if (pid === undefined) return;
    if (!this.procfs) return this.#checkOverLink();
    let text: string;
    try {
      text = readFileSync(path.join(this.#options.procRoot, String(pid), 'status'), 'utf8');
    } catch {
      return; // the process is gone: its exit handler takes over
    }
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(text);
    if (m) this.#judge(Number(m[1]) * 1024);
  }

  #checkOverLink(): void {
    if (this.#asking || !this.#options.canAsk()) return;
    this.#asking = true;
    this.#options
      .askRss()
      .then(
        (rss) => this.#judge(rss),
        () => undefined,
      )
      .finally(() => {
        this.#asking = false;
      });
  }

  #judge(rssBytes: number): void {
    if (this.#timer === undefined) return;
    this.lastRssBytes = rssBytes;
    const limit = this.#options.limitMb();
    if (rssBytes > limit * 1024 * 1024) this.#options.onOver(rssBytes, limit);
  }
}
