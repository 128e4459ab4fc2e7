// A pipeline file → a normalised PipelineDefinition (durations in ms, defaults filled), with every problem that
// needs no loaded extension: syntax, the schema, stage ids, `needs`, cycles, expressions and what references read.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ERROR_CODES, PlinthError } from '../../errors.ts';
import { durationMs } from '../../config/index.ts';
import { compileExpression } from '../../expr/index.ts';
import { compileAuthoredSchema, toProblems, validators } from '../../schema/index.ts';
import type { Json } from '../../sdk/index.ts';
import type { PipelineDefinition, PipelineIssue, RetryPolicy, SourceLocation, StageDefinition, TriggerDefinition } from '../types.ts';
import { didYouMean, issue } from './issues.ts';
import { joinPointer, parseSource } from './source.ts';
import { conditionSource, findReferences, pipelineExpression } from './template.ts';

export interface ParseResult {
  definition?: PipelineDefinition;
  issues: PipelineIssue[];
}

export type Locate = (pointer: string) => SourceLocation;

/** Error codes that are the caller's mistake: retrying cannot help, so no policy retries them. */
export const NEVER_RETRIED = ['PLINTH_ERR_STAGE_INPUT_INVALID', 'PLINTH_ERR_STAGE_UNKNOWN', 'PLINTH_ERR_EXTENSION_NOT_FOUND', 'PLINTH_ERR_EXPRESSION_FAILED', 'PLINTH_ERR_EXPRESSION_INVALID', 'PLINTH_ERR_PIPELINE_INVALID'] as const;

// `needs: ingest` (one id, not a list): issues point at /needs, not /needs/0.
const needsWrittenAsOne = new WeakSet<StageDefinition>();

// Where each definition came from, so checks made later (against the loaded extensions) can still name lines.
const locators = new WeakMap<PipelineDefinition, Locate>();

/** The line/column finder of a parsed definition; for one built elsewhere, stage locations and paths only. */
export function locatorOf(def: PipelineDefinition): Locate {
  const known = locators.get(def);
  if (known) return known;
  return (pointer) => {
    const m = /^\/stages\/(\d+)/.exec(pointer);
    const stage = m ? def.stages[Number(m[1])] : undefined;
    return stage?.location.line === undefined ? { path: pointer } : { path: pointer, line: stage.location.line, ...(stage.location.column === undefined ? {} : { column: stage.location.column }) };
  };
}

interface RawStage {
  id: string;
  extension: string;
  stage: string;
  with?: Json;
  needs?: string | string[];
  timeout?: number | string;
  retry?: string | Record<string, Json>;
  if?: string;
  compensate?: { extension?: string; stage: string; with?: Json; timeout?: number | string };
  continueOnError: boolean;
}

interface RawPipeline {
  name: string;
  version?: string;
  description?: string;
  variables?: Record<string, Json>;
  maxConcurrentStages: number;
  timeout?: number | string;
  onFailure: 'compensate' | 'stop';
  concurrency?: number;
  triggers?: Array<Record<string, Json>>;
  stages: RawStage[];
}

function retryOf(raw: RawStage['retry']): StageDefinition['retry'] {
  const spec = typeof raw === 'string' ? { policy: raw } : (raw ?? { policy: 'none' });
  const n = (v: Json | undefined, d: number) => (typeof v === 'number' ? v : d);
  const ms = (v: Json | undefined, d: string) => durationMs(typeof v === 'number' || typeof v === 'string' ? v : d);
  let retry: RetryPolicy;
  switch (spec.policy) {
    case 'exponential':
      retry = { policy: 'exponential', attempts: n(spec.attempts, 3), initialDelayMs: ms(spec.initialDelay, '1s'), maxDelayMs: ms(spec.maxDelay, '30s'), factor: n(spec.factor, 2), jitter: n(spec.jitter, 0) };
      break;
    case 'fixed':
      retry = { policy: 'fixed', attempts: n(spec.attempts, 3), intervalMs: ms(spec.interval, '1s') };
      break;
    case 'immediate':
      retry = { policy: 'immediate', attempts: n(spec.attempts, 3) };
      break;
    default:
      retry = { policy: 'none' };
  }
  // Codes may be written without the prefix (`STAGE_TIMEOUT`); both spellings are kept.
  const listed = Array.isArray(spec.nonRetryableErrorTypes) ? spec.nonRetryableErrorTypes.filter((c): c is string => typeof c === 'string') : [];
  const expanded = listed.flatMap((c) => (!c.startsWith('PLINTH_ERR_') && `PLINTH_ERR_${c}` in ERROR_CODES ? [c, `PLINTH_ERR_${c}`] : [c]));
  return { retry, nonRetryable: [...new Set([...expanded, ...NEVER_RETRIED])] };
}

