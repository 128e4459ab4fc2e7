// PLACEHOLDER until the `pipedef` branch lands (CONTRACTS.md wave 3): the definition side's exports with the
// contract's names, just enough for the engine's tests — parse YAML/JSON, normalise, a few checks, `${{ }}`
// references and CEL conditions through src/expr. At integration this file is replaced by pipedef's whole.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PlinthError } from '../../errors.ts';
import { compileExpression, type Expression } from '../../expr/index.ts';
import type { Json } from '../../sdk/index.ts';
import type { PipelineDefinition, PipelineIssue, RetryPolicy, RunScope, StageCatalog, StageDefinition, TriggerDefinition } from '../types.ts';

type Doc = Record<string, unknown>;
const VARIABLES = ['vars', 'stages', 'run', 'event'];

function ms(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'number') return value;
  const m = /^(\d+)(ms|s|m|h)$/.exec(String(value));
  if (!m) return Number.NaN;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms']!;
}

function retryOf(raw: unknown): { retry: RetryPolicy; nonRetryable: string[] } {
  const r = (raw ?? { policy: 'none' }) as Doc;
  const nonRetryable = Array.isArray(r.nonRetryable) ? (r.nonRetryable as string[]) : [];
  const attempts = typeof r.attempts === 'number' ? r.attempts : 3;
  switch (r.policy) {
    case 'immediate':
      return { retry: { policy: 'immediate', attempts }, nonRetryable };
    case 'fixed':
      return { retry: { policy: 'fixed', attempts, intervalMs: ms(r.interval) ?? 1000 }, nonRetryable };
    case 'exponential':
      return {
        retry: { policy: 'exponential', attempts, initialDelayMs: ms(r.initialDelay) ?? 100, maxDelayMs: ms(r.maxDelay) ?? 10_000, factor: typeof r.factor === 'number' ? r.factor : 2, jitter: typeof r.jitter === 'number' ? r.jitter : 0.2 },
        nonRetryable,
      };
    default:
      return { retry: { policy: 'none' }, nonRetryable };
  }
}

function normalise(doc: Doc, file?: string): PipelineDefinition {
  const stages = (Array.isArray(doc.stages) ? doc.stages : []) as Doc[];
  const def: PipelineDefinition = {
    name: String(doc.name),
    version: String(doc.version ?? '1.0.0'),
    maxConcurrentStages: typeof doc.maxConcurrentStages === 'number' ? doc.maxConcurrentStages : 4,
    onFailure: doc.onFailure === 'stop' ? 'stop' : 'compensate',
    triggers: (Array.isArray(doc.triggers) ? doc.triggers : [{ type: 'manual' }]) as TriggerDefinition[],
    stages: stages.map((s, i): StageDefinition => {
      const st: StageDefinition = {
        id: String(s.id),
        extension: String(s.extension),
        stage: String(s.stage),
        with: (s.with ?? {}) as Json,
        needs: Array.isArray(s.needs) ? (s.needs as string[]) : [],
        retry: retryOf(s.retry),
        continueOnError: s.continueOnError === true,
        location: { path: `/stages/${i}` },
      };
      const t = ms(s.timeout);
      if (t !== undefined) st.timeoutMs = t;
      if (typeof s.if === 'string') st.if = s.if;
      if (s.compensate && typeof s.compensate === 'object') {
        const c = s.compensate as Doc;
        st.compensate = { extension: String(c.extension), stage: String(c.stage), with: (c.with ?? {}) as Json };
        const ct = ms(c.timeout);
        if (ct !== undefined) st.compensate.timeoutMs = ct;
      }
      return st;
    }),
  };
  if (typeof doc.description === 'string') def.description = doc.description;
  if (doc.variables !== undefined) def.variablesSchema = doc.variables as Json;
  const t = ms(doc.timeout);
  if (t !== undefined) def.timeoutMs = t;
  if (typeof doc.concurrency === 'number') def.concurrency = doc.concurrency;
  if (file) def.file = path.resolve(file);
  return def;
}

