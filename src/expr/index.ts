// One small, safe expression language for the host's filters and conditions: CEL (Common Expression Language,
// github.com/google/cel-spec) through @marcbachmann/cel-js, an interpreter over its own AST — no eval, no
// new Function, no host object reachable, no loops (CEL is not Turing complete). Routes and complex-event rules
// use it now; the pipeline issue reuses it for conditions. Expressions come from the host config (the operator);
// the values they read (event payloads) may come from hostile extensions, so reading them can only fail with
// a coded error, never reach a prototype (`payload.__proto__` is "no such key").
//
// Regular expressions: CEL's own `matches` runs JavaScript's backtracking RegExp in this library, where one
// 30-character payload string can hold the event loop for seconds against a pattern like `^(a+)+$`; it is
// refused at compile time, and `text.matchesRe2(pattern)` (RE2 syntax, as the CEL spec says, linear time via re2js)
// takes its place.
//
// CEL semantics worth knowing: JSON numbers are CEL doubles (`payload.n + 1.0`; comparisons across int and
// double work: `payload.bytes > 10485760`); a missing field is an error, so guard with `has(payload.x)`.
import { Environment } from '@marcbachmann/cel-js';
import { RE2JS } from 're2js';
import { PlinthError } from '../errors.ts';
import type { Json } from '../sdk/index.ts';

/** Longest expression accepted, in characters. */
export const MAX_EXPRESSION_LENGTH = 4096;

// Parse-time bounds (cel-js `limits`): an expression is small text from a config file, never a program.
const LIMITS = { maxAstNodes: 2000, maxDepth: 64, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 32 };

export interface CompileOptions {
  /** The variables the expression may read (anything else is refused at compile time). */
  variables: readonly string[];
  /** Where the expression sits (a JSON Pointer into the config, e.g. `/events/routes/0/filter`), for errors. */
  path?: string;
  /** The file it came from, for errors. */
  file?: string;
}

export interface Expression {
  readonly source: string;
  /** Evaluates with `vars` and returns the result as JSON (ints become numbers, maps objects, bytes base64). */
  evaluate(vars: Record<string, unknown>): Json;
  /** Evaluates a condition: true only for the boolean true; an error is PLINTH_ERR_EXPRESSION_FAILED. */
  test(vars: Record<string, unknown>): boolean;
  /**
   * Every member selection from a variable the expression makes, as its steps: `stages.a.output["x"][0]` is
   * ['stages', 'a', 'output', 'x', 0]; a computed step (`m[k]`) ends the chain. What the pipeline check reads to
   * know which stages an expression depends on, and whether it is one plain reference.
   */
  readonly selections: ReadonlyArray<ReadonlyArray<string | number>>;
  /** True when the whole expression is one such selection (nothing computed): `stages.a.output.records`. */
  readonly isSelection: boolean;
}

interface AstNode {
  op?: unknown;
  args?: unknown;
}

/** The selection chain a node is, when it is one (a variable followed by literal field or index steps). */
function selectionOf(node: unknown): Array<string | number> | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  const { op, args } = node as AstNode;
  if (op === 'id' && typeof args === 'string') return [args];
  if (!Array.isArray(args) || args.length !== 2) return undefined;
  if (op === '.' && typeof args[1] === 'string') {
    const base = selectionOf(args[0]);
    return base ? [...base, args[1]] : undefined;
  }
  if (op === '[]') {
    const base = selectionOf(args[0]);
    const index = args[1] as AstNode;
    if (!base || index?.op !== 'value') return undefined;
    if (typeof index.args === 'string') return [...base, index.args];
    if (typeof index.args === 'bigint' || typeof index.args === 'number') return [...base, Number(index.args)];
  }
  return undefined;
}

/** The longest selection chains anywhere in the AST (a chain's own prefixes are not listed again). */
function selectionsOf(node: unknown, out: Array<Array<string | number>>, depth = 0): void {
  if (depth > 256 || typeof node !== 'object' || node === null) return;
  if (Array.isArray(node)) {
    for (const n of node) selectionsOf(n, out, depth + 1);
    return;
  }
  const chain = selectionOf(node);
  if (chain) {
    out.push(chain);
    return;
  }
  const { op, args } = node as AstNode;
  // A selection whose base is computed (`stages[k].output`): the base may still hold chains.
  if ((op === '.' || op === '[]') && Array.isArray(args)) {
    selectionsOf(args[0], out, depth + 1);
    if (op === '[]') selectionsOf(args[1], out, depth + 1);
    return;
  }
  selectionsOf(args, out, depth + 1);
}

const environments = new Map<string, Environment>();

