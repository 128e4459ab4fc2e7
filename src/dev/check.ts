// What `plinth dev` checks on every save before it asks the host to reload, so a broken save is reported with its
// place and a code frame and never reaches the serving version: the manifest (JSON syntax and the manifest
// schema, each problem at its line in package.json), every JavaScript module's syntax (acorn, the parser the
// isolate's import check uses), every TypeScript file's syntax (Node's own type stripping, the transform a worker
// runs) and its types (the TypeScript compiler API, when `typescript` is installed in the extension folder or
// beside Plinth; otherwise type errors are not checked and the session says so once).
import { readdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as nodeModule from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'acorn';
import { isPlinthError } from '../errors.ts';
import { isExtensionPackage, validateExtensionPackage, PACKAGE_JSON, type ExtensionPackage } from '../manifest/index.ts';
import { parseSource } from '../pipeline/definition/source.ts';
import type { SchemaLimits } from '../schema/index.ts';
import { LOCAL_FOLDER } from '../trust/index.ts';
import type { DevProblem } from './frame.ts';

import type * as TypeScriptModule from 'typescript';

type TypeScript = typeof TypeScriptModule;

/** The author's working folder at the package root: never part of the package (recordings, the dev data dir). */
export const DEV_FOLDER = LOCAL_FOLDER;

export interface CheckOptions {
  schemaLimits?: SchemaLimits;
  /** At most this many files are looked at (the host config's packages.maxFiles). */
  maxFiles?: number;
  /** Reused between checks of one session: the TypeScript compiler, its last program and parsed lib files. */
  types?: TypeChecker;
}

export interface CheckResult {
  problems: DevProblem[];
  /** The validated manifest when it is valid. */
  pkg?: ExtensionPackage;
  /** package.json's `scripts` (string values only). */
  scripts?: Record<string, string>;
  /** How long each part took, in ms (the bench and `-v` show them). */
  timings: { manifest: number; syntax: number; types: number };
}

const JS = /\.(?:js|mjs|cjs)$/;
const TS = /\.(?:ts|mts|cts)$/;

/** Source files of the package: dot-entries and node_modules apart, as the watcher sees them. */
async function sourceFiles(dir: string, maxFiles: number): Promise<string[]> {
  const out: string[] = [];
  let seen = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.name.startsWith('.') || e.name === 'node_modules') continue;
      if (++seen > maxFiles) return;
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile() && (JS.test(e.name) || TS.test(e.name)) && !e.name.endsWith('.d.ts')) out.push(full);
    }
  };
  await walk(dir);
  return out.sort();
}

