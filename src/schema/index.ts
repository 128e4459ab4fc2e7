// Every JSON Schema of Plinth's own lives in schemas/; this module compiles them once (ajv, all errors) and turns
// ajv's errors into Problems that carry a JSON path and a hint a person can act on.
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import semver from 'semver';
import manifestSchema from '../../schemas/extension-manifest.schema.json' with { type: 'json' };
import packageSchema from '../../schemas/extension-package.schema.json' with { type: 'json' };
import signatureSchema from '../../schemas/signature.schema.json' with { type: 'json' };
import trustStoreSchema from '../../schemas/trust-store.schema.json' with { type: 'json' };
import hostConfigSchema from '../../schemas/host-config.schema.json' with { type: 'json' };
import lockfileSchema from '../../schemas/lockfile.schema.json' with { type: 'json' };
import pipelineSchema from '../../schemas/pipeline.schema.json' with { type: 'json' };
import type { Problem } from '../errors.ts';

// ajv-formats is CommonJS with `exports.default`; under NodeNext the default import is the module object.
const addFormats = addFormatsModule.default;

function addPlinthFormats(ajv: Ajv2020): Ajv2020 {
  addFormats(ajv);
  ajv.addFormat('semver', { type: 'string', validate: (v: string) => semver.valid(v) !== null });
  ajv.addFormat('semver-range', { type: 'string', validate: (v: string) => semver.validRange(v) !== null });
  return ajv;
}

/** Validates Plinth's own documents; `useDefaults` fills in the defaults the schemas declare. */
const own = addPlinthFormats(new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, useDefaults: true, verbose: true }));
for (const s of [manifestSchema, packageSchema, signatureSchema, trustStoreSchema, hostConfigSchema, lockfileSchema, pipelineSchema]) own.addSchema(s);

function validatorFor(id: string): ValidateFunction {
  const fn = own.getSchema(id);
  if (!fn) throw new Error(`schema ${id} is not registered`);
  return fn;
}

export const validators = {
  extensionPackage: validatorFor('https://plinth.dev/schemas/extension-package.schema.json'),
  signature: validatorFor('https://plinth.dev/schemas/signature.schema.json'),
  trustStore: validatorFor('https://plinth.dev/schemas/trust-store.schema.json'),
  hostConfig: validatorFor('https://plinth.dev/schemas/host-config.schema.json'),
  lockfile: validatorFor('https://plinth.dev/schemas/lockfile.schema.json'),
  pipeline: validatorFor('https://plinth.dev/schemas/pipeline.schema.json'),
} as const;

// Schemas written by extension authors compile in a scope per package, with bounded cost: see authored.ts.
export { SchemaScope, compileAuthoredSchema, DEFAULT_SCHEMA_LIMITS, type SchemaLimits, type SchemaValidator, type ScopeLabel } from './authored.ts';

// Names of $defs whose `pattern` means something a person can be told in words.
const PATTERN_HINTS: Record<string, string> = {
  identifier: 'use lower-case letters and digits, words joined by - or _ (e.g. "parse_rows")',
  extensionId: 'use an npm package name: lower-case, optionally scoped (e.g. "csv-ingest" or "@acme/csv-ingest")',
  relativePath: 'use a relative path inside the folder, without leading "/" or ".." segments',
  topicPattern: 'use dot-separated words; "*" matches exactly one word, "#" zero or more (e.g. "audit.#")',
  publisherId: 'use lower-case letters, digits, ".", "_" or "-"',
  keyId: 'use the 32-hex-digit key id printed by `plinth keygen`',
  duration: 'write milliseconds, or a whole number and a unit: 500ms, 30s, 5m, 2h, 1d',
  stageId: 'start with a letter or _, then letters, digits, _ or - (at most 64), e.g. "ingest"',
  variableName: 'use letters, digits and _ (a CEL identifier), e.g. "region"',
};

const FORMAT_HINTS: Record<string, string> = {
  semver: 'use a semantic version such as "1.2.0"',
  'semver-range': 'use an npm semver range such as "^2.1.0", "~2.5.0", ">=3.0.0 <4.0.0" or "*"',
  hostname: 'use a bare host name such as "api.example.com" (no scheme, port or path)',
};

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Edit distance (Levenshtein), to suggest the name a misspelt one was probably meant to be. */
export function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function toProblem(e: ErrorObject): Problem {
  const path = e.instancePath;
  // `verbose: true` (own validators) gives parentSchema and data for friendlier messages.
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required': {
      const prop = String(params.missingProperty);
      return { path: `${path}/${escapePointer(prop)}`, message: `required property "${prop}" is missing`, hint: `add "${prop}"` };
    }
    case 'additionalProperties': {
      const prop = String(params.additionalProperty);
      const allowed = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const close = allowed.filter((k) => distance(k.toLowerCase(), prop.toLowerCase()) <= 2);
      return {
        path: `${path}/${escapePointer(prop)}`,
        message: `unknown property "${prop}"`,
        hint: close.length > 0 ? `did you mean "${close[0]}"?` : allowed.length > 0 ? `allowed here: ${allowed.join(', ')}` : 'remove it',
      };
    }
    case 'enum':
      return { path, message: 'has a value that is not allowed', hint: `use one of: ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { path, message: `must be ${JSON.stringify(params.allowedValue)}` };
    case 'format': {
      const hint = FORMAT_HINTS[String(params.format)];
      return { path, message: `is not a valid ${String(params.format)}`, ...(hint ? { hint } : {}) };
    }
    case 'pattern': {
      const def = /\/\$defs\/([^/]+)\//.exec(e.schemaPath)?.[1];
      const hint = def ? PATTERN_HINTS[def] : undefined;
      return hint
        ? { path, message: `${JSON.stringify(e.data)} is not valid here`, hint }
        : { path, message: `does not match the pattern ${String(params.pattern)}` };
    }
    case 'propertyNames':
      return { path: `${path}/${escapePointer(String(params.propertyName))}`, message: `"${String(params.propertyName)}" is not a valid name here` };
    default:
      return { path, message: e.message ?? e.keyword };
  }
}

/**
 * Converts ajv errors to Problems, one per place. propertyNames failures come with an inner error for the
 * same name; `if/then` adds a summary error: both are dropped so each mistake is listed once.
 */
export function toProblems(errors: ErrorObject[] | null | undefined): Problem[] {
  const out: Problem[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    if (e.keyword === 'if') continue;
    if (e.propertyName !== undefined && e.keyword !== 'propertyNames') {
      const hint = /\/\$defs\/([^/]+)\//.exec(e.schemaPath)?.[1];
      const p: Problem = { path: `${e.instancePath}/${escapePointer(e.propertyName)}`, message: `"${e.propertyName}" is not a valid name here`, ...(hint && PATTERN_HINTS[hint] ? { hint: PATTERN_HINTS[hint] } : {}) };
      const key = `${p.path}|${p.message}`;
      if (!seen.has(key)) { seen.add(key); out.push(p); }
      continue;
    }
    const p = toProblem(e);
    const key = `${p.path}|${p.message}`;
    if (e.keyword === 'propertyNames' && out.some((o) => o.path === p.path)) continue;
    if (!seen.has(key)) { seen.add(key); out.push(p); }
  }
  return out;
}
