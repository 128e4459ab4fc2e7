// The log stream of `plinth dev`: the host's pino records as readable lines, coloured by level (the extension's own
// console lines stand out; the host's lifecycle lines are dim), and problems as `file:line:column` with a code
// frame. Colour only on a terminal, never with NO_COLOR set (any value) or TERM=dumb; FORCE_COLOR=1 forces it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { styleText } from 'node:util';
import { formatRecord } from '../cli/log.ts';
import { codeFrame, where, type DevProblem } from './frame.ts';

type Style = Parameters<typeof styleText>[0];

/** Whether to colour what goes to `stream`. */
export function useColor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

export class DevPrinter {
  readonly #color: boolean;

  constructor(color: boolean) {
    this.#color = color;
  }

  paint(style: Style, text: string): string {
    return this.#color ? styleText(style, text, { validateStream: false }) : text;
  }

  /** One pino JSON line as a readable, level-tagged line. */
  record(line: string): string {
    const text = formatRecord(line);
    let rec: { level?: number; from?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      return text;
    }
    const level = rec.level ?? 30;
    const style: Style = level >= 50 ? 'red' : level >= 40 ? 'yellow' : level <= 20 ? 'gray' : rec.from === 'extension' ? 'reset' : 'dim';
    const [first = '', ...rest] = text.split('\n');
    // The level word (the second column) carries the level's colour; an extension's own line keeps plain text.
    const m = /^(\S+) (\S+)(.*)$/.exec(first);
    const head = m ? `${this.paint('gray', m[1]!)} ${this.paint(level >= 50 ? ['bold', 'red'] : level >= 40 ? ['bold', 'yellow'] : level <= 20 ? 'gray' : 'cyan', m[2]!)}${this.paint(style, m[3]!)}` : first;
    return [head, ...rest.map((l) => this.paint(style, l))].join('\n');
  }

  /** Problems, each as `file:line:column  CODE  message`, its code frame and hint. */
  problems(problems: DevProblem[], base: string): string {
    const out: string[] = [];
    for (const p of problems) {
      const at = where(p, base, (from, to) => path.relative(from, to));
      out.push(`${at ? `${this.paint('bold', at)}  ` : ''}${this.paint('red', p.code)}  ${p.message}`);
      if (p.file && p.line !== undefined) {
        let source: string | undefined;
        try {
          source = readFileSync(p.file, 'utf8');
        } catch {
          source = undefined;
        }
        const frame = source === undefined ? '' : codeFrame(source, p.line, p.column);
        if (frame) out.push(...frame.split('\n').map((l) => `    ${l.includes('^') && !/^\s*>?\s*\d/.test(l) ? this.paint('red', l) : l}`));
      }
      if (p.hint) out.push(`    ${this.paint('dim', `hint: ${p.hint}`)}`);
    }
    return out.join('\n');
  }
}
