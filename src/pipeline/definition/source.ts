// A pipeline file as text → a plain JSON value plus where every JSON Pointer sits in the text (line and column,
// 1-based), so every issue can name the line. YAML 1.2 is a superset of JSON, so one parser (`yaml`) reads both;
// its LineCounter turns node offsets into lines. Duplicate keys are errors (YAML 1.2 says keys are unique), and
// aliases are bounded by the library's maxAliasCount (no "billion laughs").
import { LineCounter, isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import type { SourceLocation } from '../types.ts';

export interface ParsedSource {
  value: unknown;
  /** Syntax errors, each with its line. */
  errors: Array<{ message: string; line?: number; column?: number }>;
  /** The location of a JSON Pointer: its own node when it exists, else the nearest existing parent. */
  locate(pointer: string): SourceLocation;
}

export function escapePointer(segment: string | number): string {
  return String(segment).replace(/~/g, '~0').replace(/\//g, '~1');
}

export function joinPointer(base: string, ...segments: Array<string | number>): string {
  return base + segments.map((s) => `/${escapePointer(s)}`).join('');
}

export function parseSource(text: string): ParsedSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true });
  const positions = new Map<string, number>();
  const pos = (offset: number) => lineCounter.linePos(offset);

  // Key positions for map entries (where a person looks for "foo:"), item positions for sequence entries.
  const walk = (node: unknown, pointer: string, depth: number): void => {
    if (depth > 256 || isAlias(node)) return;
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const child = joinPointer(pointer, key);
        const at = (pair.key as Node | null)?.range?.[0] ?? (pair.value as Node | null)?.range?.[0];
        if (at !== undefined) positions.set(child, at);
        walk(pair.value, child, depth + 1);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const child = joinPointer(pointer, i);
        const at = (item as Node | null)?.range?.[0];
        if (at !== undefined) positions.set(child, at);
        walk(item, child, depth + 1);
      });
    }
  };
  const root = doc.contents as Node | null;
  if (root?.range) positions.set('', root.range[0]);
  walk(root, '', 0);

  const errors: ParsedSource['errors'] = doc.errors.map((e) => {
    const p = e.linePos?.[0] ?? (e.pos ? pos(e.pos[0]) : undefined);
    return { message: e.message.split('\n')[0]!, ...(p ? { line: p.line, column: p.col } : {}) };
  });
  let value: unknown = undefined;
  if (errors.length === 0) {
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      errors.push({ message: (err as Error).message.split('\n')[0]! });
    }
  }

  return {
    value,
    errors,
    locate(pointer) {
      let p = pointer;
      for (;;) {
        const at = positions.get(p);
        if (at !== undefined) {
          const { line, col } = pos(at);
          return { path: pointer, line, column: col };
        }
        if (p === '') return { path: pointer };
        p = p.slice(0, p.lastIndexOf('/'));
      }
    },
  };
}
