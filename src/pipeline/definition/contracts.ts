// Typed contracts: can what a reference produces (the producer's declared output schema, navigated along the
// reference) be accepted where it is put (the consumer's input schema at that spot)? Both are JSON Schemas written
// by extension authors, so this is a conservative comparison, not a full subschema decision (undecidable in
// general). The rule: refuse only when the declarations conflict; when either side says nothing, or says it in a
// form this check does not read, accept — the stage's own input validation still runs at run time.
//
// What is compared (docs/pipelines.md "Typed contracts"):
//   - type: refused when no produced type is accepted (integer is a number; a number may be an integer);
//   - const/enum: every value the producer may give must be allowed by a consumer enum/const; a consumer enum
//     none of whose values has a produced type is refused; a plain `string` feeding an enum is accepted;
//   - required: a property the consumer requires must be required by the producer's object schema when the
//     producer declares it (optional there → refused), and must not be ruled out (additionalProperties: false);
//   - properties, additionalProperties (schema), items: compared recursively where both sides declare them;
//   - a property the producer always has, where the consumer allows no such property, is refused.
// Not compared (accepted): $ref, anyOf/oneOf/allOf/not/if, prefixItems, patternProperties, formats, patterns,
// numeric and length bounds. Keywords beside them are still compared, since JSON Schema keywords all apply.
import { isDeepStrictEqual } from 'node:util';
import type { Json } from '../../sdk/index.ts';
import { joinPointer } from './source.ts';

export interface Mismatch {
  /** JSON Pointer into the producer's schema, and into the consumer's. */
  producerPath: string;
  consumerPath: string;
  message: string;
}

type Schema = Json | undefined;
type JsonType = 'null' | 'boolean' | 'integer' | 'number' | 'string' | 'array' | 'object';
const ALL_TYPES: JsonType[] = ['null', 'boolean', 'integer', 'number', 'string', 'array', 'object'];

function obj(s: Schema): Record<string, Json> | undefined {
  return typeof s === 'object' && s !== null && !Array.isArray(s) ? s : undefined;
}

function typeOfValue(v: Json): JsonType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v as 'boolean' | 'string' | 'object';
}

/** The literal values a schema allows, when it lists them (const/enum). */
export function valuesOf(s: Schema): Json[] | undefined {
  const o = obj(s);
  if (!o) return undefined;
  if (Object.hasOwn(o, 'const')) return [o.const!];
  return Array.isArray(o.enum) ? o.enum : undefined;
}

/** The JSON types a schema allows, when it says (from `type`, else from const/enum values); undefined: any. */
export function typesOf(s: Schema): Set<JsonType> | undefined {
  const o = obj(s);
  if (!o) return undefined;
  let types: Set<JsonType> | undefined;
  if (typeof o.type === 'string') types = new Set([o.type as JsonType]);
  else if (Array.isArray(o.type)) types = new Set(o.type.filter((t): t is JsonType => typeof t === 'string' && ALL_TYPES.includes(t as JsonType)));
  const values = valuesOf(o);
  if (values) {
    const fromValues = new Set(values.map(typeOfValue));
    types = types ? new Set([...types].filter((t) => fromValues.has(t) || (t === 'number' && fromValues.has('integer')))) : fromValues;
  }
  return types;
}

function typeAccepted(produced: JsonType, accepted: Set<JsonType>): boolean {
  return accepted.has(produced) || (produced === 'integer' && accepted.has('number')) || (produced === 'number' && accepted.has('integer'));
}

function mayBe(types: Set<JsonType> | undefined, t: JsonType): boolean {
  return types === undefined || typeAccepted(t, types);
}

export function describeTypes(types: Set<JsonType> | undefined): string {
  return types === undefined ? 'any type' : types.size === 0 ? 'nothing' : [...types].join(' or ');
}

function valueAllowed(v: Json, values: Json[]): boolean {
  return values.some((a) => isDeepStrictEqual(a, v));
}

