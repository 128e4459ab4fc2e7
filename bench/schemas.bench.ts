// Extension-schema benchmark: how long one validation holds the event loop for each hostile schema of
// test/fixtures/security-schemas/hostile-cost (units spent, wall time, ns per unit), against the default budget
// (extensionSchemas.maxValidationCost), plus a legitimate 100 000-row array. Calibrates the units in
// src/schema/authored.ts: ns/unit should stay within a small factor across the cases.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { readPackageJson, validateExtensionPackage } from '../src/manifest/index.ts';
import { SchemaScope, DEFAULT_SCHEMA_LIMITS, type SchemaValidator } from '../src/schema/index.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(HERE, '..', 'test', 'fixtures', 'security-schemas', 'hostile-cost');
const pkg = await validateExtensionPackage(dir, await readPackageJson(dir));

function nested(depth: number): unknown {
  let v: unknown = {};
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}
const keys: Record<string, number> = {};
for (let i = 0; i < 100_000; i++) keys[`k${i % 100}_${'z'.repeat(20)}${i}`] = i;

const rowsScope = new SchemaScope({ extension: 'bench', file: 'bench' });
const rows = rowsScope.compile({ type: 'array', items: { type: 'object', required: ['id', 'name'], properties: { id: { type: 'integer' }, name: { type: 'string', pattern: '^row[0-9]+$' }, email: { type: 'string', format: 'email' } } } }, '/rows')!;

const cases: Array<[string, SchemaValidator, unknown]> = [
  ['pattern ^(a+)+$, 50k chars', pkg.schemas.stages.redos_input!.input, 'a'.repeat(50_000) + '!'],
  ['uniqueItems, 30k objects', pkg.schemas.stages.unique_output!.output, Array.from({ length: 30_000 }, (_, i) => ({ i, tag: [i] }))],
  ['$ref fan-out 2^40', pkg.schemas.stages.fanout_input!.input, 'x'],
  ['recursive 2 paths x 40 levels', pkg.schemas.stages.recursive_output!.output, nested(40)],
  ['anyOf 500 x minLength, 1M chars', pkg.schemas.stages.wide_output!.output, 'x'.repeat(1_000_000)],
  ['100k keys x 100 patterns', pkg.schemas.stages.keys_output!.output, keys],
  ['legit: 100k rows', rows, Array.from({ length: 100_000 }, (_, i) => ({ id: i, name: `row${i}`, email: `u${i}@example.com` }))],
];

console.log(`budget ${DEFAULT_SCHEMA_LIMITS.maxValidationCost.toExponential(1)} units`);
for (const [name, validate, value] of cases) {
  const times: number[] = [];
  let outcome = '';
  for (let run = 0; run < 3; run++) {
    const t = performance.now();
    try {
      outcome = validate(value) ? 'valid' : 'invalid';
    } catch (err) {
      outcome = (err as { code?: string }).code ?? String(err);
    }
    times.push(performance.now() - t);
  }
  const best = Math.min(...times);
  console.log(`${name.padEnd(36)} ${outcome.padEnd(36)} ${best.toFixed(0).padStart(5)} ms  ${validate.lastCost.toExponential(2)} units  ${((best * 1e6) / Math.max(1, validate.lastCost)).toFixed(1)} ns/unit`);
}