export function parsePipeline(text: string, file?: string): { definition?: PipelineDefinition; issues: PipelineIssue[] } {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    return { issues: [{ code: 'PLINTH_ERR_PIPELINE_INVALID', message: (err as Error).message, location: { path: '' } }] };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof (doc as Doc).name !== 'string' || !Array.isArray((doc as Doc).stages)) {
    return { issues: [{ code: 'PLINTH_ERR_PIPELINE_INVALID', message: 'a pipeline needs a name and a list of stages', location: { path: '' } }] };
  }
  return { definition: normalise(doc as Doc, file), issues: [] };
}

export async function loadPipelineFile(file: string): Promise<{ definition?: PipelineDefinition; issues: PipelineIssue[] }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { issues: [{ code: 'PLINTH_ERR_PIPELINE_INVALID', message: `cannot read ${file}: ${(err as Error).message}`, location: { path: '' } }] };
  }
  return parsePipeline(text, file);
}

export function checkPipeline(def: PipelineDefinition, catalog: StageCatalog): PipelineIssue[] {
  const issues: PipelineIssue[] = [];
  const ids = new Set(def.stages.map((s) => s.id));
  for (const s of def.stages) {
    const ext = catalog.extension(s.extension);
    if (!ext) issues.push({ code: 'PLINTH_ERR_PIPELINE_INVALID', message: `stage ${s.id}: no extension ${s.extension}`, location: { path: `${s.location.path}/extension` } });
    else if (!ext.stages[s.stage]) issues.push({ code: 'PLINTH_ERR_PIPELINE_INVALID', message: `stage ${s.id}: ${s.extension} has no stage ${s.stage}`, location: { path: `${s.location.path}/stage` } });
    for (const n of s.needs) if (!ids.has(n)) issues.push({ code: 'PLINTH_ERR_PIPELINE_INVALID', message: `stage ${s.id} needs ${n}, which is no stage`, location: { path: `${s.location.path}/needs` } });
  }
  return issues;
}

const compiled = new Map<string, Expression>();
function expression(source: string, at: string): Expression {
  let e = compiled.get(source);
  if (!e) {
    e = compileExpression(source, { variables: VARIABLES, path: at });
    compiled.set(source, e);
  }
  return e;
}

function scopeVars(scope: RunScope): Record<string, unknown> {
  return { vars: scope.vars, stages: scope.stages, run: scope.run, event: (scope.vars as Record<string, unknown>).event ?? null };
}

const WHOLE = /^\$\{\{\s*([\s\S]+?)\s*\}\}$/;
const PART = /\$\{\{\s*([\s\S]+?)\s*\}\}/g;

export function resolveTemplate(template: Json, scope: RunScope): Json {
  if (typeof template === 'string') {
    const whole = WHOLE.exec(template);
    if (whole) return expression(whole[1]!, '').evaluate(scopeVars(scope));
    if (!template.includes('${{')) return template;
    return template.replace(PART, (_m, src: string) => {
      const v = expression(src, '').evaluate(scopeVars(scope));
      return typeof v === 'string' ? v : JSON.stringify(v);
    });
  }
  if (Array.isArray(template)) return template.map((t) => resolveTemplate(t, scope));
  if (template && typeof template === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(template)) out[k] = resolveTemplate(v, scope);
    return out;
  }
  return template;
}

export function evaluateCondition(expr: string, scope: RunScope): boolean {
  return expression(expr, '').test(scopeVars(scope));
}

export function applyVariableDefaults(def: PipelineDefinition, vars: Record<string, Json>): Record<string, Json> {
  const out = { ...vars };
  const props = ((def.variablesSchema as Doc | undefined)?.properties ?? {}) as Record<string, Doc>;
  for (const [k, p] of Object.entries(props)) if (!(k in out) && p.default !== undefined) out[k] = p.default as Json;
  const required = ((def.variablesSchema as Doc | undefined)?.required ?? []) as string[];
  for (const r of required) {
    if (!(r in out)) throw new PlinthError('PLINTH_ERR_PIPELINE_INVALID', `pipeline ${def.name}: variable ${r} is required`, { hint: `pass --var ${r}=…` });
  }
  return out;
}
