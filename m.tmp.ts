import { readPackageJson, validateExtensionPackage } from './src/manifest/index.ts';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
const dir = 'test/fixtures/security-schemas/hostile-cost';
const pkg = await validateExtensionPackage(dir, await readPackageJson(dir));
function nested(depth: number) { let v: any = {}; for (let i = 0; i < depth; i++) v = { a: v }; return v; }
const keys: Record<string, number> = {}; for (let i = 0; i < 100000; i++) keys[`k${i % 100}_${'z'.repeat(20)}${i}`] = i;
const cases: Array<[string, 'input'|'output', unknown]> = [
 ['redos_input','input','a'.repeat(50000)+'!'], ['redos_output','output','a'.repeat(50000)+'b'],
 ['unique_output','output',Array.from({ length: 30000 }, (_, i) => ({ i, tag: [i] }))], ['fanout_input','input','x'],
 ['recursive_output','output',nested(40)], ['wide_output','output','x'.repeat(1000000)], ['keys_output','output',keys]];
for (const [s, io, v] of cases) {
  const fn = pkg.schemas.stages[s]![io];
  const t = performance.now(); let r: string;
  try { r = String(fn(v)); } catch (e) { r = (e as any).code; }
  console.log(s.padEnd(18), r.padEnd(36), (performance.now() - t).toFixed(0).padStart(5), 'ms', fn.lastCost.toExponential(2));
}
