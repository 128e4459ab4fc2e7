// A structural diff of two JSON values for `plinth replay`: each difference at its JSON Pointer, so an author sees
// which field of an output changed, not two walls of text.
import type { Json } from '../sdk/index.ts';

export interface JsonChange {
  /** JSON Pointer of the value that differs (`` for the whole value). */
  path: string;
  kind: 'changed' | 'added' | 'removed';
  before?: Json;
  after?: Json;
}

const escape = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

/** The differences between `before` and `after`, at most `max` (the rest are counted in `more`). */
export function diffJson(before: Json | undefined, after: Json | undefined, max = 50): { changes: JsonChange[]; more: number } {
  const changes: JsonChange[] = [];
  let more = 0;
  const push = (c: JsonChange) => {
    if (changes.length < max) changes.push(c);
    else more++;
  };
  const walk = (a: Json | undefined, b: Json | undefined, at: string, depth: number): void => {
    if (a === undefined && b === undefined) return;
    if (a === undefined) return push({ path: at, kind: 'added', after: b! });
    if (b === undefined) return push({ path: at, kind: 'removed', before: a });
    const objA = typeof a === 'object' && a !== null;
    const objB = typeof b === 'object' && b !== null;
    if (!objA || !objB || Array.isArray(a) !== Array.isArray(b) || depth > 64) {
      if (!sameJson(a, b)) push({ path: at, kind: 'changed', before: a, after: b });
      return;
    }
    if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.max(a.length, b.length); i++) walk(a[i], b[i], `${at}/${i}`, depth + 1);
      return;
    }
    const ra = a as Record<string, Json>;
    const rb = b as Record<string, Json>;
    const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
    for (const k of [...keys].sort()) walk(Object.hasOwn(ra, k) ? ra[k] : undefined, Object.hasOwn(rb, k) ? rb[k] : undefined, `${at}/${escape(k)}`, depth + 1);
  };
  walk(before, after, '', 0);
  return { changes, more };
}

/** Deep equality of JSON values (object key order does not matter). */
export function sameJson(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  const ra = a as Record<string, Json>;
  const rb = b as Record<string, Json>;
  const ka = Object.keys(ra);
  return ka.length === Object.keys(rb).length && ka.every((k) => Object.hasOwn(rb, k) && sameJson(ra[k], rb[k]));
}

/** A value for one line of a diff: JSON, cut at `max` characters. */
export function shortJson(v: Json | undefined, max = 120): string {
  if (v === undefined) return '(absent)';
  const s = JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
