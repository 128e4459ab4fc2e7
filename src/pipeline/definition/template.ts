// `${{ expr }}` references in a stage's `with`, and `if` conditions: one syntax, one language (CEL via src/expr).
//
//   with:
//     records: ${{ stages.ingest.output.records }}     # exactly one reference: the value itself, with its type
//     title: "Report for ${{ vars.region }}"           # inside a longer string: interpolated as text
//     literal: "$${{ not a reference }}"               # `$${{` is a literal `${{`
//
// Expressions read `vars` (run variables), `stages` (finished upstream stages: `stages.<id>.output`,
// `stages.<id>.state`) and `run` (`run.id`, `run.pipeline`). Interpolated values: strings as they are, anything
// else as its JSON text. Nothing is ever `eval`ed: CEL is interpreted over its own AST.
import { PlinthError } from '../../errors.ts';
import { compileExpression, type Expression } from '../../expr/index.ts';
import type { Json } from '../../sdk/index.ts';
import type { RunScope } from '../types.ts';
import { joinPointer } from './source.ts';

/** The variables every pipeline expression may read. */
export const SCOPE_VARIABLES = ['vars', 'stages', 'run'] as const;

export type Segment = { text: string } | { expr: string };

export interface TemplateString {
  segments: Segment[];
  /** The string is exactly one reference (surrounding whitespace aside): it yields the value, not text. */
  whole: boolean;
}

/**
 * Splits a string into text and `${{ … }}` references; undefined when it holds none. Throws a plain Error for an
 * unterminated reference (the caller turns it into an issue or a coded error with its path).
 */
export function parseTemplateString(s: string): TemplateString | undefined {
  if (!s.includes('${{')) return undefined;
  const segments: Segment[] = [];
  let text = '';
  let i = 0;
  let refs = 0;
  let escaped = false;
  while (i < s.length) {
    if (s.startsWith('$${{', i)) {
      text += '${{';
      escaped = true;
      i += 4;
      continue;
    }
    if (!s.startsWith('${{', i)) {
      text += s[i];
      i++;
      continue;
    }
    // Find the closing `}}` outside CEL string literals (`${{ "}}" }}` holds one literal).
    let j = i + 3;
    let quote: string | undefined;
    let end = -1;
    while (j < s.length) {
      const c = s[j]!;
      if (quote) {
        if (c === '\\') j++;
        else if (c === quote) quote = undefined;
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '}' && s[j + 1] === '}') {
        end = j;
        break;
      }
      j++;
    }
    if (end < 0) throw new Error(`"\${{" at character ${i + 1} has no closing "}}"`);
    const expr = s.slice(i + 3, end).trim();
    if (expr === '') throw new Error(`"\${{ }}" at character ${i + 1} is empty`);
    if (text !== '') segments.push({ text });
    text = '';
    segments.push({ expr });
    refs++;
    i = end + 2;
  }
  if (text !== '') segments.push({ text });
  if (refs === 0) return escaped ? { segments, whole: false } : undefined;
  const meaningful = segments.filter((seg) => !('text' in seg) || seg.text.trim() !== '');
  return { segments, whole: refs === 1 && meaningful.length === 1 };
}

/** One reference found in a template: where it sits and what it says. */
export interface TemplateReference {
  /** JSON Pointer of the string holding it, relative to the template. */
  pointer: string;
  expr: string;
  /** The string is exactly this one reference. */
  whole: boolean;
}

/** Every reference in a JSON template, depth first; unterminated ones are reported through `onError`. */
export function findReferences(template: unknown, onError: (pointer: string, message: string) => void, base = ''): TemplateReference[] {
  const out: TemplateReference[] = [];
  const walk = (node: unknown, pointer: string, depth: number): void => {
    if (depth > 256) return;
    if (typeof node === 'string') {
      let parsed: TemplateString | undefined;
      try {
        parsed = parseTemplateString(node);
      } catch (err) {
        onError(pointer, (err as Error).message);
        return;
      }
      if (!parsed) return;
      for (const seg of parsed.segments) if ('expr' in seg) out.push({ pointer, expr: seg.expr, whole: parsed.whole });
    } else if (Array.isArray(node)) {
      node.forEach((item, i) => walk(item, joinPointer(pointer, i), depth + 1));
    } else if (typeof node === 'object' && node !== null) {
      for (const [k, v] of Object.entries(node)) walk(v, joinPointer(pointer, k), depth + 1);
    }
  };
  walk(template, base, 0);
  return out;
}

