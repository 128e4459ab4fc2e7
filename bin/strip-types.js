// @ts-check
// Plinth runs its TypeScript sources directly, and Node strips types only outside node_modules. Installed from a
// tarball (`npm install -g plinth-<version>.tgz`) the sources sit under node_modules, so this hook strips the
// types of Plinth's own `src/**/*.ts` itself (node:module stripTypeScriptTypes, the transform Node applies;
// erasable syntax only). The launcher imports it; the isolate sandbox process gets it with `--import`.
import { readFileSync } from 'node:fs';
import { registerHooks, stripTypeScriptTypes } from 'node:module';
import { fileURLToPath } from 'node:url';

const SRC = new URL('../src/', import.meta.url).href;

/**
 * stripTypeScriptTypes announces itself as experimental once per process: not news for a plinth user.
 * @param {string} source
 * @param {string} url
 * @returns {string}
 */
function strip(source, url) {
  const emitWarning = process.emitWarning.bind(process);
  process.emitWarning = () => undefined;
  try {
    return stripTypeScriptTypes(source, { mode: 'strip', sourceUrl: url });
  } finally {
    process.emitWarning = emitWarning;
  }
}

registerHooks({
  load(url, context, nextLoad) {
    if (url.startsWith(SRC) && url.endsWith('.ts') && !url.slice(SRC.length).includes('node_modules/')) {
      return { format: 'module', source: strip(readFileSync(fileURLToPath(url), 'utf8'), url), shortCircuit: true };
    }
    return nextLoad(url, context);
  },
});
