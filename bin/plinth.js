#!/usr/bin/env node
// The `plinth` launcher. Plinth runs on Node 24 (its TypeScript sources load through Node's type stripping);
// `npm ci` puts Node 24 in node_modules/.bin, so `npx plinth` and npm scripts use it.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `plinth needs Node.js 24 or newer; this is ${process.version} (${process.execPath}).\n` +
      'Run it as `npx plinth …` after `npm ci` (the project ships Node 24 in node_modules/.bin), or install Node 24.\n',
  );
  process.exit(2);
}
// Node strips TypeScript types only outside node_modules. Installed from a tarball, Plinth's sources sit under
// node_modules: strip-types.js strips them itself (and the isolate sandbox process imports it too).
const { realpathSync } = await import('node:fs');
const { fileURLToPath } = await import('node:url');
if (/[\\/]node_modules[\\/]/.test(realpathSync(fileURLToPath(new URL('.', import.meta.url))))) await import('./strip-types.js');
const { main } = await import('../src/cli/index.ts');
process.exitCode = await main(process.argv.slice(2));