/**
 * Mismatches between a producer schema and the consumer schema it feeds (empty: compatible, or undecidable).
 * `producerPath`/`consumerPath` are where the two schemas sit (JSON Pointers into the manifests' schemas).
 */
export function compareSchemas(producer: Schema, consumer: Schema, producerPath: string, consumerPath: string, depth = 0): Mismatch[] {
  const out: Mismatch[] = [];
  const add = (pp: string, cp: string, message: string) => out.push({ producerPath: pp, consumerPath: cp, message });
  if (depth > 32 || producer === undefined || consumer === undefined || consumer === true || producer === false) return out;
  if (consumer === false) {
    add(producerPath, consumerPath, 'the input schema accepts nothing here');
    return out;
  }
  const p = obj(producer);
  const c = obj(consumer);
  if (!p || !c) return out;

  const pTypes = typesOf(p);
  const cTypes = typesOf(c);
  if (pTypes && cTypes && pTypes.size > 0 && ![...pTypes].some((t) => typeAccepted(t, cTypes))) {
    add(producerPath, consumerPath, `is ${describeTypes(pTypes)} where ${describeTypes(cTypes)} is required`);
    return out;
  }
  const pValues = valuesOf(p);
  const cValues = valuesOf(c);
  if (cValues) {
    if (pValues) {
      const stray = pValues.filter((v) => !valueAllowed(v, cValues));
      if (stray.length > 0) {
        add(producerPath, consumerPath, `may be ${stray.map((v) => JSON.stringify(v)).join(', ')}, which the input does not allow (allowed: ${cValues.map((v) => JSON.stringify(v)).join(', ')})`);
        return out;
      }
    } else if (pTypes && !cValues.some((v) => typeAccepted(typeOfValue(v), pTypes))) {
      add(producerPath, consumerPath, `is ${describeTypes(pTypes)}, but the input allows only ${cValues.map((v) => JSON.stringify(v)).join(', ')}`);
      return out;
    }
  } else if (pValues && cTypes) {
    const stray = pValues.filter((v) => !typeAccepted(typeOfValue(v), cTypes));
    if (stray.length > 0) {
      add(producerPath, consumerPath, `may be ${stray.map((v) => JSON.stringify(v)).join(', ')}, where ${describeTypes(cTypes)} is required`);
      return out;
    }
  }

  // Objects: only where both may be objects.
  if (mayBe(pTypes, 'object') && mayBe(cTypes, 'object')) {
    const pProps = obj(p.properties) ?? {};
    const cProps = obj(c.properties) ?? {};
    const pRequired = new Set(Array.isArray(p.required) ? p.required.filter((k): k is string => typeof k === 'string') : []);
    const cRequired = Array.isArray(c.required) ? c.required.filter((k): k is string => typeof k === 'string') : [];
    const pClosed = p.additionalProperties === false && p.patternProperties === undefined;
    for (const k of cRequired) {
      if (pRequired.has(k)) continue;
      if (Object.hasOwn(pProps, k)) {
        add(joinPointer(producerPath, 'properties', k), joinPointer(consumerPath, 'required'), `has "${k}" optional, but the input requires it`);
      } else if (pClosed) {
        add(joinPointer(producerPath, 'additionalProperties'), joinPointer(consumerPath, 'required'), `never has "${k}", which the input requires`);
      }
    }
    const cClosed = c.additionalProperties === false && c.patternProperties === undefined;
    const cExtra = obj(c.additionalProperties) !== undefined && c.patternProperties === undefined ? c.additionalProperties : undefined;
    for (const [k, ps] of Object.entries(pProps)) {
      if (Object.hasOwn(cProps, k)) {
        out.push(...compareSchemas(ps, cProps[k], joinPointer(producerPath, 'properties', k), joinPointer(consumerPath, 'properties', k), depth + 1));
      } else if (cClosed && pRequired.has(k)) {
        add(joinPointer(producerPath, 'required'), joinPointer(consumerPath, 'additionalProperties'), `always has "${k}", a property the input does not allow`);
      } else if (cExtra !== undefined) {
        out.push(...compareSchemas(ps, cExtra, joinPointer(producerPath, 'properties', k), joinPointer(consumerPath, 'additionalProperties'), depth + 1));
      }
    }
  }
  // Arrays: items against items, where both declare one schema for every item.
  if (mayBe(pTypes, 'array') && mayBe(cTypes, 'array') && p.prefixItems === undefined && c.prefixItems === undefined) {
    if (p.items !== undefined && c.items !== undefined && !Array.isArray(p.items) && !Array.isArray(c.items)) {
      out.push(...compareSchemas(p.items, c.items, joinPointer(producerPath, 'items'), joinPointer(consumerPath, 'items'), depth + 1));
    }
  }
  return out;
}