// Compiled RE2 patterns by text (patterns are usually literals in the config; a bounded cache for the rest).
const re2Cache = new Map<string, RE2JS>();
function re2(pattern: string): RE2JS {
  let re = re2Cache.get(pattern);
  if (!re) {
    re = RE2JS.compile(pattern);
    if (re2Cache.size >= 256) re2Cache.delete(re2Cache.keys().next().value!);
    re2Cache.set(pattern, re);
  }
  return re;
}

/** True if the AST calls `name` as a function or a method anywhere. */
function callsFunction(node: unknown, name: string): boolean {
  if (Array.isArray(node)) return node.some((n) => callsFunction(n, name));
  if (typeof node !== 'object' || node === null) return false;
  const { op, args } = node as { op?: unknown; args?: unknown };
  if ((op === 'call' || op === 'rcall') && Array.isArray(args) && args[0] === name) return true;
  return callsFunction(args, name);
}

function environmentFor(variables: readonly string[]): Environment {
  const key = [...variables].sort().join(',');
  let env = environments.get(key);
  if (!env) {
    env = new Environment({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false, limits: LIMITS });
    for (const name of variables) env.registerVariable(name, 'dyn');
    env.registerFunction('string.matchesRe2(string): bool', (text: string, pattern: string) => re2(pattern).matcher(text).find());
    environments.set(key, env);
  }
  return env;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

function invalid(message: string, options: CompileOptions, cause?: unknown): PlinthError {
  const where = options.path ?? '';
  return new PlinthError('PLINTH_ERR_EXPRESSION_INVALID', `expression ${where ? `at ${where} ` : ''}is not valid: ${message}`, {
    ...(options.file ? { file: options.file } : {}),
    problems: [{ path: where, message, hint: `variables here: ${options.variables.join(', ') || '(none)'}` }],
    hint: 'expressions are CEL (github.com/google/cel-spec); see README "Expressions"',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** CEL values back to JSON: what a transform returns becomes an event payload. */
export function toJson(value: unknown): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (value instanceof Map) return Object.fromEntries([...(value as Map<unknown, unknown>)].map(([k, v]) => [typeof k === 'string' ? k : JSON.stringify(toJson(k)), toJson(v)]));
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  // Functions and symbols never come out of CEL; nothing else is left.
  return null;
}

/**
 * Compiles a CEL expression once (parse and type-check); the result is evaluated many times. Throws
 * PLINTH_ERR_EXPRESSION_INVALID with the path for text that is too long, does not parse, exceeds the limits or
 * reads a variable not in `options.variables`.
 */
export function compileExpression(source: string, options: CompileOptions): Expression {
  if (typeof source !== 'string' || source.trim() === '') throw invalid('must be a non-empty string', options);
  if (source.length > MAX_EXPRESSION_LENGTH) throw invalid(`is ${source.length} characters, more than ${MAX_EXPRESSION_LENGTH}`, options);
  const env = environmentFor(options.variables);
  let checked: ReturnType<Environment['check']>;
  try {
    checked = env.check(source);
  } catch (err) {
    throw invalid(firstLine(err), options, err);
  }
  if (!checked.valid) throw invalid(firstLine(checked.error), options, checked.error);
  let run: (vars: Record<string, unknown>) => unknown;
  try {
    run = env.parse(source);
  } catch (err) {
    throw invalid(firstLine(err), options, err);
  }
  if (callsFunction((run as unknown as { ast?: unknown }).ast, 'matches')) {
    throw invalid('`matches` uses backtracking regular expressions that hostile text can make run for seconds; use text.matchesRe2(pattern) (RE2 syntax, linear time)', options);
  }
  const call = (vars: Record<string, unknown>): unknown => {
    let result: unknown;
    try {
      result = run(vars);
    } catch (err) {
      throw new PlinthError('PLINTH_ERR_EXPRESSION_FAILED', `expression ${options.path ? `at ${options.path} ` : ''}failed: ${firstLine(err)}`, {
        hint: 'a missing field is an error in CEL: guard it with has(payload.field)',
        cause: err,
      });
    }
    if (result instanceof Promise) {
      // Only registered async functions return promises, and this environment registers none.
      throw new PlinthError('PLINTH_ERR_EXPRESSION_FAILED', 'expression returned a promise', {});
    }
    return result;
  };
  const ast = (run as unknown as { ast?: unknown }).ast;
  const selections: Array<Array<string | number>> = [];
  selectionsOf(ast, selections);
  return {
    source,
    selections,
    isSelection: selectionOf(ast) !== undefined,
    evaluate: (vars) => toJson(call(vars)),
    test: (vars) => call(vars) === true,
  };
}
