// A pipeline file as text → a plain JSON value plus where every JSON Pointer sits in the text (line and column,
// 1-based), so every issue can name the line. YAML goes through `yaml` (its LineCounter turns node offsets into
// lines); a file that starts with `{` is JSON and goes through momoa, a JSON parser that keeps locations and is
// many times faster on large generated pipelines (10 000 stages: the YAML parser takes seconds). Duplicate keys are errors (YAML 1.2 says keys are unique), and
// aliases are bounded by the library's maxAliasCount (no "billion laughs").
import { parse as parseJsonAst, type ValueNode } from '@humanwhocodes/momoa';
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
  const s = String(segment);
  // Most segments (indices, plain keys) have nothing to escape: no regex pass over them.
  if (!s.includes('~') && !s.includes('/')) return s;
  return s.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function joinPointer(base: string, ...segments: Array<string | number>): string {
  return base + segments.map((s) => `/${escapePointer(s)}`).join('');
}

function locator(positions: Map<string, { line: number; column: number }>): ParsedSource['locate'] {
  return (pointer) => {
    let p = pointer;
    for (;;) {
      const at = positions.get(p);
      if (at) return { path: pointer, line: at.line, column: at.column };
      if (p === '') return { path: pointer };
      p = p.slice(0, p.lastIndexOf('/'));
    }
  };
}

function parseJson(text: string): ParsedSource {
  const positions = new Map<string, { line: number; column: number }>();
  let body: ValueNode;
  try {
    body = parseJsonAst(text, { mode: 'json' }).body;
  } catch (err) {
    const e = err as { message: string; line?: number; column?: number };
    return { value: undefined, errors: [{ message: e.message.replace(/ \(\d+:\d+\)$/, ''), ...(e.line ? { line: e.line, column: e.column ?? 1 } : {}) }], locate: locator(positions) };
  }
  const errors: ParsedSource['errors'] = [];
  positions.set('', { line: body.loc.start.line, column: body.loc.start.column });
  const stack: Array<{ node: ValueNode; pointer: string }> = [{ node: body, pointer: '' }];
  while (stack.length > 0) {
    const { node, pointer } = stack.pop()!;
    if (node.type === 'Object') {
      const names = new Set<string>();
      for (const m of node.members) {
        const name = String(m.name.type === 'String' ? m.name.value : m.name.name);
        const child = joinPointer(pointer, name);
        // Like the YAML side: a key given twice is an error, not "the last one wins".
        if (names.has(name)) errors.push({ message: `Map keys must be unique: "${name}" at ${pointer || '/'}`, line: m.name.loc.start.line, column: m.name.loc.start.column });
        names.add(name);
        positions.set(child, { line: m.name.loc.start.line, column: m.name.loc.start.column });
        stack.push({ node: m.value, pointer: child });
      }
    } else if (node.type === 'Array') {
      node.elements.forEach((e, i) => {
        const child = joinPointer(pointer, i);
        positions.set(child, { line: e.value.loc.start.line, column: e.value.loc.start.column });
        stack.push({ node: e.value, pointer: child });
      });
    }
  }
  return { value: errors.length > 0 ? undefined : (JSON.parse(text) as unknown), errors, locate: locator(positions) };
}

export function parseSource(text: string): ParsedSource {
  if (/^\s*\{/.test(text)) return parseJson(text);
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