/** package.json: its JSON (with the place of a syntax error) and the manifest schema (each problem at its key). */
async function checkManifest(dir: string, options: CheckOptions): Promise<{ problems: DevProblem[]; pkg?: ExtensionPackage; scripts?: Record<string, string> }> {
  const file = path.join(dir, PACKAGE_JSON);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { problems: [{ code: 'PLINTH_ERR_PACKAGE_JSON_INVALID', message: `cannot read ${file}: ${(err as Error).message}`, file }] };
  }
  if (!/^\s*\{/.test(text)) return { problems: [{ code: 'PLINTH_ERR_PACKAGE_JSON_INVALID', message: 'package.json is not a JSON object', file, line: 1, column: 1 }] };
  const parsed = parseSource(text);
  const syntax = parsed.errors[0];
  if (syntax || parsed.value === undefined) {
    return {
      problems: [{ code: 'PLINTH_ERR_PACKAGE_JSON_INVALID', message: `package.json is not valid JSON: ${syntax?.message ?? 'not a JSON object'}`, file, ...(syntax?.line ? { line: syntax.line, column: syntax.column ?? 1 } : {}) }],
    };
  }
  if (!isExtensionPackage(parsed.value)) {
    return { problems: [{ code: 'PLINTH_ERR_MANIFEST_INVALID', message: 'package.json has no "plinth" block', file, line: 1, column: 1, hint: 'add a "plinth" block (see the README, "Writing an extension")' }] };
  }
  try {
    const pkg = await validateExtensionPackage(dir, parsed.value, { ...(options.schemaLimits ? { schemaLimits: options.schemaLimits } : {}) });
    const raw = (parsed.value as { scripts?: unknown }).scripts;
    const scripts = typeof raw === 'object' && raw !== null ? Object.fromEntries(Object.entries(raw).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
    return { problems: [], pkg, scripts };
  } catch (err) {
    if (!isPlinthError(err)) throw err;
    const list = err.problems.length > 0 ? err.problems : [{ path: '', message: err.message, ...(err.hint ? { hint: err.hint } : {}) }];
    return {
      problems: list.map((p) => {
        const at = parsed.locate(p.path);
        return { code: err.code, message: p.path ? `${p.path}: ${p.message}` : p.message, file, ...(at.line ? { line: at.line, column: at.column ?? 1 } : {}), ...(p.hint ? { hint: p.hint } : {}) };
      }),
    };
  }
}

/** A JavaScript module's syntax, as acorn (the isolate's import check) reads it. */
function checkJs(file: string, source: string): DevProblem | undefined {
  try {
    parse(source, { ecmaVersion: 'latest', sourceType: file.endsWith('.cjs') ? 'script' : 'module', allowHashBang: true, locations: true });
    return undefined;
  } catch (err) {
    const loc = (err as { loc?: { line: number; column: number } }).loc;
    const message = String((err as Error).message).replace(/ \(\d+:\d+\)$/, '');
    return { code: 'PLINTH_ERR_EXTENSION_LOAD_FAILED', message: `syntax error: ${message}`, file, ...(loc ? { line: loc.line, column: loc.column + 1 } : {}) };
  }
}

/**
 * A TypeScript file's syntax, through Node's own type stripping (what a worker runs): its error names the line
 * in its stack's first line (`:<line>`) and marks the column with a caret under the quoted source.
 */
function checkTsSyntax(file: string, source: string): DevProblem | undefined {
  try {
    nodeModule.stripTypeScriptTypes(source, { mode: 'strip' });
    return undefined;
  } catch (err) {
    const e = err as Error & { code?: string };
    const lines = String(e.stack ?? '').split('\n');
    const line = /^[^\n]*:(\d+)\s*$/.exec(lines[0] ?? '')?.[1];
    const caretLine = lines.findIndex((l, i) => i > 0 && /^\s*\^+\s*$/.test(l));
    const column = caretLine > 0 ? lines[caretLine]!.indexOf('^') + 1 : undefined;
    const what = e.code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX' ? 'TypeScript syntax that type stripping does not support' : 'syntax error';
    return {
      code: 'PLINTH_ERR_EXTENSION_LOAD_FAILED',
      message: `${what}: ${e.message}`,
      file,
      ...(line ? { line: Number(line), ...(column ? { column } : {}) } : {}),
      ...(e.code === 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX' ? { hint: 'Node runs erasable TypeScript only: no enums, namespaces or parameter properties' } : {}),
    };
  }
}

/**
 * Type checks with the TypeScript compiler API, reusing the last program (and the parsed lib files) between
 * saves so a re-check costs only what changed. `typescript` is looked up from the extension folder first, then
 * from Plinth's own install.
 */
export class TypeChecker {
  #ts: TypeScript | undefined | null;
  #found: string | undefined;
  #program: TypeScriptModule.Program | undefined;
  readonly #libs = new Map<string, TypeScriptModule.SourceFile>();
  /** Files `typescript` is resolved from, in order, after the extension folder's package.json. */
  readonly #from: string[];

  constructor(options: { from?: string[] } = {}) {
    this.#from = options.from ?? [import.meta.filename];
  }

  /** Where `typescript` was found (undefined until the first check; null: not found). */
  get source(): string | null | undefined {
    return this.#ts === null ? null : this.#found;
  }

  async #load(dir: string): Promise<TypeScript | null> {
    if (this.#ts !== undefined) return this.#ts;
    for (const base of [path.join(dir, PACKAGE_JSON), ...this.#from]) {
      try {
        const resolved = createRequire(base).resolve('typescript');
        const mod = (await import(pathToFileURL(resolved).href)) as { default?: TypeScript } & TypeScript;
        this.#found = resolved;
        return (this.#ts = mod.default ?? mod);
      } catch {
        // not there: try the next place
      }
    }
    return (this.#ts = null);
  }

  /** Type errors of `files` (absolute), or undefined when no `typescript` could be found. */
  async check(dir: string, files: string[]): Promise<DevProblem[] | undefined> {
    const ts = await this.#load(dir);
    if (!ts) return undefined;
    let options: TypeScriptModule.CompilerOptions = {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2023,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      allowImportingTsExtensions: true,
      verbatimModuleSyntax: true,
      skipLibCheck: true,
    };
    const problems: DevProblem[] = [];
    const configFile = path.join(dir, 'tsconfig.json');
    if (await stat(configFile).then((s) => s.isFile(), () => false)) {
      const read = ts.readConfigFile(configFile, (f) => ts.sys.readFile(f));
      if (read.error) problems.push(this.#problem(ts, read.error));
      else {
        const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, dir, undefined, configFile);
        options = { ...parsed.options, noEmit: true };
      }
    }
    const host = ts.createCompilerHost(options, true);
    const inside = (f: string) => !path.relative(dir, f).startsWith('..') && !f.includes(`${path.sep}node_modules${path.sep}`);
    const getSourceFile = host.getSourceFile.bind(host);
    // Lib and dependency declarations do not change while the author edits: parsed once per session.
    host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
      if (inside(path.resolve(fileName))) return getSourceFile(fileName, languageVersion, onError, shouldCreate);
      const known = this.#libs.get(fileName);
      if (known) return known;
      const sf = getSourceFile(fileName, languageVersion, onError, shouldCreate);
      if (sf) this.#libs.set(fileName, sf);
      return sf;
    };
    const program = ts.createProgram({ rootNames: files, options, host, ...(this.#program ? { oldProgram: this.#program } : {}) });
    this.#program = program;
    const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
    for (const sf of program.getSourceFiles()) {
      if (!inside(path.resolve(sf.fileName))) continue;
      diagnostics.push(...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf));
    }
    for (const d of diagnostics) if (d.category === ts.DiagnosticCategory.Error) problems.push(this.#problem(ts, d));
    return problems;
  }

  #problem(ts: TypeScript, d: TypeScriptModule.Diagnostic): DevProblem {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return { code: `TS${d.code}`, message: `type error: ${message}` };
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    return { code: `TS${d.code}`, message: `type error: ${message}`, file: path.resolve(d.file.fileName), line: line + 1, column: character + 1 };
  }
}

/**
 * Checks the extension folder `dir` as it is on disk now. Problems are in order: manifest, then syntax per file,
 * then types (only when the syntax is clean, as a type checker's view of broken syntax is noise).
 */
export async function checkExtension(dir: string, options: CheckOptions = {}): Promise<CheckResult> {
  const t0 = performance.now();
  const manifest = await checkManifest(dir, options);
  const t1 = performance.now();
  const files = await sourceFiles(dir, options.maxFiles ?? 10_000);
  const problems = [...manifest.problems];
  const tsFiles: string[] = [];
  for (const file of files) {
    let source: string;
    try {
      source = await readFile(file, 'utf8');
    } catch {
      continue; // removed while we looked: the watcher reports it again
    }
    const problem = TS.test(file) ? checkTsSyntax(file, source) : checkJs(file, source);
    if (problem) problems.push(problem);
    if (TS.test(file)) tsFiles.push(file);
  }
  const t2 = performance.now();
  if (tsFiles.length > 0 && options.types && problems.length === manifest.problems.length) {
    const typeProblems = await options.types.check(dir, tsFiles);
    if (typeProblems) problems.push(...typeProblems);
  }
  const t3 = performance.now();
  return { problems, ...(manifest.pkg ? { pkg: manifest.pkg } : {}), ...(manifest.scripts ? { scripts: manifest.scripts } : {}), timings: { manifest: t1 - t0, syntax: t2 - t1, types: t3 - t2 } };
}
