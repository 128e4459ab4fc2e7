// `plinth validate <file>`: every pre-run check of a pipeline (docs/pipelines.md "Checks") against the extensions
// of the plugin directories, without running anything. Exit 0 valid, 3 invalid (each issue with its line and what
// to fix), 2 for a usage or configuration problem.
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { describeLocation, loadStageCatalog, PipelineInvalidError, readPipelineFile, upstreamOf, validatePipeline } from '../../pipeline/definition/index.ts';
import type { PipelineDefinition } from '../../pipeline/types.ts';
import type { Json } from '../../sdk/index.ts';
import { EXIT, shownPath, usageError, type Io, type Outcome } from '../output.ts';
import { checkPluginDirs } from '../plugins.ts';

export interface ValidateFlags extends ConfigFlags {
  json?: boolean;
  /** `k=v` pairs: also check these run variables against the pipeline's schemas. */
  vars?: string[];
}

/** `--var k=v` pairs → variables (values stay strings; the check converts them to the declared types). */
export function parseVarFlags(pairs: string[]): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usageError(`--var ${pair} is not name=value`, 'write --var region=eu');
    Object.defineProperty(out, pair.slice(0, eq), { value: pair.slice(eq + 1), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Stages by how soon they can run: each level needs only earlier ones (what runs in parallel, side by side). */
export function stageLevels(def: PipelineDefinition): string[][] {
  const upstream = upstreamOf(def);
  const depth = new Map<string, number>();
  const level = (id: string): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    const ups = [...(upstream.get(id) ?? [])];
    const d = ups.length === 0 ? 0 : 1 + Math.max(...ups.map(level));
    depth.set(id, d);
    return d;
  };
  const levels: string[][] = [];
  for (const s of def.stages) (levels[level(s.id)] ??= []).push(s.id);
  return levels.filter(Boolean);
}

export async function validate(io: Io, file: string, flags: ValidateFlags): Promise<Outcome> {
  const config = await loadHostConfig({ flags });
  const variables = flags.vars && flags.vars.length > 0 ? parseVarFlags(flags.vars) : undefined;
  const { text, file: abs } = await readPipelineFile(file);
  await checkPluginDirs(config.plugins);
  const { catalog } = await loadStageCatalog(config);
  const result = validatePipeline(text, abs, catalog, variables);
  const shown = shownPath(abs);
  const issues = [...result.issues].sort((a, b) => (a.location.line ?? Infinity) - (b.location.line ?? Infinity));
  if (!result.definition) {
    if (!flags.json) {
      io.out(`${shown}: ${issues.length} problem(s)`);
      for (const i of issues) io.out(`  ${describeLocation(i.location, shown)}  ${i.code}  ${i.message}${i.hint ? `\n      hint: ${i.hint}` : ''}`);
    }
    const error = new PipelineInvalidError(issues, abs);
    return { code: EXIT.invalid, data: { file: abs, valid: false, issues }, error: error.toJSON() };
  }
  const def = result.definition;
  if (!flags.json) {
    const order = stageLevels(def).map((l) => l.join(' ∥ ')).join(' → ');
    io.out(`${shown}: valid — pipeline ${def.name} ${def.version}, ${def.stages.length} stage(s): ${order}`);
  }
  return { code: EXIT.ok, data: { file: abs, valid: true, issues: [], pipeline: { name: def.name, version: def.version, stages: def.stages.map((s) => s.id), levels: stageLevels(def) } } };
}
