// Where a problem is in the author's files, and the few lines around it with a caret under the column — what
// `plinth dev` prints for a syntax error, a module that throws on load, a type error or a bad manifest.

/** A problem in one of the extension's files, with its place when known (1-based line and column). */
export interface DevProblem {
  /** The PLINTH_ERR_* code, or the check that found it (`TS2322` for a type error). */
  code: string;
  message: string;
  /** Absolute path of the file concerned. */
  file?: string;
  line?: number;
  column?: number;
  hint?: string;
}

/** Lines longer than this are cut around the column (a minified bundle is one line of megabytes). */
const MAX_LINE = 160;

/**
 * The lines around `line` (1-based) of `source`, numbered, with `>` on the line and a caret under `column`
 * (1-based; missing: no caret). `context` lines either side.
 */
export function codeFrame(source: string, line: number, column?: number, context = 2): string {
  const lines = source.split(/\r\n|\r|\n/);
  if (!(line >= 1 && line <= lines.length)) return '';
  const first = Math.max(1, line - context);
  const last = Math.min(lines.length, line + context);
  const width = String(last).length;
  // One window for every line shown, so the caret stays under its column when a long line is cut.
  const col = column !== undefined && column >= 1 ? column : undefined;
  const start = col !== undefined && col > MAX_LINE - 20 ? col - (MAX_LINE - 40) : 0;
  const cut = (text: string) => {
    const shown = text.slice(start, start + MAX_LINE).replace(/\t/g, ' ');
    return (start > 0 ? '…' : '') + shown + (text.length > start + MAX_LINE ? '…' : '');
  };
  const out: string[] = [];
  for (let n = first; n <= last; n++) {
    const text = lines[n - 1]!;
    out.push(`${n === line ? '>' : ' '} ${String(n).padStart(width)} | ${cut(text)}`.trimEnd());
    if (n === line && col !== undefined) out.push(`  ${' '.repeat(width)} | ${' '.repeat(col - 1 - start + (start > 0 ? 1 : 0))}^`);
  }
  return out.join('\n');
}

/** `file:line:column` (as much as is known), relative to `base` when inside it. */
export function where(problem: Pick<DevProblem, 'file' | 'line' | 'column'>, base?: string, rel?: (from: string, to: string) => string): string {
  if (!problem.file) return '';
  let file = problem.file;
  if (base && rel) {
    const r = rel(base, file);
    if (!r.startsWith('..')) file = r;
  }
  return `${file}${problem.line !== undefined ? `:${problem.line}${problem.column !== undefined ? `:${problem.column}` : ''}` : ''}`;
}