function triggerOf(raw: Record<string, Json>): TriggerDefinition {
  switch (raw.type) {
    case 'event':
      return { type: 'event', pattern: raw.pattern as string, ...(typeof raw.if === 'string' ? { if: conditionSource(raw.if) } : {}) };
    case 'schedule':
      return { type: 'schedule', cron: raw.cron as string, ...(typeof raw.timezone === 'string' ? { timezone: raw.timezone } : {}) };
    case 'webhook':
      return { type: 'webhook', name: raw.name as string, ...(typeof raw.secretEnv === 'string' ? { secretEnv: raw.secretEnv } : {}) };
    default:
      return { type: 'manual' };
  }
}

/** `variables` (name → schema) as one JSON Schema for the variables object: a variable without a default is required. */
function variablesSchemaOf(vars: Record<string, Json>): Json {
  const required = Object.entries(vars).filter(([, s]) => typeof s !== 'object' || s === null || !Object.hasOwn(s, 'default')).map(([k]) => k);
  return { type: 'object', properties: vars, required, additionalProperties: false };
}

/**
 * A parsed value (from YAML/JSON, or an object given over RPC) → the definition, and every structural issue.
 * The definition is returned whenever the schema passed, even with structural issues, so later checks can add
 * theirs; callers that run it must refuse on any issue.
 */
export function normalisePipeline(value: unknown, file?: string, locate: Locate = (p) => ({ path: p })): ParseResult {
  const copy: unknown = structuredClone(value);
  if (!validators.pipeline(copy)) {
    return { issues: toProblems(validators.pipeline.errors).map((p) => issue('SCHEMA', p.message, locate(p.path), p.hint ?? 'see schemas/pipeline.schema.json and docs/pipelines.md')) };
  }
  const raw = copy as RawPipeline;
  const stages: StageDefinition[] = raw.stages.map((s, i) => {
    const at = `/stages/${i}`;
    const def: StageDefinition = {
      id: s.id,
      extension: s.extension,
      stage: s.stage,
      with: s.with === undefined ? {} : s.with,
      needs: s.needs === undefined ? [] : typeof s.needs === 'string' ? [s.needs] : s.needs,
      retry: retryOf(s.retry),
      continueOnError: s.continueOnError,
      location: locate(at),
    };
    if (typeof s.needs === 'string') needsWrittenAsOne.add(def);
    if (s.timeout !== undefined) def.timeoutMs = durationMs(s.timeout);
    if (s.if !== undefined) def.if = conditionSource(s.if);
    if (s.compensate) {
      def.compensate = { extension: s.compensate.extension ?? s.extension, stage: s.compensate.stage, with: s.compensate.with === undefined ? {} : s.compensate.with };
      if (s.compensate.timeout !== undefined) def.compensate.timeoutMs = durationMs(s.compensate.timeout);
    }
    return def;
  });
  const definition: PipelineDefinition = {
    name: raw.name,
    version: raw.version ?? '0.0.0',
    maxConcurrentStages: raw.maxConcurrentStages,
    onFailure: raw.onFailure,
    triggers: raw.triggers && raw.triggers.length > 0 ? raw.triggers.map(triggerOf) : [{ type: 'manual' }],
    stages,
  };
  if (raw.description !== undefined) definition.description = raw.description;
  if (raw.variables !== undefined) definition.variablesSchema = variablesSchemaOf(raw.variables);
  if (raw.timeout !== undefined) definition.timeoutMs = durationMs(raw.timeout);
  if (raw.concurrency !== undefined) definition.concurrency = raw.concurrency;
  if (file !== undefined) definition.file = file;
  locators.set(definition, locate);
  return { definition, issues: structuralIssues(definition, locate) };
}

/** What a stage may read: the stages upstream of it (reachable through `needs`), plus any `extra`. */
export interface Upstream {
  has(id: string): boolean;
}

/**
 * Known `needs` edges (no self edges, no unknown names), the topological position of every stage not on a
 * cycle (Kahn's algorithm), and its level (0 = needs nothing; 1 + the highest level it needs).
 */
