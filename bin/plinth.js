#!/usr/bin/env node
// The `plinth` launcher. Plinth runs on Node 24 (its TypeScript sources load through Node's type stripping);
// `npm ci` puts Node 24 in node_modules/.bin, so `npx plinth` and npm scripts use it. Started by an older Node
// (`node <clone>/bin/plinth.js` from a shell whose `node` is 20), it re-runs itself on that Node 24 (node24.js).
import { fileURLToPath } from 'node:url';
import { onNode24 } from './node24.js';

if (onNode24(fileURLToPath(import.meta.url), 'plinth')) {
  // Node strips TypeScript types only outside node_modules. Installed from a tarball, Plinth's sources sit under
  // node_modules: strip-types.js strips them itself (and the isolate sandbox process imports it too).
  const { realpathSync } = await import('node:fs');
  if (/[\\/]node_modules[\\/]/.test(realpathSync(fileURLToPath(new URL('.', import.meta.url))))) await import('./strip-types.js');
  const { main } = await import('../src/cli/index.ts');
  process.exitCode = await main(process.argv.slice(2));
}
