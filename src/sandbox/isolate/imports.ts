// What an isolate extension may import, checked on the parsed module (acorn), not on its text: a comment or a
// string that mentions `import(` — a JSDoc `@type {import('…')}` typing against the SDK — is not an import.
// Dynamic import() does not exist in an isolate (isolated-vm: "Not supported"), so a real one is refused at load,
// naming file:line:column. The same rules serve the sandbox process (which compiles with V8 and takes the static
// specifiers from isolated-vm) and `plinth ls` (which checks without starting anything), so both agree.
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { parse, type Node } from 'acorn';
import { simple } from 'acorn-walk';
import { PlinthError } from '../../errors.ts';

export interface ImportSite {
  /** The specifier when it is a string literal (always for static imports). */
  specifier: string | undefined;
  line: number;
  /** 1-based, as editors count. */
  column: number;
}

export interface ModuleImports {
  static: ImportSite[];
  dynamic: ImportSite[];
}

const HINT = 'an isolate extension may import only relative files inside its own folder ("./lib.js"); bundle any dependency into the package';

interface Located {
  loc?: { start: { line: number; column: number } } | null;
}

function site(node: Node, specifier: unknown): ImportSite {
  const start = (node as Located).loc?.start ?? { line: 0, column: -1 };
  return { specifier: typeof specifier === 'string' ? specifier : undefined, line: start.line, column: start.column + 1 };
}

/**
 * The imports of one ES module's source. `rel` names it in errors. A module acorn cannot parse is refused with
 * its line and column (EXTENSION_LOAD_FAILED): an isolate compiles plain JavaScript only, no TypeScript.
 */
export function moduleImports(id: string, rel: string, source: string, file?: string): ModuleImports {
  let ast: Node;
  try {
    ast = parse(source, { ecmaVersion: 'latest', sourceType: 'module', locations: true, allowHashBang: true });
  } catch (err) {
    const loc = (err as { loc?: { line: number; column: number } }).loc;
    const where = loc ? `${rel}:${loc.line}:${loc.column + 1}` : rel;
    const message = (err as Error).message.replace(/\s*\(\d+:\d+\)$/, '');
    throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${id}: ${where} does not parse as a JavaScript module: ${message}`, {
      extension: id,
      file: file ?? rel,
      hint: rel.endsWith('.ts') || rel.endsWith('.mts') ? 'an isolate runs JavaScript only: compile the TypeScript to .js first (workers run .ts mains directly)' : 'fix the syntax at that line',
    });
  }
  const found: ModuleImports = { static: [], dynamic: [] };
  const source_ = (n: Node) => (n as unknown as { source?: { value?: unknown } | null }).source;
  simple(ast, {
    ImportDeclaration: (n) => void found.static.push(site(n, source_(n)?.value)),
    ExportNamedDeclaration: (n) => {
      const s = source_(n);
      if (s) found.static.push(site(n, s.value));
    },
    ExportAllDeclaration: (n) => void found.static.push(site(n, source_(n)?.value)),
    ImportExpression: (n) => {
      const s = source_(n) as { type?: string; value?: unknown } | undefined;
      found.dynamic.push(site(n, s?.type === 'Literal' ? s.value : undefined));
    },
  });
  return found;
}

/** The refusal of a dynamic import(), naming file:line:column. */
export function dynamicImportRefused(id: string, rel: string, at: ImportSite, file?: string): PlinthError {
  const what = at.specifier === undefined ? 'import()' : `import() of ${JSON.stringify(at.specifier)}`;
  return new PlinthError('PLINTH_ERR_IMPORT_REFUSED', `extension ${id}: ${rel}:${at.line}:${at.column} uses ${what}, which is not available in an isolate`, {
    extension: id,
    file: file ?? rel,
    hint: 'use static relative imports only (import x from "./lib.js")',
  });
}

function isInside(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

function refused(id: string, from: string, what: string, hint: string): PlinthError {
  return new PlinthError('PLINTH_ERR_IMPORT_REFUSED', `extension ${id}: ${from} imports ${what}`, { extension: id, file: from, hint });
}

/** The real path of a static import, or the refusal: only relative files inside the package (`root`, a real path). */
export async function resolveImport(id: string, root: string, from: string, specifier: string): Promise<string> {
  const rel = path.relative(root, from);
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) {
    throw refused(id, rel, `"${specifier}", which is not a relative path (Node built-ins, packages, absolute paths and URLs are not available in an isolate)`, HINT);
  }
  const target = path.resolve(path.dirname(from), specifier);
  if (!isInside(root, target)) throw refused(id, rel, `"${specifier}", which is outside the extension's folder`, HINT);
  let real: string;
  try {
    real = await realpath(target);
  } catch {
    throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${id}: ${rel} imports "${specifier}", which does not exist`, { extension: id, file: target });
  }
  if (!isInside(root, real)) throw refused(id, rel, `"${specifier}", which leads outside the extension's folder (a link)`, HINT);
  if (!(await stat(real)).isFile()) throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${id}: ${rel} imports "${specifier}", which is not a file`, { extension: id, file: real });
  return real;
}

/** The real paths of an extension's folder and main module, or the refusal of a main outside the folder. */
export async function packageRoots(id: string, dir: string, mainPath: string): Promise<{ root: string; main: string }> {
  const root = await realpath(dir);
  let main: string;
  try {
    main = await realpath(mainPath);
  } catch {
    throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${id}: its main module ${mainPath} does not exist`, { extension: id, file: mainPath });
  }
  if (!isInside(root, main)) throw refused(id, 'package.json "main"', "a file outside the extension's folder", 'point "main" at a file inside the package');
  return { root, main };
}

/**
 * Walks an isolate extension's module graph from its main without running anything: every module parses, every
 * static import is a relative file inside the package, no dynamic import(). Throws the first refusal; this is
 * what `plinth ls` checks so that it agrees with what starting the extension would say.
 */
export async function checkIsolateModules(id: string, dir: string, mainPath: string): Promise<void> {
  const { root, main } = await packageRoots(id, dir, mainPath);
  const seen = new Set<string>();
  const queue = [main];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const rel = path.relative(root, file);
    const found = moduleImports(id, rel, await readFile(file, 'utf8'), file);
    if (found.dynamic[0]) throw dynamicImportRefused(id, rel, found.dynamic[0], file);
    for (const s of found.static) if (s.specifier !== undefined) queue.push(await resolveImport(id, root, file, s.specifier));
  }
}
