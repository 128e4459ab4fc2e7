import { SchemaScope, DEFAULT_SCHEMA_LIMITS } from './src/schema/index.ts';
import { performance } from 'node:perf_hooks';
const lim = { ...DEFAULT_SCHEMA_LIMITS, maxValidationCost: 1e12, maxPatternLength: 1e5 };
function run(name: string, schema: unknown, data: unknown) {
  const scope = new SchemaScope({ extension: 'x', file: 'f' }, lim);
  let t = performance.now();
  const v = scope.compile(schema, '/s'); scope.done();
  const tc = performance.now() - t;
  // measure units
  t = performance.now();
  let ok: boolean | string;
  try { ok = v!(data); } catch (e) { ok = (e as any).code; }
  const tv = performance.now() - t;
  // get units by a tight budget binary search? instead read via a second scope with small budget
  console.log(name.padEnd(30), 'compile', tc.toFixed(1), 'validate', tv.toFixed(1), 'ms', ok, 'units', v!.lastCost.toExponential(2), 'ns/unit', (tv*1e6/v!.lastCost).toFixed(1));
}
const rows = Array.from({ length: 100000 }, (_, i) => ({ id: i, name: 'row' + i, email: `u${i}@ex.com`, tags: ['a', 'b'] }));
run('100k rows', { type: 'array', items: { type: 'object', required: ['id','name'], properties: { id: { type: 'integer' }, name: { type: 'string', pattern: '^row[0-9]+$' }, email: { type: 'string', format: 'email' }, tags: { type: 'array', items: { type: 'string' } } } } }, rows);
run('catastrophic pattern 1M', { type: 'string', pattern: '^(a+)+$' }, 'a'.repeat(1_000_000) + '!');
run('uniqueItems 50k objects', { type: 'array', uniqueItems: true }, Array.from({ length: 50000 }, (_, i) => ({ i })));
const defs: Record<string, unknown> = { d30: { type: 'string' } };
for (let i = 29; i >= 0; i--) defs['d' + i] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
run('ref fan-out 2^20', { $defs: Object.fromEntries(Object.entries(defs).filter(([k]) => +k.slice(1) >= 10)), $ref: '#/$defs/d10' }, 'x');
run('anyOf 1000 minLength on 1MB', { anyOf: Array.from({ length: 1000 }, (_, i) => ({ minLength: 2000000 + i })) }, 'x'.repeat(1_000_000));
run('patternProps 200 on 50k keys', { type: 'object', patternProperties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`^k${i}x[a-z]*$`, { type: 'string' }])) }, Object.fromEntries(Array.from({ length: 50000 }, (_, i) => ['key' + i, 'v'])));
run('big prog 1M', { type: 'string', pattern: '(a|b)*a(a|b){12}c' }, 'ab'.repeat(500_000));
run('alt200 1M', { type: 'string', pattern: Array.from({length:200},(_, i)=>'w'+i+'x').join('|') }, 'w1'.repeat(500_000));
run('email fmt 1M', { type: 'string', format: 'email' }, 'a'.repeat(1_000_000));
run('date-time 100k strs', { type: 'array', items: { type: 'string', format: 'date-time' } }, Array.from({length:100000},()=>'2024-01-01T00:00:00Z'));
run('short pattern 100k strs', { type: 'array', items: { type: 'string', pattern: '^[a-z]+$' } }, Array.from({length:100000},()=>'abcdef'));
run('enum 1000 on 100k', { type: 'array', items: { enum: Array.from({length:1000},(_, i)=>'v'+i) } }, Array.from({length:100000},()=>'zz'));
run('addlProps false 1M keys', { type: 'object', additionalProperties: false, properties: {a:{}} }, Object.fromEntries(Array.from({ length: 200000 }, (_, i) => ['key' + i, 1])));