// Compiled expressions by source text: one pipeline's stages run many times with the same templates.
const cache = new Map<string, Expression>();

/** Compiles a pipeline expression (cached); throws PLINTH_ERR_EXPRESSION_INVALID naming `path`. */
export function pipelineExpression(source: string, path?: string): Expression {
  const hit = cache.get(source);
  if (hit) return hit;
  const expr = compileExpression(source, { variables: SCOPE_VARIABLES, ...(path ? { path } : {}) });
  if (cache.size >= 4096) cache.delete(cache.keys().next().value!);
  cache.set(source, expr);
  return expr;
}

/** An `if:` may be written bare (`vars.n > 1`) or wrapped (`${{ vars.n > 1 }}`): the expression either way. */
export function conditionSource(text: string): string {
  const m = /^\s*\$\{\{([\s\S]*)\}\}\s*$/.exec(text);
  return (m ? m[1]! : text).trim();
}

function scopeVars(scope: RunScope): Record<string, unknown> {
  return { vars: scope.vars, stages: scope.stages, run: scope.run };
}

function failed(path: string, expr: string, err: unknown): PlinthError {
  const cause = err instanceof PlinthError ? err.message : String((err as Error)?.message ?? err);
  return new PlinthError('PLINTH_ERR_EXPRESSION_FAILED', `reference \${{ ${expr} }} at ${path || '/'} failed: ${cause}`, {
    hint: 'a missing field is an error in CEL: check the upstream stage produced it, or guard it with has(...) (docs/pipelines.md)',
    problems: [{ path: path || '/', message: cause }],
    cause: err,
  });
}

function asText(value: Json): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * Resolves every `${{ }}` reference of a template against a run's scope and returns the stage input. Throws
 * PLINTH_ERR_EXPRESSION_FAILED naming the path (`base` + the pointer inside the template, e.g.
 * `/stages/2/with/records`) when a reference does not evaluate.
 */
export function resolveTemplate(template: Json, scope: RunScope, base = ''): Json {
  const vars = scopeVars(scope);
  const walk = (node: Json, pointer: string, depth: number): Json => {
    if (depth > 256) throw new PlinthError('PLINTH_ERR_EXPRESSION_FAILED', `template at ${pointer} nests deeper than 256`, {});
    if (typeof node === 'string') {
      let parsed: TemplateString | undefined;
      try {
        parsed = parseTemplateString(node);
      } catch (err) {
        throw failed(pointer, node, err);
      }
      if (!parsed) return node;
      const evaluate = (expr: string): Json => {
        try {
          return pipelineExpression(expr, pointer).evaluate(vars);
        } catch (err) {
          throw failed(pointer, expr, err);
        }
      };
      if (parsed.whole) return evaluate((parsed.segments.find((s) => 'expr' in s) as { expr: string }).expr);
      return parsed.segments.map((seg) => ('expr' in seg ? asText(evaluate(seg.expr)) : seg.text)).join('');
    }
    if (Array.isArray(node)) return node.map((item, i) => walk(item, joinPointer(pointer, i), depth + 1));
    if (typeof node === 'object' && node !== null) {
      const out: Record<string, Json> = {};
      for (const [k, v] of Object.entries(node)) {
        // Own data properties only: a key named __proto__ stays a key.
        Object.defineProperty(out, k, { value: walk(v, joinPointer(pointer, k), depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    return node;
  };
  return walk(template, base, 0);
}

/**
 * Evaluates an `if` condition (bare CEL or wrapped in `${{ }}`). True or false; anything but a boolean, or an
 * evaluation error, is PLINTH_ERR_EXPRESSION_FAILED (a condition that cannot be decided never silently skips);
 * text that is not CEL at all is PLINTH_ERR_EXPRESSION_INVALID.
 */
export function evaluateCondition(expr: string, scope: RunScope, path?: string): boolean {
  const source = conditionSource(expr);
  let value: Json;
  try {
    value = pipelineExpression(source, path).evaluate(scopeVars(scope));
  } catch (err) {
    if (err instanceof PlinthError && err.code === 'PLINTH_ERR_EXPRESSION_INVALID') throw err; // refused before the run too
    throw failed(path ?? '', source, err);
  }
  if (typeof value !== 'boolean') {
    throw new PlinthError('PLINTH_ERR_EXPRESSION_FAILED', `condition ${source} at ${path ?? '/'} gave ${JSON.stringify(value)}, not true or false`, {
      hint: 'make the condition a comparison, e.g. `vars.count > 0`, or `has(stages.x.output)`',
    });
  }
  return value;
}
