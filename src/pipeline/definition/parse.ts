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

/** Every stage's transitive `needs` (its upstream), robust to cycles and unknown names. */
export function upstreamOf(def: PipelineDefinition): Map<string, Set<string>> {
  const byId = new Map(def.stages.map((s) => [s.id, s]));
  const memo = new Map<string, Set<string>>();
  const visit = (id: string, trail: Set<string>): Set<string> => {
    const done = memo.get(id);
    if (done) return done;
    const out = new Set<string>();
    if (trail.has(id)) return out;
    trail.add(id);
    for (const n of byId.get(id)?.needs ?? []) {
      if (!byId.has(n) || n === id) continue;
      out.add(n);
      for (const a of visit(n, trail)) out.add(a);
    }
    trail.delete(id);
    memo.set(id, out);
    return out;
  };
  for (const s of def.stages) visit(s.id, new Set());
  return memo;
}

/** Cycles through `needs`, each as its members in order (the first repeated at the end), each listed once. */
export function findCycles(def: PipelineDefinition): string[][] {
  const byId = new Map(def.stages.map((s) => [s.id, s]));
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const visit = (id: string): void => {
    state.set(id, 'open');
    stack.push(id);
    for (const n of byId.get(id)?.needs ?? []) {
      if (!byId.has(n)) continue;
      if (state.get(n) === 'open') {
        const members = stack.slice(stack.indexOf(n));
        const key = [...members].sort().join('\u0000');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push([...members, n]);
        }
      } else if (!state.has(n)) visit(n);
    }
    stack.pop();
    state.set(id, 'done');
  };
  for (const s of def.stages) if (!state.has(s.id)) visit(s.id);
  return cycles;
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
  context: { def: PipelineDefinition; allowed: Set<string>; stageId?: string; what: string },
): PipelineIssue[] {
  const out: PipelineIssue[] = [];
  let selections: ReadonlyArray<ReadonlyArray<string | number>>;
  try {
    selections = pipelineExpression(source, at.path).selections;
  } catch (err) {
    const p = err instanceof PlinthError ? err.problems[0] : undefined;
    return [issue('BAD_EXPRESSION', `${context.what.includes('${{') ? context.what : `${context.what} \`${source}\``} is not valid CEL: ${p?.message ?? (err as Error).message}`, at, 'expressions are CEL over vars, stages and run, e.g. `stages.ingest.output.records` or `vars.region == "eu"` (docs/pipelines.md)')];
  }
  const ids = context.def.stages.map((s) => s.id);
  const declared = Object.keys((context.def.variablesSchema as { properties?: object } | undefined)?.properties ?? {});
  for (const sel of selections) {
    const [root, first, second] = sel;
    if (root === 'stages' && typeof first === 'string') {
      if (!ids.includes(first)) {
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
  const ids = def.stages.map((s) => s.id);
  const firstIndex = new Map<string, number>();
  def.stages.forEach((s, i) => {
    const at = `/stages/${i}`;
    if (firstIndex.has(s.id)) {
      out.push(issue('DUPLICATE_STAGE', `stage id "${s.id}" is used again (first at /stages/${firstIndex.get(s.id)})`, locate(`${at}/id`), 'give every stage its own id'));
    } else firstIndex.set(s.id, i);
    s.needs.forEach((n, j) => {
      const needsAt = locate(needsWrittenAsOne.has(s) ? `${at}/needs` : `${at}/needs/${j}`);
      if (n === s.id) out.push(issue('CYCLE', `stage "${s.id}" needs itself`, needsAt, 'remove it from its own needs'));
      else if (!ids.includes(n)) out.push(issue('UNKNOWN_NEEDS', `stage "${s.id}" needs "${n}", which is not a stage of this pipeline`, needsAt, didYouMean(n, ids)));
    });
  });
  for (const cycle of findCycles(def)) {
    if (cycle.length <= 2) continue; // a stage needing itself is reported above
    const first = def.stages.findIndex((s) => s.id === cycle[0]);
    out.push(issue('CYCLE', `stages need each other in a cycle: ${cycle.join(' → ')}`, locate(`/stages/${first}/needs`), `remove one of these needs: ${cycle.slice(0, -1).map((id, k) => `"${cycle[k + 1]}" from ${id}`).join(', ')}`));
  }

  const upstream = upstreamOf(def);
  def.stages.forEach((s, i) => {
    const allowed = upstream.get(s.id) ?? new Set<string>();
    const refs = (template: Json, base: string, allow: Set<string>, what: string) => {
      for (const ref of findReferences(template, (pointer, message) => out.push(issue('BAD_EXPRESSION', message, locate(pointer), 'close it with "}}", or write "$${{" for a literal "${{"')), base)) {
        out.push(...expressionIssues(ref.expr, locate(ref.pointer), { def, allowed: allow, stageId: s.id, what: `${what} \${{ ${ref.expr} }}` }));
      }
    };
    refs(s.with, `/stages/${i}/with`, allowed, 'reference');
    if (s.if !== undefined) out.push(...expressionIssues(s.if, locate(`/stages/${i}/if`), { def, allowed, stageId: s.id, what: 'condition' }));
    if (s.compensate) refs(s.compensate.with, `/stages/${i}/compensate/with`, new Set([...allowed, s.id]), 'compensation reference');
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
