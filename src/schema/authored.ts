// Schemas written by extension authors (stage input/output, configSchema) are untrusted input: ajv treats
// schemas as trusted as application code (its "Untrusted schemas" security notes), so this module fences them.
//
// 1. Scope. Each extension package gets an ajv instance of its own (`SchemaScope`), referenced only by the
//    validators it compiled: dropping the package drops the scope, so a `$id` can be compiled again on every
//    rescan, the cache never outlives the package, and one package's `$id` can never shadow another's.
// 2. Compile-time limits, refused with PLINTH_ERR_STAGE_SCHEMA_INVALID naming the path and the limit: schema size
//    (`maxNodes`, all of a package's schemas together; ajv's compile time grows with it), nesting depth
//    (`maxDepth`; ajv's compiler recurses), pattern length (`maxPatternLength`), every pattern in RE2 syntax (no
//    lookaround, no backreferences), no format `url`, and no `$ref` into data or at a map (see refIntoData).
// 3. Linear-time building blocks: `pattern`/`patternProperties` run on re2js (ajv's `code.regExp`), regex formats
//    on re2js too, `uniqueItems` hashes a canonical form of each item instead of comparing every pair, and
//    `inlineRefs` is off so generated code stays linear in the schema's size.
// 4. A work budget. Every subschema carries a precomputed cost (the COST keyword, written only by annotate());
//    each time ajv evaluates it the cost is charged to the scope's meter: a fixed part (its own keywords,
//    enum/const/required sizes) plus what it scans of the value (characters × the pattern/format weight, keys,
//    items). One validation may spend `maxValidationCost` units; past that it stops with
//    PLINTH_ERR_SCHEMA_VALIDATION_LIMIT. A unit is one cheap step (a keyword check, one character through a small
//    automaton, one key or item visited).
//
// The bound: one validation holds the event loop for at most `maxValidationCost` units of work plus one step's
// scan of the value (the step that crosses the budget), whatever the schema — `$ref` fan-out, recursion, wide
// `anyOf`, long strings under many patterns all run into the same meter. With the default 5e7 units a
// budget-exhausting validation measured 35–320 ms on the shared, loaded 2-core machine (bench/schemas.bench.ts). Stage
// values are checked to the first error: with allErrors, every failing item of a large array would allocate an
// error object the meter does not see.
import { Ajv2020, _, type AnySchema, type CodeKeywordDefinition, type ErrorObject, type FuncKeywordDefinition, type KeywordCxt, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { fullFormats } from 'ajv-formats/dist/formats.js';
import { RE2JS } from 're2js';
import semver from 'semver';
import { PlinthError, type Problem } from '../errors.ts';

const addFormats = addFormatsModule.default;

/** Operator-tunable bounds on extension schemas: host config `extensionSchemas.*`. */
export interface SchemaLimits {
  /** JSON values (objects, arrays, strings, numbers…) in all of one package's schemas together. */
  maxNodes: number;
  /** Nesting of objects/arrays inside one schema. */
  maxDepth: number;
  /** Characters of one `pattern` or `patternProperties` key. */
  maxPatternLength: number;
  /** Patterns (`pattern`, `patternProperties` keys) in all of one package's schemas: each is an RE2 program to compile. */
  maxPatterns: number;
  /** Units of work one validation may spend (see the header comment). */
  maxValidationCost: number;
}

/** Defaults, also declared in schemas/host-config.schema.json (`extensionSchemas`). */
export const DEFAULT_SCHEMA_LIMITS: Readonly<SchemaLimits> = Object.freeze({
  maxNodes: 2_000,
  maxDepth: 64,
  maxPatternLength: 1_000,
  maxPatterns: 200,
  maxValidationCost: 50_000_000,
});

const CONFIG_KEY: Record<keyof SchemaLimits, string> = {
  maxNodes: 'extensionSchemas.maxNodes',
  maxDepth: 'extensionSchemas.maxDepth',
  maxPatternLength: 'extensionSchemas.maxPatternLength',
  maxPatterns: 'extensionSchemas.maxPatterns',
  maxValidationCost: 'extensionSchemas.maxValidationCost',
};

/** What a compiled authored schema offers: call it, then read `errors`. Throws only SCHEMA_VALIDATION_LIMIT. */
export interface SchemaValidator {
  (data: unknown): boolean;
  errors: ErrorObject[] | null | undefined;
  /** Units of work the last validation spent (the budget is `maxValidationCost`). */
  lastCost: number;
}

// --- Linear-time regular expressions --------------------------------------------------------------------

function compileRe2(pattern: string, flags = ''): RE2JS {
  let f = 0;
  if (flags.includes('i')) f |= RE2JS.CASE_INSENSITIVE;
  if (flags.includes('m')) f |= RE2JS.MULTILINE;
  if (flags.includes('s')) f |= RE2JS.DOTALL;
  // translateRegExp maps ECMAScript-only spellings (named groups `(?<n>`, `\/`, `\u{…}`) to RE2 syntax.
  return RE2JS.compile(RE2JS.translateRegExp(pattern), f);
}

/**
 * ajv's `code.regExp`, one per scope: ajv compiles `pattern`/`patternProperties` through this instead of
 * `new RegExp`, reusing the programs annotate() already compiled (an RE2 compile costs ≈ 0.1–1 ms).
 */
function re2Engine(compiled: Map<string, RE2JS>) {
  return Object.assign((pattern: string) => compiled.get(pattern) ?? compileRe2(pattern), { code: 'plinth re2js' });
}

// Ajv's regex formats, on re2js. A format whose regex RE2 cannot express is kept only if it is not a regex
// (date/time parsers, measured linear); `url` (backtracking, quadratic: 0.45 s on 20 000 characters) is left out,
// so a schema using it is refused as an unknown format.
type FormatDef = Parameters<Ajv2020['addFormat']>[1];
const LINEAR_FORMATS: Record<string, { def: FormatDef; cost: StringCost }> = {};
for (const [name, def] of Object.entries(fullFormats)) {
  if (name === 'url') continue;
  const regex = def instanceof RegExp ? def : typeof def === 'object' && 'validate' in def && def.validate instanceof RegExp ? def.validate : undefined;
  if (!regex) {
    LINEAR_FORMATS[name] = { def: def, cost: { fixed: 100, perChar: 2 } };
    continue;
  }
  let re2: RE2JS | undefined;
  try {
    re2 = compileRe2(regex.source, regex.flags);
  } catch {
    re2 = undefined;
  }
  if (re2) {
    const engine = re2;
    const validate = (s: string) => engine.test(s);
    LINEAR_FORMATS[name] = { def: typeof def === 'object' && !(def instanceof RegExp) ? { ...def, validate } as FormatDef : validate, cost: patternCost(engine) };
  } else {
    // RE2 refuses its lookaheads; these few (duration, hostname) were measured linear and stay on RegExp.
    LINEAR_FORMATS[name] = { def: def, cost: { fixed: 10, perChar: 3 } };
  }
}
LINEAR_FORMATS.semver = { def: { type: 'string', validate: (v: string) => semver.valid(v) !== null }, cost: { fixed: 20, perChar: 2 } };
LINEAR_FORMATS['semver-range'] = { def: { type: 'string', validate: (v: string) => semver.validRange(v) !== null }, cost: { fixed: 50, perChar: 8 } };

/** What checking one string costs: a fixed part per check and a part per character. */
interface StringCost {
  fixed: number;
  perChar: number;
}

/**
 * Running an RE2 program (re2js, measured): about a microsecond per call whatever the input (≈100 units) and a
 * few units per character, more for a larger program (the NFA steps through its instructions).
 */
function patternCost(re: RE2JS): StringCost {
  return { fixed: 100, perChar: 6 + Math.ceil(re.programSize() / 8) };
}

// --- Metering --------------------------------------------------------------------------------------------

const COST = 'x-plinth-cost';

/** The precomputed cost of evaluating one subschema: a fixed part and per-unit weights of the value's size. */
interface Cost {
  /** Fixed units (a few + sizes of its enum/const/required/properties lists). */
  b: number;
  /** When the value is a string (pattern/format/length keywords): fixed units, and units per character. */
  sb: number;
  s: number;
  /** Units per key when the value is an object and a keyword walks its keys; `kc` per key character. */
  k: number;
  kc: number;
  /** Units per item when the value is an array and a keyword walks its items. */
  a: number;
}

class Meter {
  used = 0;
  max: number;
  constructor(max: number) {
    this.max = max;
  }
}

/** Thrown inside a validation that ran out of budget; turned into a PlinthError by the validator wrapper. */
class BudgetExceeded extends Error {}

function charge(meter: Meter, units: number): void {
  meter.used += units;
  if (meter.used > meter.max) throw new BudgetExceeded();
}

/** The metering keyword: inline code, so the per-step price is a few additions. */
function meterKeyword(meter: Meter): CodeKeywordDefinition {
  return {
    keyword: COST,
    schemaType: 'object',
    code(cxt: KeywordCxt) {
      const { gen, data } = cxt;
      const cost = cxt.schema as Cost;
      // Only annotate() writes this keyword (it drops an author's own); still, never emit a cost that is not a
      // plain non-negative number.
      for (const v of [cost.b, cost.sb, cost.s, cost.k, cost.kc, cost.a]) {
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${COST} is reserved for the host`);
      }
      const m = gen.scopeValue('keyword', { ref: meter });
      const chargeFn = gen.scopeValue('keyword', { ref: charge });
      let units = _`${cost.b}`;
      if (cost.s > 0 || cost.sb > 0) units = _`${units} + (typeof ${data} == "string" ? ${cost.sb} + ${data}.length * ${cost.s} : 0)`;
      if (cost.a > 0) units = _`${units} + (Array.isArray(${data}) ? ${data}.length * ${cost.a} : 0)`;
      gen.code(_`${chargeFn}(${m}, ${units})`);
      if (cost.k > 0 || cost.kc > 0) {
        gen.if(_`${data} && typeof ${data} == "object" && !Array.isArray(${data})`, () => {
          gen.forIn('plinthKey', data, (key) => gen.code(_`${chargeFn}(${m}, ${cost.k} + ${key}.length * ${cost.kc})`));
        });
      }
    },
  };
}

/**
 * uniqueItems in linear time: a canonical JSON form of each item (object keys sorted, so key order does not
 * matter, as in ajv's deep equality) goes into a Map. Charged per value visited and per character produced.
 */
function uniqueItemsKeyword(meter: Meter): FuncKeywordDefinition {
  // Units per value visited and per character produced (calibrated with bench/schemas.bench.ts).
  const canonical = (v: unknown): string => {
    if (typeof v !== 'object' || v === null) {
      charge(meter, 80);
      return JSON.stringify(v) ?? 'null';
    }
    charge(meter, 400);
    let out: string;
    if (Array.isArray(v)) {
      out = '[';
      for (let i = 0; i < v.length; i++) out += (i > 0 ? ',' : '') + canonical(v[i]);
      return out + ']';
    }
    const keys = Object.keys(v);
    if (keys.length > 1) keys.sort();
    out = '{';
    for (let i = 0; i < keys.length; i++) out += (i > 0 ? ',' : '') + JSON.stringify(keys[i]) + ':' + canonical((v as Record<string, unknown>)[keys[i]!]);
    return out + '}';
  };
  const validate = (schema: boolean, data: unknown[]): boolean => {
    if (!schema || data.length < 2) return true;
    const seen = new Map<string, number>();
    for (let i = 0; i < data.length; i++) {
      const key = canonical(data[i]);
      charge(meter, 2 * key.length);
      const j = seen.get(key);
      if (j !== undefined) {
        validate.errors = [{ keyword: 'uniqueItems', instancePath: '', schemaPath: '#/uniqueItems', params: { i, j }, message: `must NOT have duplicate items (items ## ${j} and ${i} are identical)` }];
        return false;
      }
      seen.set(key, i);
    }
    return true;
  };
  validate.errors = null as ErrorObject[] | null;
  return { keyword: 'uniqueItems', type: 'array', schemaType: 'boolean', errors: true, validate: validate as FuncKeywordDefinition['validate'] };
}

// --- Walking a schema: limits, pattern checks, cost annotation --------------------------------------------

const SUBSCHEMA = ['additionalProperties', 'propertyNames', 'items', 'contains', 'not', 'if', 'then', 'else', 'unevaluatedItems', 'unevaluatedProperties', 'contentSchema', 'additionalItems'];
const SUBSCHEMA_LIST = ['allOf', 'anyOf', 'oneOf', 'prefixItems'];
const SUBSCHEMA_MAP = ['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'];
/** Keywords whose value is data or a list of names, never a schema: a `$ref` may not point into them. */
const NOT_SCHEMA = new Set(['enum', 'const', 'default', 'examples', 'required', 'dependentRequired', '$vocabulary', 'type']);
const KEY_WALKERS = ['patternProperties', 'additionalProperties', 'unevaluatedProperties', 'propertyNames', 'minProperties', 'maxProperties', 'dependentSchemas', 'dependentRequired'];
const ITEM_WALKERS = ['items', 'prefixItems', 'contains', 'unevaluatedItems', 'additionalItems', 'minContains', 'maxContains'];

/** Sets an own property even for names like `__proto__`, which plain assignment would turn into a prototype. */
function put(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Counts JSON values, failing past `maxDepth` (so it never recurses deeper than the limit). */
function sizeOf(value: unknown, depth: number, limits: SchemaLimits, at: string, problems: Problem[]): number {
  if (depth > limits.maxDepth) {
    problems.push({ path: at, message: `nests deeper than ${limits.maxDepth} levels (limit ${CONFIG_KEY.maxDepth})`, hint: `flatten the schema (e.g. with $defs and $ref), or raise ${CONFIG_KEY.maxDepth} in the host config` });
    return Infinity;
  }
  if (typeof value !== 'object' || value === null) return 1;
  let n = 1;
  for (const [k, v] of Object.entries(value)) {
    n += sizeOf(v, depth + 1, limits, `${at}/${escapePointer(k)}`, problems);
    if (n === Infinity) return n;
  }
  return n;
}

interface WalkContext {
  limits: SchemaLimits;
  problems: Problem[];
  /** Patterns compiled so far in this package's scope (counted against maxPatterns, reused by ajv). */
  patterns: Map<string, RE2JS>;
  /** Whether maxPatterns was already reported for this package (once is enough). */
  overPatterns: { reported: boolean };
}

function checkPattern(pattern: string, at: string, cx: WalkContext): RE2JS | undefined {
  if (pattern.length > cx.limits.maxPatternLength) {
    cx.problems.push({ path: at, message: `pattern is ${pattern.length} characters; the limit is ${cx.limits.maxPatternLength} (${CONFIG_KEY.maxPatternLength})`, hint: `shorten it, or raise ${CONFIG_KEY.maxPatternLength} in the host config` });
    return undefined;
  }
  const known = cx.patterns.get(pattern);
  if (known) return known;
  if (cx.patterns.size >= cx.limits.maxPatterns) {
    if (cx.overPatterns.reported) return undefined;
    cx.overPatterns.reported = true;
    cx.problems.push({ path: at, message: `is pattern number ${cx.patterns.size + 1} of this package; the limit is ${cx.limits.maxPatterns} (${CONFIG_KEY.maxPatterns})`, hint: `use fewer patterns, or raise ${CONFIG_KEY.maxPatterns} in the host config` });
    return undefined;
  }
  try {
    const re = compileRe2(pattern);
    cx.patterns.set(pattern, re);
    return re;
  } catch (err) {
    cx.problems.push({ path: at, message: `pattern ${JSON.stringify(pattern)} is not supported by the host's linear-time regex engine: ${(err as Error).message}`, hint: 'use RE2 syntax: no lookahead/lookbehind and no backreferences (https://github.com/google/re2/wiki/Syntax)' });
    return undefined;
  }
}

/**
 * Where a `$ref`'s JSON-pointer fragment lands, walked the way ajv resolves it (split on "/", then percent- and
 * ~-decoded): the name of the data keyword or map it points into, or undefined when it lands on a schema.
 */
function refIntoData(ref: string): string | undefined {
  const hash = ref.indexOf('#');
  const fragment = hash < 0 ? '' : ref.slice(hash + 1);
  if (!fragment.startsWith('/')) return undefined; // the whole resource, or a named $anchor: both schemas
  let state: 'schema' | 'member' = 'schema';
  let last = '';
  for (const raw of fragment.slice(1).split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      return 'a malformed pointer';
    }
    if (state === 'member') {
      state = 'schema'; // a name in a map or an index in a list: a schema again
      continue;
    }
    if (NOT_SCHEMA.has(seg)) return `"${seg}"`;
    last = seg;
    // After a map or list keyword comes a member name; after an unknown keyword either a keyword or an index.
    state = SUBSCHEMA_MAP.includes(seg) || SUBSCHEMA_LIST.includes(seg) ? 'member' : 'schema';
  }
  return state === 'member' ? `the "${last}" map itself` : undefined;
}

/**
 * A copy of `schema` with a COST annotation on every subschema; problems found are pushed to `cx`. Objects
 * under unknown keywords are annotated too (`lenient`: no problems reported there), because a `$ref` may make
 * ajv compile them; a `$ref` into data (`enum`, `const`, `default`…) or into a map is refused, so every object
 * ajv can ever compile as a schema carries a cost the author did not choose.
 */
function annotate(schema: unknown, at: string, cx: WalkContext, lenient = false): unknown {
  if (Array.isArray(schema)) return lenient ? schema.map((s, i) => annotate(s, `${at}/${i}`, cx, true)) : schema;
  if (typeof schema !== 'object' || schema === null) return schema;
  const src = schema as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) if (k !== COST) put(out, k, v);
  // Units are calibrated on ajv's cheapest step (one keyword check ≈ one character scanned ≈ 5 ns).
  const cost: Cost = { b: 2, sb: 0, s: 0, k: 0, kc: 0, a: 0 };
  const addString = (c: StringCost) => {
    cost.sb += c.fixed;
    cost.s += c.perChar;
  };
  if (typeof src.$ref === 'string' || typeof src.$dynamicRef === 'string') cost.b += 4; // a function call each
  const size = (v: unknown) => (Array.isArray(v) ? v.length : 0);
  const nodes = (v: unknown): number => (typeof v === 'object' && v !== null ? 1 + Object.values(v).reduce<number>((n, x) => n + nodes(x), 0) : 1);

  if ('enum' in src) cost.b += 5 * nodes(src.enum); // a deep-equality call per member
  if ('const' in src) cost.b += nodes(src.const);
  cost.b += size(src.required);
  if (typeof src.properties === 'object' && src.properties !== null) cost.b += Object.keys(src.properties).length;
  if (typeof src.dependentRequired === 'object' && src.dependentRequired !== null) cost.b += nodes(src.dependentRequired);

  const report = lenient ? { ...cx, problems: [] } : cx;
  for (const key of ['$ref', '$dynamicRef'] as const) {
    const ref = src[key];
    const into = typeof ref === 'string' ? refIntoData(ref) : undefined;
    if (into !== undefined) cx.problems.push({ path: `${at}/${key}`, message: `${JSON.stringify(ref)} points into ${into}, not at a schema`, hint: 'point $ref at a schema, e.g. one under $defs' });
  }
  if (typeof src.pattern === 'string') {
    const re = checkPattern(src.pattern, `${at}/pattern`, report);
    if (re) addString(patternCost(re));
  }
  if (typeof src.format === 'string') {
    if (src.format === 'url') {
      report.problems.push({ path: `${at}/format`, message: 'format "url" is not available to extension schemas: its check takes time quadratic in the string length', hint: 'use "uri" (RFC 3986), checked in linear time' });
    }
    // An unknown format is an annotation only (JSON Schema 2020-12 §7.2): nothing runs for it.
    const f = LINEAR_FORMATS[src.format];
    if (f) addString(f.cost);
  }
  if ('minLength' in src || 'maxLength' in src) addString({ fixed: 1, perChar: 2 }); // counts code points

  // Enumerating a large object's keys is slow in V8 (dictionary-mode objects: ≈ 0.5–1 µs a key, measured).
  if (KEY_WALKERS.some((k) => k in src)) cost.k += 100;
  if (typeof src.patternProperties === 'object' && src.patternProperties !== null) {
    for (const p of Object.keys(src.patternProperties)) {
      const re = checkPattern(p, `${at}/patternProperties/${escapePointer(p)}`, report);
      if (re) {
        const c = patternCost(re);
        cost.k += c.fixed;
        cost.kc += c.perChar;
      }
    }
  }
  if (ITEM_WALKERS.some((k) => k in src)) cost.a += 1;
  if (src.uniqueItems === true) cost.a += 1; // plus the canonical form's length, charged as it is built

  for (const [k, v] of Object.entries(src)) {
    if (k === COST || NOT_SCHEMA.has(k) || typeof v !== 'object' || v === null) continue;
    const here = `${at}/${escapePointer(k)}`;
    if (SUBSCHEMA.includes(k)) put(out, k, annotate(v, here, cx, lenient));
    else if (SUBSCHEMA_LIST.includes(k) && Array.isArray(v)) put(out, k, v.map((s, i) => annotate(s, `${here}/${i}`, cx, lenient)));
    else if (SUBSCHEMA_MAP.includes(k) && !Array.isArray(v)) {
      const copy: Record<string, unknown> = {};
      for (const [name, s] of Object.entries(v)) put(copy, name, annotate(s, `${here}/${escapePointer(name)}`, cx, lenient));
      put(out, k, copy);
    } else put(out, k, annotate(v, here, cx, true)); // an unknown keyword: ajv ignores it unless a $ref points there
  }
  out[COST] = cost;
  return out;
}

// --- The scope -------------------------------------------------------------------------------------------

/** Validates authors' schemas against the 2020-12 meta-schema; it only validates, never keeps a schema. */
const metaAjv = addFormats(new Ajv2020({ allErrors: true, strict: false }));
for (const [name, f] of Object.entries(LINEAR_FORMATS)) metaAjv.addFormat(name, f.def);

export interface ScopeLabel {
  extension: string;
  file: string;
}

/**
 * One extension package's schemas. Compile each declared schema with `compile`, then call `done()`, which
 * throws PLINTH_ERR_STAGE_SCHEMA_INVALID listing every problem (with its path) if any schema was refused.
 */
export class SchemaScope {
  readonly #meter: Meter;
  readonly #limits: SchemaLimits;
  readonly #label: ScopeLabel;
  readonly #problems: Problem[] = [];
  #firstError: Ajv2020 | undefined;
  #allErrors: Ajv2020 | undefined;
  #nodes = 0;
  #overSize = false;
  readonly #patterns = new Map<string, RE2JS>();
  readonly #overPatterns = { reported: false };
  readonly #idsFirst = new Map<string, { text: string; fn: ValidateFunction; at: string }>();
  readonly #idsAll = new Map<string, { text: string; fn: ValidateFunction; at: string }>();

  constructor(label: ScopeLabel, limits: SchemaLimits = DEFAULT_SCHEMA_LIMITS) {
    this.#label = label;
    this.#limits = limits;
    this.#meter = new Meter(limits.maxValidationCost);
  }

  /**
   * The scope's ajv. Values crossing a stage (attacker-sized) stop at the first error: with `allErrors` every
   * failing item of a large array would allocate an error object the meter does not see. The operator's own
   * config is small, so its check lists every problem.
   */
  #ajv(allErrors: boolean): Ajv2020 {
    const existing = allErrors ? this.#allErrors : this.#firstError;
    if (existing) return existing;
    // inlineRefs off: a referenced schema is one function called from each use, so code size stays linear in
    // the schema's size however often a $ref repeats it. strictSchema off (authors annotate).
    const ajv = new Ajv2020({
      allErrors,
      strictSchema: false,
      strictTypes: false,
      strictTuples: false,
      strictRequired: false,
      validateFormats: true,
      useDefaults: true,
      inlineRefs: false,
      validateSchema: false,
      // No meta-schemas in the scope: a $ref to one would run a schema the meter does not annotate.
      meta: false,
      addUsedSchema: true,
      logger: false,
      // optimize off: ajv's optimisation passes cost more than they save on code that runs a few times.
      code: { regExp: re2Engine(this.#patterns), optimize: false },
    });
    for (const [name, f] of Object.entries(LINEAR_FORMATS)) ajv.addFormat(name, f.def);
    ajv.removeKeyword('uniqueItems');
    ajv.addKeyword(uniqueItemsKeyword(this.#meter));
    ajv.addKeyword(meterKeyword(this.#meter));
    if (allErrors) this.#allErrors = ajv;
    else this.#firstError = ajv;
    return ajv;
  }

  /** Compiles the schema found at JSON pointer `at` of package.json; undefined (and a problem noted) if refused. */
  compile(schema: unknown, at: string, options: { allErrors?: boolean } = {}): SchemaValidator | undefined {
    const before = this.#problems.length;
    const refuse = (message: string, hint?: string): undefined => {
      this.#problems.push({ path: at, message, ...(hint ? { hint } : {}) });
      return undefined;
    };
    if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema))) {
      return refuse('is not a valid JSON Schema: a schema must be an object or a boolean');
    }
    // Size and depth first: the meta-schema check and ajv's compiler both recurse over the schema.
    const size = sizeOf(schema, 0, this.#limits, at, this.#problems);
    if (size === Infinity) return undefined;
    this.#nodes += size;
    if (this.#nodes > this.#limits.maxNodes) {
      // Reported once, at the schema that crossed the limit; the package is refused anyway.
      if (this.#overSize) return undefined;
      this.#overSize = true;
      return refuse(
        `makes this package's schemas ${this.#nodes} JSON values in all; the limit is ${this.#limits.maxNodes} (${CONFIG_KEY.maxNodes})`,
        `simplify the schemas, or raise ${CONFIG_KEY.maxNodes} in the host config`,
      );
    }
    if (!metaAjv.validateSchema(schema)) {
      return refuse(`is not a valid JSON Schema: ${metaAjv.errorsText(metaAjv.errors, { dataVar: 'schema' })}`);
    }
    const annotated = annotate(schema, at, { limits: this.#limits, problems: this.#problems, patterns: this.#patterns, overPatterns: this.#overPatterns });
    if (this.#problems.length > before) return undefined;
    // The same $id declared twice in one package (e.g. one schema copied into a stage's input and output) is
    // one schema if the copies are equal; ajv would refuse the second as "already exists".
    const id = typeof schema === 'object' && typeof (schema as { $id?: unknown }).$id === 'string' ? (schema as { $id: string }).$id : undefined;
    const ids = options.allErrors === true ? this.#idsAll : this.#idsFirst;
    const text = id === undefined ? '' : JSON.stringify(schema);
    const earlier = id === undefined ? undefined : ids.get(id);
    if (earlier) {
      if (earlier.text === text) return this.#wrap(earlier.fn, at);
      return refuse(`declares $id ${JSON.stringify(id)}, already declared by ${earlier.at} with a different schema`, `give one of them another $id, or $ref the one at ${earlier.at}`);
    }
    let fn: ValidateFunction;
    try {
      fn = this.#ajv(options.allErrors === true).compile(annotated as AnySchema);
    } catch (err) {
      return refuse(`is not a valid JSON Schema: ${(err as Error).message}`);
    }
    if (id !== undefined) ids.set(id, { text, fn, at });
    return this.#wrap(fn, at);
  }

  /** Throws PLINTH_ERR_STAGE_SCHEMA_INVALID with every problem noted by `compile`, if any. */
  done(): void {
    if (this.#problems.length === 0) return;
    throw new PlinthError('PLINTH_ERR_STAGE_SCHEMA_INVALID', `extension ${this.#label.extension} (${this.#label.file}): ${this.#problems.length} problem(s) in its declared schemas`, {
      extension: this.#label.extension,
      file: this.#label.file,
      problems: [...this.#problems],
      hint: 'each stage input/output and configSchema must be a JSON Schema (2020-12) within the host limits for extension schemas',
    });
  }

  #wrap(fn: ValidateFunction, at: string): SchemaValidator {
    const meter = this.#meter;
    const label = this.#label;
    const max = this.#limits.maxValidationCost;
    const validator = ((data: unknown): boolean => {
      meter.used = 0;
      try {
        const ok = fn(data);
        validator.errors = fn.errors;
        return ok;
      } catch (err) {
        // Both end the validation: the value is refused, never half-checked.
        if (err instanceof BudgetExceeded) {
          throw new PlinthError('PLINTH_ERR_SCHEMA_VALIDATION_LIMIT', `extension ${label.extension}: validating a value against ${at} needed more than ${max} units of work (limit ${CONFIG_KEY.maxValidationCost}); the value was refused`, {
            extension: label.extension,
            file: label.file,
            hint: `send a smaller value, simplify the schema, or raise ${CONFIG_KEY.maxValidationCost} in the host config`,
          });
        }
        if (err instanceof RangeError) {
          throw new PlinthError('PLINTH_ERR_SCHEMA_VALIDATION_LIMIT', `extension ${label.extension}: a value validated against ${at} is nested too deeply to check (${err.message}); the value was refused`, {
            extension: label.extension,
            file: label.file,
            hint: 'send a less deeply nested value',
          });
        }
        throw err;
      } finally {
        validator.lastCost = meter.used;
        meter.used = 0;
      }
    }) as SchemaValidator;
    validator.errors = null;
    validator.lastCost = 0;
    return validator;
  }
}

/**
 * Compiles one author's schema in a scope of its own (for callers outside a package, e.g. tools and tests);
 * throws PLINTH_ERR_STAGE_SCHEMA_INVALID if it is refused.
 */
export function compileAuthoredSchema(schema: unknown, label: ScopeLabel = { extension: '(schema)', file: '(schema)' }, limits?: SchemaLimits): SchemaValidator {
  const scope = new SchemaScope(label, limits);
  const validator = scope.compile(schema, '');
  scope.done();
  return validator!;
}