function order(def: PipelineDefinition): { needs: Map<string, string[]>; position: Map<string, number>; levels: Map<string, number> } {
  const ids = new Set(def.stages.map((s) => s.id));
  const needs = new Map<string, string[]>();
  const dependents = new Map<string, string[]>();
  for (const s of def.stages) {
    if (needs.has(s.id)) continue; // a duplicate id: the first one counts
    const list = [...new Set(s.needs.filter((n) => n !== s.id && ids.has(n)))];
    needs.set(s.id, list);
    for (const n of list) (dependents.get(n) ?? dependents.set(n, []).get(n)!).push(s.id);
  }
  const waiting = new Map([...needs].map(([id, list]) => [id, list.length]));
  const queue = [...needs.keys()].filter((id) => waiting.get(id) === 0);
  const position = new Map<string, number>();
  const levels = new Map<string, number>();
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i]!;
    position.set(id, i);
    levels.set(id, Math.max(-1, ...needs.get(id)!.map((n) => levels.get(n)!)) + 1);
    for (const d of dependents.get(id) ?? []) {
      const left = waiting.get(d)! - 1;
      waiting.set(d, left);
      if (left === 0) queue.push(d);
    }
  }
  return { needs, position, levels };
}

/**
 * For each stage, which stages are upstream of it. Stages off cycles get an ancestor bitset built in topological
 * order (a 10 000-stage DAG: 10 000 × 313 words, 12.5 MB, a few million word operations — not n² Sets); stages on
 * a cycle (an invalid pipeline anyway) are answered by a plain search.
 */
export function upstreamFinder(def: PipelineDefinition): (stageId: string, extra?: string) => Upstream {
  const { needs, position } = order(def);
  const sorted = [...position.keys()];
  const words = Math.ceil(sorted.length / 32);
  const ancestors = new Map<string, Uint32Array>();
  for (const id of sorted) {
    const bits = new Uint32Array(words);
    for (const n of needs.get(id)!) {
      const p = position.get(n)!;
      bits[p >>> 5]! |= 1 << (p & 31);
      const up = ancestors.get(n)!;
      for (let w = 0; w < words; w++) bits[w]! |= up[w]!;
    }
    ancestors.set(id, bits);
  }
  const search = (target: string, from: string): boolean => {
    const seen = new Set<string>([from]);
    const stack = [from];
    while (stack.length > 0) {
      for (const n of needs.get(stack.pop()!) ?? []) {
        if (n === target) return true;
        if (!seen.has(n)) {
          seen.add(n);
          stack.push(n);
        }
      }
    }
    return false;
  };
  const isUpstream = (target: string, from: string): boolean => {
    if (target === from || !needs.has(target)) return false;
    const bits = ancestors.get(from);
    const p = position.get(target);
    if (!bits) return search(target, from);
    return p !== undefined && (bits[p >>> 5]! & (1 << (p & 31))) !== 0;
  };
  return (stageId, extra) => ({ has: (id) => id === extra || isUpstream(id, stageId) });
}

/** Stages by how soon they can run: level 0 needs nothing, each later level only earlier ones (side by side: parallel). */
export function stageLevels(def: PipelineDefinition): string[][] {
  const { levels } = order(def);
  const out: string[][] = [];
  for (const s of def.stages) {
    const l = levels.get(s.id);
    if (l !== undefined && !(out[l] ?? []).includes(s.id)) (out[l] ??= []).push(s.id);
  }
  return out.filter(Boolean);
}

/** Cycles through `needs`, each as its members in order (the first repeated at the end), each listed once. */
export function findCycles(def: PipelineDefinition): string[][] {
  const { needs } = order(def);
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[][] = [];
  const seen = new Set<string>();
  // Iterative depth-first search (a long chain must not overflow the call stack).
  for (const start of needs.keys()) {
    if (state.has(start)) continue;
    const path: string[] = [];
    const frames: Array<{ id: string; next: number }> = [{ id: start, next: 0 }];
    state.set(start, 'open');
    path.push(start);
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!;
      const list = needs.get(frame.id)!;
      if (frame.next >= list.length) {
        state.set(frame.id, 'done');
        frames.pop();
        path.pop();
        continue;
      }
      const n = list[frame.next++]!;
      if (state.get(n) === 'open') {
        const members = path.slice(path.indexOf(n));
        const key = [...members].sort().join('\u0000');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...members, n]);
        }
      } else if (!state.has(n)) {
        state.set(n, 'open');
        path.push(n);
        frames.push({ id: n, next: 0 });
      }
    }
  }
  return cycles;
}

const names = new WeakMap<PipelineDefinition, { ids: Set<string>; declared: string[] }>();
function namesOf(def: PipelineDefinition): { ids: Set<string>; declared: string[] } {
  let n = names.get(def);
  if (!n) {
    n = { ids: new Set(def.stages.map((s) => s.id)), declared: Object.keys((def.variablesSchema as { properties?: object } | undefined)?.properties ?? {}) };
    names.set(def, n);
  }
  return n;
}

