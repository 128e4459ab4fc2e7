// @ts-check
// `node --import plinth/register` (or this file's path): makes `plinth` and `plinth/*` imports resolve to THIS
// Plinth — the one whose launcher runs the process — through its package.json `exports`, wherever the importing
// file is. An extension folder holds no node_modules/plinth (a package is every file in its folder, signed and
// snapshotted; the host is not part of it), so its tests and its remote runner get the SDK this way
// (`plinth-node`, README "Writing an extension"). Installed under node_modules, Plinth's own TypeScript sources
// need strip-types.js (Node strips types only outside node_modules).
import { realpathSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

if (/[\\/]node_modules[\\/]/.test(realpathSync(fileURLToPath(new URL('.', import.meta.url))))) await import('./strip-types.js');

// Resolving from a file of this package makes Node apply its own `exports` (package self-reference).
const SELF = new URL('../package.json', import.meta.url).href;

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === 'plinth' || specifier.startsWith('plinth/')) return nextResolve(specifier, { ...context, parentURL: SELF });
    return nextResolve(specifier, context);
  },
});
