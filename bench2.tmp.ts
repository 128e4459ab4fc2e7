import { SchemaScope, DEFAULT_SCHEMA_LIMITS } from './src/schema/index.ts';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { performance } from 'node:perf_hooks';
const lim = { ...DEFAULT_SCHEMA_LIMITS, maxNodes: 1e9 };
for (const n of [1000, 5000]) {
  const schema = { anyOf: Array.from({ length: n }, () => ({})) };
  const scope = new SchemaScope({ extension: 'x', file: 'f' }, lim);
  let t = performance.now(); scope.compile(schema, '/s'); scope.done(); const a = performance.now() - t;
  const plain = new Ajv2020({ allErrors: true, strict: false });
  t = performance.now(); plain.compile(schema); const b = performance.now() - t;
  const props = { type: 'object', properties: Object.fromEntries(Array.from({ length: n }, (_, i) => ['p' + i, { type: 'string' }])) };
  const scope2 = new SchemaScope({ extension: 'x', file: 'f' }, lim);
  t = performance.now(); scope2.compile(props, '/s'); const c = performance.now() - t;
  t = performance.now(); new Ajv2020({ allErrors: true, strict: false }).compile(props); const d = performance.now() - t;
  console.log(n, 'anyOf scope', a.toFixed(0), 'plain', b.toFixed(0), '| props scope', c.toFixed(0), 'plain', d.toFixed(0));
}
let t = performance.now();
for (let i = 0; i < 20; i++) { const s = new SchemaScope({ extension: 'x', file: 'f' }); s.compile({type:'object', properties:{a:{type:'string'}}}, '/s'); }
console.log('scope+small compile', ((performance.now() - t) / 20).toFixed(2), 'ms each');