export const STAGE_FIELDS = ['output', 'state'];
export const RUN_FIELDS = ['id', 'pipeline'];

/**
 * What one expression reads, checked: stages that exist and are in `allowed`, `stages.<id>.output|state`,
 * declared variables, `run.id|pipeline`. Also compiles it (BAD_EXPRESSION).
 */
export function expressionIssues(
  source: string,
  at: SourceLocation,
  context: { def: PipelineDefinition; allowed: Upstream; stageId?: string; what: string },
): PipelineIssue[] {
  const out: PipelineIssue[] = [];
  let selections: ReadonlyArray<ReadonlyArray<string | number>>;
  try {
    selections = pipelineExpression(source, at.path).selections;
  } catch (err) {
    const p = err instanceof PlinthError ? err.problems[0] : undefined;
    return [issue('BAD_EXPRESSION', `${context.what.includes('${{') ? context.what : `${context.what} \`${source}\``} is not valid CEL: ${p?.message ?? (err as Error).message}`, at, 'expressions are CEL over vars, stages and run, e.g. `stages.ingest.output.records` or `vars.region == "eu"` (docs/pipelines.md)')];
  }
  const { ids, declared } = namesOf(context.def);
  for (const sel of selections) {
    const [root, first, second] = sel;
    if (root === 'stages' && typeof first === 'string') {
      if (!ids.has(first)) {
        out.push(issue('UNKNOWN_STAGE_REFERENCE', `${context.what} reads stages.${first}, but the pipeline has no stage "${first}"`, at, didYouMean(first, ids)));
      } else if (!context.allowed.has(first)) {
        const self = first === context.stageId;
        out.push(
          issue(
            'NOT_UPSTREAM',
            self ? `${context.what} reads the output of its own stage "${first}", which does not exist yet` : `${context.what} reads stages.${first}, which is not upstream of stage "${context.stageId}"`,
            at,
            self ? 'reference an upstream stage; a compensation (compensate.with) may read its own stage' : `add "${first}" to the needs of "${context.stageId}" (directly or through a stage it needs)`,
          ),
        );
      } else if (second !== undefined && !STAGE_FIELDS.includes(String(second))) {
        out.push(issue('BAD_REFERENCE', `${context.what} reads stages.${first}.${String(second)}; a stage has only output and state`, at, didYouMean(String(second), STAGE_FIELDS, `write stages.${first}.output.${String(second)}`)));
      }
    } else if (root === 'vars' && first !== undefined) {
      if (!declared.includes(String(first))) {
        out.push(issue('UNKNOWN_VARIABLE', `${context.what} reads vars.${String(first)}, which the pipeline does not declare`, at, didYouMean(String(first), declared, `declare it under variables: with a schema (and a default, or pass --var ${String(first)}=…)`)));
      }
    } else if (root === 'run' && first !== undefined && !RUN_FIELDS.includes(String(first))) {
      out.push(issue('BAD_REFERENCE', `${context.what} reads run.${String(first)}; run has only id and pipeline`, at, didYouMean(String(first), RUN_FIELDS)));
    }
  }
  return out;
}

/** The checks that need no loaded extension. */
export function structuralIssues(def: PipelineDefinition, locate: Locate): PipelineIssue[] {
  const out: PipelineIssue[] = [];
  const ids = namesOf(def).ids;
  const firstIndex = new Map<string, number>();
  def.stages.forEach((s, i) => {
    const at = `/stages/${i}`;
    if (firstIndex.has(s.id)) {
      out.push(issue('DUPLICATE_STAGE', `stage id "${s.id}" is used again (first at /stages/${firstIndex.get(s.id)})`, locate(`${at}/id`), 'give every stage its own id'));
    } else firstIndex.set(s.id, i);
    s.needs.forEach((n, j) => {
      const needsAt = locate(needsWrittenAsOne.has(s) ? `${at}/needs` : `${at}/needs/${j}`);
      if (n === s.id) out.push(issue('CYCLE', `stage "${s.id}" needs itself`, needsAt, 'remove it from its own needs'));
      else if (!ids.has(n)) out.push(issue('UNKNOWN_NEEDS', `stage "${s.id}" needs "${n}", which is not a stage of this pipeline`, needsAt, didYouMean(n, ids)));
    });
  });
  for (const cycle of findCycles(def)) {
    if (cycle.length <= 2) continue; // a stage needing itself is reported above
    const first = def.stages.findIndex((s) => s.id === cycle[0]);
    out.push(issue('CYCLE', `stages need each other in a cycle: ${cycle.join(' → ')}`, locate(`/stages/${first}/needs`), `remove one of these needs: ${cycle.slice(0, -1).map((id, k) => `"${cycle[k + 1]}" from ${id}`).join(', ')}`));
  }

  const upstream = upstreamFinder(def);
  def.stages.forEach((s, i) => {
    const allowed = upstream(s.id);
    const refs = (template: Json, base: string, allow: Upstream, what: string) => {
      for (const ref of findReferences(template, (pointer, message) => out.push(issue('BAD_EXPRESSION', message, locate(pointer), 'close it with "}}", or write "$${{" for a literal "${{"')), base)) {
        out.push(...expressionIssues(ref.expr, locate(ref.pointer), { def, allowed: allow, stageId: s.id, what: `${what} \${{ ${ref.expr} }}` }));
      }
    };
    refs(s.with, `/stages/${i}/with`, allowed, 'reference');
    if (s.if !== undefined) out.push(...expressionIssues(s.if, locate(`/stages/${i}/if`), { def, allowed, stageId: s.id, what: 'condition' }));
    if (s.compensate) refs(s.compensate.with, `/stages/${i}/compensate/with`, upstream(s.id, s.id), 'compensation reference');
  });

  def.triggers.forEach((t, i) => {
    if (t.type !== 'event' || t.if === undefined) return;
    try {
      compileExpression(t.if, { variables: ['event'], path: `/triggers/${i}/if` });
    } catch (err) {
      const p = err instanceof PlinthError ? err.problems[0] : undefined;
      out.push(issue('BAD_EXPRESSION', `trigger condition \`${t.if}\` is not valid CEL: ${p?.message ?? (err as Error).message}`, locate(`/triggers/${i}/if`), 'a trigger condition reads `event` (topic, payload, …), e.g. `event.payload.size > 0`'));
    }
  });

  // Each variable's schema compiled on its own, so a mistake is reported at its variable.
  const declaredVars = ((def.variablesSchema as { properties?: Record<string, Json> } | undefined)?.properties ?? {});
  for (const [name, schema] of Object.entries(declaredVars)) {
    try {
      compileAuthoredSchema(schema, { extension: `pipeline ${def.name}`, file: def.file ?? '(pipeline)' });
    } catch (err) {
      const problems = err instanceof PlinthError ? err.problems : [];
      for (const p of problems.length > 0 ? problems : [{ path: '', message: (err as Error).message }]) {
        const message = p.message.replace(/schema\//g, '');
        out.push(issue('VARIABLES_INVALID', `the schema of variable "${name}" is not valid: ${message}`, locate(joinPointer('/variables', name)), p.hint ?? 'each variable is a JSON Schema (2020-12), e.g. { type: string, default: "eu" }'));
      }
    }
  }
  return out;
}

