// Reads an extension's package.json, validates it against schemas/extension-package.schema.json (which embeds
// the manifest schema), checks `main`, and compiles every schema the extension declares — once, here.
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import { validators, toProblems, SchemaScope, DEFAULT_SCHEMA_LIMITS, type SchemaLimits, type SchemaValidator } from '../schema/index.ts';
import type { BreakerSettings, QuotaOverrides } from '../config/index.ts';

export type Runtime = 'worker' | 'isolate' | 'remote';

export interface Dependency {
  range: string;
  optional: boolean;
}

export interface StageDeclaration {
  description?: string;
  input: object | boolean;
  output: object | boolean;
  timeoutMs?: number;
}

export interface Permissions {
  fs?: { read?: string[]; write?: string[] };
  network?: string[];
  env?: string[];
  events?: { publish?: string[]; subscribe?: string[] };
  kv?: boolean;
}

export interface HealthSettings {
  intervalMs: number;
  timeoutMs: number;
  unhealthyThreshold: number;
  recoveryThreshold: number;
}

export interface LimitSettings {
  memoryMb: number;
  callTimeoutMs: number;
  concurrency: number;
  /** Bound of loading: module evaluation, initialize() and start() together. */
  startTimeoutMs: number;
}

/** `limits` as a manifest writes them: the sandbox limits, and host quotas it asks to lower (src/policy). */
export type ManifestLimits = Partial<LimitSettings> & QuotaOverrides;

/** The `plinth` block after validation, with dependencies normalised to `{ range, optional }`. */
export interface Manifest {
  runtime: Runtime;
  displayName?: string;
  capabilities: string[];
  dependencies: Record<string, Dependency>;
  permissions: Permissions;
  configSchema?: object | boolean;
  stages: Record<string, StageDeclaration>;
  subscribes: string[];
  health?: Partial<HealthSettings>;
  breaker?: Partial<BreakerSettings>;
  limits?: ManifestLimits;
}

/**
 * The package's schemas, compiled in a scope of their own (src/schema/authored.ts) that lives as long as these
 * validators do: dropping the package releases it. A validator throws PLINTH_ERR_SCHEMA_VALIDATION_LIMIT when a
 * value costs more than the host's budget to check.
 */
export interface CompiledSchemas {
  config?: SchemaValidator;
  /** `fillsDefaults`: the input schema declares defaults, so validating writes into the value (copy it first). */
  stages: Record<string, { input: SchemaValidator; output: SchemaValidator; fillsDefaults: boolean }>;
}

/** Whether a schema declares a `default` anywhere (ajv's useDefaults then writes into validated data). */
function declaresDefaults(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  if (!Array.isArray(schema) && Object.hasOwn(schema, 'default')) return true;
  return Object.values(schema).some(declaresDefaults);
}

export interface ExtensionPackage {
  /** The package name: the extension's id. */
  id: string;
  version: string;
  /** Absolute path of the folder the extension loads from: its verified snapshot (src/snapshot). */
  dir: string;
  /** The plugin folder it was copied from, as the user knows it: listings, messages and the lockfile name it. */
  sourceDir: string;
  /** `main` as written, and resolved to an absolute path inside `dir`. */
  main: string;
  mainPath: string;
  /** `engines.plinth`: host API versions the extension supports (npm range), if stated. */
  hostRange?: string;
  manifest: Manifest;
  schemas: CompiledSchemas;
}

interface RawPackage {
  name: string;
  version: string;
  main?: string;
  engines?: { plinth?: string };
  plinth: Omit<Manifest, 'dependencies'> & { dependencies?: Record<string, string | { version: string; optional?: boolean }> };
}

export const PACKAGE_JSON = 'package.json';

/**
 * Reads and parses `<dir>/package.json`. Returns undefined when there is none (not an extension folder).
 * `sourceDir`: the folder messages name, when `dir` is a snapshot of it.
 */
