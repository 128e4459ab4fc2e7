// Helpers for benchmarks that drive a child process (a `plinth serve`, a remote runner).
import type { ChildProcess } from 'node:child_process';

/** Resolves with the first match of `re` in what the child has written to `stream`; rejects if it exits first. */
export function waitLine(child: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    child[stream]!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = re.exec(text);
      if (m) resolve(m[0]);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${text}`)));
  });
}
