// Inputs cross into a worker thread as JSON text (issue 14: faster than structured clone, and the thread parses
// exactly what JSON can say). JSON.stringify is lossy without a word: it drops functions and undefined in objects,
// turns undefined in arrays and NaN / ±Infinity into null, a Map or a Set into {}, a Date into a string, and calls
// any toJSON(). So before a value is sent it is checked to be plain JSON data, and what is not is named by its
// path. One walk, no allocation on the success path (the path is built only for the error; cycles are looked for
// only once the walk has overflowed the stack).

/** Why a value is not plain JSON data: where (segments from the root) and what was found there. */
interface Problem {
  path: Array<string | number>;
  found: string;
}

function describe(value: object): string {
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? `a ${name}` : 'an object with a prototype';
}

/**
 * The first problem in `value`, depth first. `ancestors` is the chain of containers above it when cycles are
 * looked for (the slow path, after the fast walk overflowed the stack); undefined on the fast path.
 */
function walk(value: unknown, ancestors: object[] | undefined): Problem | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : { path: [], found: String(value) };
    case 'object': {
      if (value === null) return undefined;
      if (ancestors) {
        if (ancestors.includes(value)) return { path: [], found: 'a circular reference' };
        ancestors.push(value);
      }
      const problem = Array.isArray(value) ? walkArray(value as unknown[], ancestors) : walkObject(value, ancestors);
      ancestors?.pop();
      return problem;
    }
    default:
      // function, symbol, bigint, or undefined where JSON has no absent
      return { path: [], found: value === undefined ? 'undefined' : `a ${typeof value}` };
  }
}

function walkArray(value: unknown[], ancestors: object[] | undefined): Problem | undefined {
  for (let i = 0; i < value.length; i++) {
    const item = value[i];
    const problem = item === undefined ? { path: [], found: 'undefined (JSON would make it null)' } : walk(item, ancestors);
    if (problem) {
      problem.path.push(i);
      return problem;
    }
  }
  return undefined;
}

function walkObject(value: object, ancestors: object[] | undefined): Problem | undefined {
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return { path: [], found: describe(value) };
  // for…in, not Object.keys: no array per object. A plain object inherits nothing enumerable, so it sees exactly
  // the own enumerable string keys, which are what JSON.stringify writes.
  for (const key in value) {
    const item = (value as Record<string, unknown>)[key];
    // An undefined property is absent in JSON, as it is to a schema: nothing is lost.
    if (item === undefined) continue;
    const problem = walk(item, ancestors);
    if (problem) {
      problem.path.push(key);
      return problem;
    }
  }
  return undefined;
}

function pathText(root: string, path: Array<string | number>): string {
  let text = root;
  for (let i = path.length - 1; i >= 0; i--) {
    const segment = path[i]!;
    text += typeof segment === 'number' ? `[${segment}]` : /^[A-Za-z_$][\w$]*$/.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
  }
  return text;
}

/**
 * `value` as JSON text, or a description of why it is not plain JSON data (`{ error }`): objects with no prototype
 * but Object's (or none), arrays without holes, strings, finite numbers, booleans and null. Undefined at the top
 * is null (no input). `root` names the value in the description ("input" → "input.records[3].when is a Date").
 */
export function plainJsonText(value: unknown, root: string): { json: string } | { error: string } {
  if (value === undefined) return { json: 'null' };
  let problem: Problem | undefined;
  try {
    problem = walk(value, undefined);
  } catch (fast) {
    // The stack overflowed (a cycle, or nesting deeper than any JSON could be written), or a getter threw: walk
    // again watching for cycles, to name the one there is.
    try {
      problem = walk(value, []) ?? { path: [], found: `not readable as JSON (${fast instanceof Error ? fast.message : String(fast)})` };
    } catch (err) {
      return { error: `${root} cannot be read as JSON (${err instanceof Error ? err.message : String(err)})` };
    }
  }
  if (problem) return { error: `${pathText(root, problem.path)} is ${problem.found}` };
  return { json: JSON.stringify(value) };
}
