// The checks against the loaded extensions (a StageCatalog): extensions and stages exist, the literal parts of
// each `with` match the stage's input schema, every reference's declared type fits where it is put (typed
// contracts, contracts.ts), conditions are booleans, and the run's variables match their schemas.
import type { ErrorObject } from 'ajv/dist/2020.js';
import { PlinthError } from '../../errors.ts';
import { SchemaScope, toProblems, type SchemaValidator } from '../../schema/index.ts';
import type { Json } from '../../sdk/index.ts';
import type { PipelineDefinition, PipelineIssue, StageCatalog, StageDefinition } from '../types.ts';
import { compareSchemas, stepInto, schemaAt } from './contracts.ts';
import { didYouMean, issue, PipelineInvalidError } from './issues.ts';
import { locatorOf, upstreamFinder, type Locate, type Upstream } from './parse.ts';
import { joinPointer } from './source.ts';
import { findReferences, pipelineExpression } from './template.ts';

const STAGE_STATES = ['pending', 'running', 'succeeded', 'failed', 'skipped', 'cancelled', 'compensating', 'compensated'];

// Validators of schemas by identity: a catalog hands the same schema objects for every check.
const compiled = new WeakMap<object, SchemaValidator | null>();

function validatorFor(schema: Json, label: string): SchemaValidator | undefined {
  if (typeof schema === 'boolean') {
    const fn = ((v: unknown) => (void v, schema)) as unknown as SchemaValidator;
    fn.errors = schema ? null : [{ instancePath: '', keyword: 'false schema', schemaPath: '#', params: {}, message: 'the schema accepts nothing' } as ErrorObject];
    return fn;
  }
  if (typeof schema !== 'object' || schema === null) return undefined;
  const hit = compiled.get(schema);
  if (hit !== undefined) return hit ?? undefined;
  let fn: SchemaValidator | undefined;
  try {
    // Pipeline values are the operator's, small: every error is listed.
    const scope = new SchemaScope({ extension: label, file: label });
    fn = scope.compile(schema, '', { allErrors: true });
    scope.done();
  } catch {
    fn = undefined; // a schema the registry would have refused: the extension is not loaded anyway
  }
  compiled.set(schema, fn ?? null);
  return fn;
}

function isPrefix(prefix: string, pointer: string): boolean {
  return pointer === prefix || pointer.startsWith(prefix + '/');
}