/** Reads a pipeline's text (YAML or JSON): the definition and every issue found without the extensions. */
export function readPipeline(text: string, file?: string): ParseResult {
  const source = parseSource(text);
  if (source.errors.length > 0) {
    return { issues: source.errors.map((e) => issue('SYNTAX', e.message, { path: '', ...(e.line === undefined ? {} : { line: e.line }), ...(e.column === undefined ? {} : { column: e.column }) }, 'fix the YAML/JSON syntax at that line')) };
  }
  if (typeof source.value !== 'object' || source.value === null || Array.isArray(source.value)) {
    return { issues: [issue('SCHEMA', 'a pipeline is an object with name and stages', source.locate(''), 'start the file with `name: my-pipeline` and a `stages:` list (docs/pipelines.md)')] };
  }
  return normalisePipeline(source.value, file, (pointer) => source.locate(pointer));
}

/** The contract's parse: the definition only when nothing is wrong with it on its own. */
export function parsePipeline(text: string, file?: string): ParseResult {
  const r = readPipeline(text, file);
  return r.issues.length > 0 ? { issues: r.issues } : r;
}

export async function readPipelineFile(file: string): Promise<{ text: string; file: string }> {
  const abs = path.resolve(file);
  try {
    return { text: await readFile(abs, 'utf8'), file: abs };
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_USAGE', `cannot read pipeline file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { file: abs, hint: 'give the path of a .yaml or .json pipeline file, e.g. pipelines/quick-start.yaml' });
  }
}

export async function loadPipelineFile(file: string): Promise<ParseResult> {
  const { text, file: abs } = await readPipelineFile(file);
  return parsePipeline(text, abs);
}
