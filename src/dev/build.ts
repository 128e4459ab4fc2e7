// The rebuild step of `plinth dev`: an extension whose package.json has a `build` script (TypeScript compiled to
// the JavaScript an isolate runs, a bundle) is rebuilt with `npm run build` after its sources pass the checks and
// before the host reloads it. What the build writes lands in the watched folder too: the session tells a save from
// its own build output by the files' contents (fingerprints.ts), so a build never triggers itself.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { DevProblem } from './frame.ts';

export interface BuildResult {
  ok: boolean;
  /** The build's output, last lines (at most 64 KiB kept). */
  output: string;
  ms: number;
  problems: DevProblem[];
}

const KEEP = 64 * 1024;

/** The places `tsc`, esbuild and most tools print — `file(line,col): error …`, `file:line:col - error …` — of files that exist. */
export function buildProblems(output: string, dir: string): DevProblem[] {
  const out: DevProblem[] = [];
  for (const line of output.split('\n')) {
    const m = /^\s*(?:✘ \[ERROR\] )?([^\s:(]+\.[A-Za-z0-9]+)(?:\((\d+),(\d+)\)|:(\d+):(\d+))\s*[:-]?\s*(?:error\s+)?(TS\d+)?:?\s*(.*)$/.exec(line);
    if (!m) continue;
    const file = path.resolve(dir, m[1]!);
    if (!existsSync(file)) continue; // not a place in the extension's files
    out.push({ code: m[6] ?? 'PLINTH_ERR_DEV_BUILD_FAILED', message: `build: ${m[7]!.trim() || line.trim()}`, file, line: Number(m[2] ?? m[4]), column: Number(m[3] ?? m[5]) });
    if (out.length >= 50) break;
  }
  return out;
}

/** Runs `npm run build` in `dir`, bounded by `timeoutMs` (the process group is killed then). */
export function runBuild(dir: string, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<BuildResult> {
  const t = performance.now();
  return new Promise((resolve) => {
    let output = '';
    const keep = (d: Buffer) => {
      output += d.toString();
      if (output.length > KEEP) output = output.slice(-KEEP);
    };
    // Plinth's own Node first on PATH, so the script runs on the Node that runs Plinth (24), not an older system one.
    const PATH = `${path.dirname(process.execPath)}${path.delimiter}${env.PATH ?? ''}`;
    const child = spawn('npm', ['run', 'build', '--silent'], { cwd: dir, env: { ...env, PATH, FORCE_COLOR: '0', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
    }, timeoutMs);
    const done = (code: number | null, error?: Error) => {
      clearTimeout(timer);
      const ms = performance.now() - t;
      if (code === 0 && !error) return resolve({ ok: true, output, ms, problems: [] });
      const why = error ? `could not run npm: ${error.message}` : timedOut ? `did not finish within ${timeoutMs} ms` : `exited with ${code}`;
      const located = buildProblems(output, dir);
      const tail = output.trim().split('\n').slice(-12).join('\n');
      resolve({
        ok: false,
        output,
        ms,
        problems: [
          ...located,
          { code: 'PLINTH_ERR_DEV_BUILD_FAILED', message: `npm run build ${why}${tail ? `:\n${tail}` : ''}`, file: path.join(dir, 'package.json'), hint: 'fix the build (the last version that built keeps serving)' },
        ],
      });
    };
    child.once('error', (err) => done(null, err));
    child.once('close', (code) => done(code));
  });
}