/** The part of a schema that applies at one step into the value (a property name or an item index). */
export type Step = { schema: Schema; path: string } | { absent: string; path: string };

/**
 * Follows one step of a value into its schema. `absent` (with a message) when the schema rules the step out for
 * sure (no such property in a closed or fully declared object, or the value is not an object/array at all);
 * `schema: undefined` when it cannot tell (the value there is then unknown).
 */
export function stepInto(schema: Schema, path: string, step: string | number): Step {
  const o = obj(schema);
  if (!o) return { schema: schema === false ? false : undefined, path };
  const types = typesOf(o);
  if (typeof step === 'number') {
    if (types && !types.has('array')) return { absent: `is ${describeTypes(types)}, not an array: it has no item ${step}`, path };
    const prefix = Array.isArray(o.prefixItems) ? o.prefixItems : undefined;
    if (prefix && step < prefix.length) return { schema: prefix[step], path: joinPointer(path, 'prefixItems', step) };
    if (o.items !== undefined && !Array.isArray(o.items)) return { schema: o.items, path: joinPointer(path, 'items') };
    return { schema: undefined, path };
  }
  if (types && !types.has('object')) return { absent: `is ${describeTypes(types)}, not an object: it has no field "${step}"`, path };
  const props = obj(o.properties);
  if (props && Object.hasOwn(props, step)) return { schema: props[step], path: joinPointer(path, 'properties', step) };
  if (o.patternProperties !== undefined) return { schema: undefined, path };
  if (obj(o.additionalProperties)) return { schema: o.additionalProperties, path: joinPointer(path, 'additionalProperties') };
  // A declared shape without the field: depending on it is depending on something outside the contract.
  if (o.additionalProperties === false || (props && Object.keys(props).length > 0)) {
    const known = props ? Object.keys(props) : [];
    return { absent: `declares no field "${step}"${known.length > 0 ? ` (it declares: ${known.join(', ')})` : ''}`, path };
  }
  return { schema: undefined, path };
}

/** The consumer schema at a pointer inside the value it validates (undefined: cannot tell, accept anything). */
export function schemaAt(schema: Schema, path: string, steps: string[]): { schema: Schema; path: string } {
  let cur: Schema = schema;
  let at = path;
  for (const step of steps) {
    const o = obj(cur);
    if (!o) return { schema: cur === false ? false : undefined, path: at };
    const index = /^(0|[1-9][0-9]*)$/.test(step) ? Number(step) : undefined;
    const types = typesOf(o);
    let next: Step;
    if (index !== undefined && (types === undefined || types.has('array')) && (o.items !== undefined || o.prefixItems !== undefined)) next = stepInto(o, at, index);
    else next = stepInto(o, at, step);
    if ('absent' in next) return { schema: undefined, path: at };
    cur = next.schema;
    at = next.path;
    if (cur === undefined) return { schema: undefined, path: at };
  }
  return { schema: cur, path: at };
}