function splitPointer(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** Keywords of an error at an object/array holding references that a placeholder in it cannot cause. */
const SHAPE_KEYWORDS = new Set(['required', 'additionalProperties', 'propertyNames', 'unevaluatedProperties', 'dependentRequired', 'type', 'minItems', 'maxItems', 'minProperties', 'maxProperties']);

/** The placeholder put where a reference goes while the literal rest of `with` is validated. */
function withPlaceholders(template: Json, refPointers: Set<string>, pointer = ''): Json {
  if (refPointers.has(pointer)) return null;
  if (Array.isArray(template)) return template.map((v, i) => withPlaceholders(v, refPointers, joinPointer(pointer, i)));
  if (typeof template === 'object' && template !== null) {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(template)) Object.defineProperty(out, k, { value: withPlaceholders(v, refPointers, joinPointer(pointer, k)), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return template;
}

interface Producer {
  schema: Json | undefined;
  /** Where the schema sits, for messages: `csv-ingest parse output #/properties/records`. */
  where: string;
}

interface Context {
  def: PipelineDefinition;
  catalog: StageCatalog;
  locate: Locate;
  byId: Map<string, StageDefinition>;
  out: PipelineIssue[];
}

function schemaWhere(label: string, path: string): string {
  return `${label} #${path}`;
}

/** What a whole-value reference produces, by declaration; undefined when this check cannot tell. */
function producerOf(expr: string, allowed: Upstream, ctx: Context, at: string): Producer | undefined {
  let selection: ReadonlyArray<string | number>;
  try {
    const compiledExpr = pipelineExpression(expr, at);
    if (!compiledExpr.isSelection) return undefined;
    selection = compiledExpr.selections[0]!;
  } catch {
    return undefined; // reported as BAD_EXPRESSION by the structural checks
  }
  const [root, first, second, ...rest] = selection;
  let schema: Json | undefined;
  let path = '';
  let label: string;
  let steps: Array<string | number>;
  if (root === 'stages') {
    if (typeof first !== 'string' || !allowed.has(first)) return undefined;
    if (second === undefined) return { schema: { type: 'object' }, where: `stages.${first}` };
    if (second === 'state') return rest.length === 0 ? { schema: { type: 'string', enum: STAGE_STATES }, where: `stages.${first}.state` } : undefined;
    if (second !== 'output') return undefined;
    const producer = ctx.byId.get(first)!;
    const decl = ctx.catalog.extension(producer.extension)?.stages[producer.stage];
    if (!decl) return undefined;
    schema = decl.output;
    label = `${producer.extension} ${producer.stage} output`;
    steps = rest;
  } else if (root === 'vars') {
    if (first === undefined) return { schema: ctx.def.variablesSchema, where: 'variables' };
    schema = ctx.def.variablesSchema;
    label = 'variables';
    steps = [first, ...(second === undefined ? [] : [second]), ...rest];
  } else if (root === 'run') {
    return first === 'id' || first === 'pipeline' ? { schema: { type: 'string' }, where: `run.${first}` } : undefined;
  } else {
    return undefined;
  }
  for (const step of steps) {
    const next = stepInto(schema, path, step);
    if ('absent' in next) {
      if (root === 'stages') {
        const known = (schema as { properties?: object } | undefined)?.properties;
        ctx.out.push(
          issue(
            'UNKNOWN_OUTPUT_FIELD',
            `\${{ ${expr} }}: ${schemaWhere(label, next.path)} ${next.absent}`,
            ctx.locate(at),
            didYouMean(String(step), known ? Object.keys(known) : [], 'reference a field the output schema declares (if the stage does return it, its manifest should declare it)'),
          ),
        );
      }
      return undefined; // vars: UNKNOWN_VARIABLE is the structural check's
    }
    schema = next.schema;
    path = next.path;
    if (schema === undefined) return undefined;
  }
  return { schema, where: schemaWhere(label, path) };
}

/** Literal `with` against the input schema, then every reference's type against the schema where it sits. */
function checkTemplate(template: Json, input: Json, base: string, consumerLabel: string, allowed: Upstream, ctx: Context): void {
  const broken: string[] = [];
  const refs = findReferences(template, (pointer) => broken.push(pointer));
  // Unterminated references are BAD_EXPRESSION already: not checked again as literal text.
  const refPointers = new Set([...refs.map((r) => r.pointer), ...broken]);
  const validate = validatorFor(input, consumerLabel);
  if (validate) {
    // A copy (validation fills in defaults): with no reference in it, a plain JSON copy of the literal `with`
    // (JSON.parse keeps a "__proto__" key as an own property, like withPlaceholders does).
    const value = refPointers.size === 0 ? (JSON.parse(JSON.stringify(template)) as Json) : withPlaceholders(template, refPointers);
    let ok: boolean;
    try {
      ok = validate(value);
    } catch (err) {
      if (!(err instanceof PlinthError)) throw err;
      ok = true; // SCHEMA_VALIDATION_LIMIT: too costly to check before the run; the stage checks it again
    }
    if (!ok) {
      const kept = (validate.errors ?? []).filter((e) => {
        const ip = e.instancePath;
        if ([...refPointers].some((r) => isPrefix(r, ip))) return false; // the reference's own value: typed below
        if ([...refPointers].some((r) => isPrefix(ip, r) && ip !== r)) return SHAPE_KEYWORDS.has(e.keyword);
        return true;
      });
      for (const p of toProblems(kept)) {
        const hint = p.hint ?? `the input schema of ${consumerLabel.replace(/ input$/, '')} is in its package.json (plinth.stages); \`plinth validate --json\` lists every problem`;
        ctx.out.push(issue('INPUT_INVALID', `with${p.path === '' ? '' : p.path}: ${p.message} (${consumerLabel})`, ctx.locate(base + p.path), hint));
      }
    }
  }
  const typed = new Set<string>();
  for (const ref of refs) {
    if (typed.has(ref.pointer)) continue;
    const consumer = schemaAt(input, '', splitPointer(ref.pointer));
    if (consumer.schema === undefined) continue;
    let producer: Producer | undefined;
    if (ref.whole) producer = producerOf(ref.expr, allowed, ctx, base + ref.pointer);
    else {
      typed.add(ref.pointer);
      producer = { schema: { type: 'string' }, where: 'text (a reference inside a longer string is interpolated as text)' };
    }
    if (!producer) continue;
    for (const m of compareSchemas(producer.schema, consumer.schema, '', consumer.path)) {
      const producerAt = producer.where.includes('#') ? `${producer.where.split(' #')[0]} #${producerPathJoin(producer.where, m.producerPath)}` : producer.where;
      ctx.out.push(
        issue(
          'TYPE_MISMATCH',
          `with${ref.pointer}: ${ref.whole ? `\${{ ${ref.expr} }}` : 'the interpolated text'} ${m.message} — produced per ${producerAt}, required per ${consumerLabel} #${m.consumerPath}`,
          ctx.locate(base + ref.pointer),
          'reference an output whose declared schema fits the input (e.g. the array field, not the whole object or a count), or change the stage',
        ),
      );
    }
  }
}

function producerPathJoin(where: string, inner: string): string {
  return `${where.split(' #')[1] ?? ''}${inner}`;
}

/**
 * The checks against the loaded extensions: unknown extension or stage (with did-you-mean), invalid literal
 * `with`, typed contracts, conditions that are not booleans, and — when `variables` are given — the variables
 * against their schemas. Structural issues (cycles, needs, references) come from parsing; they are not repeated.
 */
export function checkPipeline(def: PipelineDefinition, given: StageCatalog, variables?: Record<string, Json>): PipelineIssue[] {
  // One lookup per extension per check, not one per stage (a 1 000-stage DAG names the same few extensions).
  const seen = new Map<string, ReturnType<StageCatalog['extension']>>();
  const catalog: StageCatalog = {
    extension: (id) => {
      if (!seen.has(id)) seen.set(id, given.extension(id));
      return seen.get(id);
    },
    ids: () => given.ids(),
    ...(given.unavailable ? { unavailable: (id: string) => given.unavailable!(id) } : {}),
  };
  const ctx: Context = { def, catalog, locate: locatorOf(def), byId: new Map(def.stages.map((s) => [s.id, s])), out: [] };
  const upstream = upstreamFinder(def);
  const ids = catalog.ids();
  const declaration = (extension: string, stage: string, at: string) => {
    const ext = catalog.extension(extension);
    if (!ext) {
      const why = catalog.unavailable?.(extension);
      ctx.out.push(
        why
          ? issue('UNKNOWN_EXTENSION', `extension "${extension}" is installed but cannot be used: ${why}`, ctx.locate(`${at}/extension`), 'fix the extension (see `plinth ls`), or use another')
          : issue('UNKNOWN_EXTENSION', `no loaded extension is called "${extension}"`, ctx.locate(`${at}/extension`), didYouMean(extension, ids, ids.length === 0 ? 'no extensions are loaded: pass --plugins <dirs>' : undefined)),
      );
      return undefined;
    }
    const decl = ext.stages[stage];
    if (!decl) {
      const names = Object.keys(ext.stages);
      ctx.out.push(issue('UNKNOWN_STAGE', `extension ${extension} ${ext.version} has no stage "${stage}"`, ctx.locate(`${at}/stage`), didYouMean(stage, names, names.length === 0 ? `${extension} declares no stages` : undefined)));
    }
    return decl;
  };
  def.stages.forEach((s, i) => {
    const at = `/stages/${i}`;
    const allowed = upstream(s.id);
    const decl = declaration(s.extension, s.stage, at);
    if (decl) checkTemplate(s.with, decl.input, `${at}/with`, `${s.extension} ${s.stage} input`, allowed, ctx);
    if (s.if !== undefined) {
      const producer = producerOf(s.if, allowed, ctx, `${at}/if`);
      if (producer) {
        for (const m of compareSchemas(producer.schema, { type: 'boolean' }, '', '')) {
          ctx.out.push(issue('TYPE_MISMATCH', `condition \`${s.if}\` ${m.message} — a condition must be a boolean (produced per ${producer.where})`, ctx.locate(`${at}/if`), 'compare it, e.g. `stages.x.output.count > 0`, or use has(...)'));
        }
      }
    }
    if (s.compensate) {
      const cdecl = declaration(s.compensate.extension, s.compensate.stage, `${at}/compensate`);
      if (cdecl) checkTemplate(s.compensate.with, cdecl.input, `${at}/compensate/with`, `${s.compensate.extension} ${s.compensate.stage} input`, upstream(s.id, s.id), ctx);
    }
  });
  if (variables !== undefined) ctx.out.push(...variableIssues(def, variables).issues);
  return ctx.out;
}

/** Strings from the command line (`--var n=3`) as the declared type: number, integer, boolean, or JSON. */
function coerce(value: Json, schema: Json | undefined): Json {
  if (typeof value !== 'string' || typeof schema !== 'object' || schema === null || Array.isArray(schema)) return value;
  const type = (schema as { type?: unknown }).type;
  const types = typeof type === 'string' ? [type] : Array.isArray(type) ? type : [];
  if (types.length === 0 || types.includes('string')) return value;
  if ((types.includes('number') || types.includes('integer')) && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(value.trim())) return Number(value);
  if (types.includes('boolean') && (value === 'true' || value === 'false')) return value === 'true';
  if (types.includes('null') && value === 'null') return null;
  if (types.includes('object') || types.includes('array')) {
    try {
      return JSON.parse(value) as Json;
    } catch {
      return value;
    }
  }
  return value;
}

function variableIssues(def: PipelineDefinition, variables: Record<string, Json>): { values: Record<string, Json>; issues: PipelineIssue[] } {
  const locate = locatorOf(def);
  const schema = def.variablesSchema;
  if (schema === undefined) {
    const names = Object.keys(variables);
    return {
      values: { ...variables },
      issues: names.map((n) => issue('VARIABLES_INVALID', `variable "${n}" is given, but the pipeline declares no variables`, locate(''), 'declare it under variables: with a JSON Schema, or do not pass it')),
    };
  }
  const props: Record<string, Json> = (schema as { properties?: Record<string, Json> }).properties ?? {};
  const values: Record<string, Json> = {};
  for (const [k, v] of Object.entries(variables)) Object.defineProperty(values, k, { value: coerce(v, props[k]), enumerable: true, writable: true, configurable: true });
  const validate = validatorFor(schema, `pipeline ${def.name} variables`);
  if (!validate) return { values, issues: [] }; // its own schema is invalid: reported by the structural checks
  let ok: boolean;
  try {
    ok = validate(values);
  } catch (err) {
    if (!(err instanceof PlinthError)) throw err;
    return { values, issues: [issue('VARIABLES_INVALID', err.message, locate('/variables'), err.hint)] };
  }
  if (ok) return { values, issues: [] };
  const declared = Object.keys(props);
  return {
    values,
    issues: toProblems(validate.errors).map((p) => {
      const name = splitPointer(p.path)[0];
      if (name !== undefined && !declared.includes(name)) {
        return issue('VARIABLES_INVALID', `variable "${name}" is not declared by the pipeline`, locate('/variables'), didYouMean(name, declared));
      }
      const where = name === undefined ? '/variables' : joinPointer('/variables', name);
      const given = name !== undefined && Object.hasOwn(values, name) ? ` (given: ${JSON.stringify(values[name])})` : '';
      return issue('VARIABLES_INVALID', `variable ${p.path.slice(1) || '(all)'}: ${p.message}${given}`, locate(where), p.hint ?? `give a value that matches the schema at ${where} (e.g. --var ${name ?? 'name'}=…)`);
    }),
  };
}

/**
 * The run's variables with the schema's defaults filled in (and command-line strings converted to the declared
 * type). Throws PLINTH_ERR_PIPELINE_INVALID (with `issues`) when they do not match.
 */
export function applyVariableDefaults(def: PipelineDefinition, vars: Record<string, Json>): Record<string, Json> {
  const { values, issues } = variableIssues(def, vars);
  if (issues.length > 0) throw new PipelineInvalidError(issues, def.file, def.name);
  return values;
}