export async function readPackageJson(dir: string, sourceDir = dir): Promise<unknown> {
  const file = path.join(sourceDir, PACKAGE_JSON);
  let text: string;
  try {
    text = await readFile(path.join(dir, PACKAGE_JSON), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PlinthError('PLINTH_ERR_PACKAGE_JSON_INVALID', `cannot read ${file}: ${(err as Error).message}`, {
      file,
      hint: 'make package.json a readable regular file',
      cause: err,
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_PACKAGE_JSON_INVALID', `${file} is not valid JSON: ${(err as Error).message}`, {
      file,
      hint: 'fix the JSON syntax (a linter such as `npx jsonlint` shows the spot)',
      cause: err,
    });
  }
}

/** True when a parsed package.json declares a Plinth extension (has a `plinth` block). */
export function isExtensionPackage(pkg: unknown): boolean {
  return typeof pkg === 'object' && pkg !== null && !Array.isArray(pkg) && Object.hasOwn(pkg, 'plinth');
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Validates a parsed package.json of the extension folder `dir`. Throws a PlinthError naming the folder:
 * MANIFEST_INVALID (every schema problem at once), MAIN_NOT_SET, MAIN_NOT_FOUND, STAGE_SCHEMA_INVALID.
 * `options.sourceDir`: the plugin folder messages name when `dir` is its verified snapshot (the registry passes
 * both); `options.schemaLimits`: the host's limits for the package's schemas; `options.remote`: a runner's manifest
 * (runner.register), whose `main` is not looked for here.
 */
export async function validateExtensionPackage(dir: string, pkg: unknown, options: { schemaLimits?: SchemaLimits; sourceDir?: string; remote?: boolean } = {}): Promise<ExtensionPackage> {
  const sourceDir = options.sourceDir ?? dir;
  const file = path.join(sourceDir, PACKAGE_JSON);
  const label = typeof (pkg as { name?: unknown }).name === 'string' ? (pkg as { name: string }).name : path.basename(sourceDir);
  if (!validators.extensionPackage(pkg)) {
    const problems = toProblems(validators.extensionPackage.errors);
    throw new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `extension ${label} at ${sourceDir}: package.json has ${problems.length} problem(s)`, {
      extension: label,
      file,
      problems,
      hint: 'see schemas/extension-manifest.schema.json for every field of the plinth block',
    });
  }
  const raw = pkg as RawPackage;

  // A runner's manifest (remote runtime): its code runs in the runner's process, not from a folder of this host.
  const remote = options.remote === true;
  if (raw.main === undefined && !remote) {
    throw new PlinthError('PLINTH_ERR_MAIN_NOT_SET', `extension ${raw.name} at ${sourceDir}: package.json has no "main"`, {
      extension: raw.name,
      file,
      hint: 'add "main": "<entry module>", e.g. "main": "index.js"',
    });
  }
  const mainPath = remote ? '' : await resolveMain(dir, raw.name, raw.main!, sourceDir);

  const schemas = compileSchemas(sourceDir, raw, options.schemaLimits ?? DEFAULT_SCHEMA_LIMITS);
  const dependencies: Record<string, Dependency> = {};
  for (const [id, spec] of Object.entries(raw.plinth.dependencies ?? {})) {
    dependencies[id] = typeof spec === 'string' ? { range: spec, optional: false } : { range: spec.version, optional: spec.optional ?? false };
  }
  const manifest: Manifest = {
    ...raw.plinth,
    capabilities: raw.plinth.capabilities ?? [],
    dependencies,
    permissions: raw.plinth.permissions ?? {},
    stages: raw.plinth.stages ?? {},
    subscribes: raw.plinth.subscribes ?? [],
  };
  return {
    id: raw.name,
    version: raw.version,
    dir,
    sourceDir,
    main: raw.main ?? '',
    mainPath,
    ...(raw.engines?.plinth === undefined ? {} : { hostRange: raw.engines.plinth }),
    manifest: deepFreeze(manifest),
    schemas,
  };
}

async function resolveMain(dir: string, id: string, main: string, sourceDir: string): Promise<string> {
  const candidate = path.resolve(dir, main);
  const notFound = (why: string) =>
    new PlinthError('PLINTH_ERR_MAIN_NOT_FOUND', `extension ${id} at ${sourceDir}: "main" is ${JSON.stringify(main)} but ${why}`, {
      extension: id,
      file: path.resolve(sourceDir, main),
      hint: 'build the extension (e.g. `npm run build`) or point "main" at its entry module',
    });
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    throw notFound('that file does not exist');
  }
  const realDir = await realpath(dir);
  if (real !== realDir && !real.startsWith(realDir + path.sep)) throw notFound('it resolves outside the extension folder');
  if (!(await stat(real)).isFile()) throw notFound('it is not a file');
  return candidate;
}

/** Compiles every schema the package declares in one new scope; all problems are reported together. */
function compileSchemas(dir: string, raw: RawPackage, limits: SchemaLimits): CompiledSchemas {
  const scope = new SchemaScope({ extension: raw.name, file: path.join(dir, PACKAGE_JSON) }, limits);
  const out: CompiledSchemas = { stages: {} };
  if (raw.plinth.configSchema !== undefined) {
    const config = scope.compile(raw.plinth.configSchema, '/plinth/configSchema', { allErrors: true });
    if (config) out.config = config;
  }
  for (const [name, stage] of Object.entries(raw.plinth.stages ?? {})) {
    const input = scope.compile(stage.input, `/plinth/stages/${name}/input`);
    const output = scope.compile(stage.output, `/plinth/stages/${name}/output`);
    if (input && output) out.stages[name] = { input, output, fillsDefaults: declaresDefaults(stage.input) };
  }
  scope.done();
  return out;
}
