// Loads the isolate shim (shim.js: the guest half of the settle pattern, compiled inside every extension's isolate)
// as the closure body process.ts hands to context.evalClosure. The shim lives in a real .js file so it is linted
// (as a script without Node globals) and reviewed as code, not as a 400-line string; it is read once, here, when
// the sandbox process starts.
import { readFileSync } from 'node:fs';

/** The file name its frames carry in isolate stack traces (no host path); the shim drops frames with it. */
export const SHIM_FILENAME = 'plinth:isolate-shim';

const SHIM_FILE = new URL('./shim.js', import.meta.url);

/** `return (<shim.js>)($0 … $5)`: the shim's function expression applied to the closure's arguments. */
export const SHIM_SOURCE = `return (${readFileSync(SHIM_FILE, 'utf8').trimEnd()}\n)($0, $1, $2, $3, $4, $5);\n`;
