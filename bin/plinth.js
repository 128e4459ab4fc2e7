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
// Node strips TypeScript types only outside node_modules: an installed copy must be a link to a clone
// (`npm link`, or `npm install -g <path to the clone>`), which resolves to the clone's real path.
const { realpathSync } = await import('node:fs');
const { fileURLToPath } = await import('node:url');
const here = realpathSync(fileURLToPath(new URL('.', import.meta.url)));
if (/[\\/]node_modules[\\/]/.test(here)) {
  process.stderr.write(
    `plinth runs its TypeScript sources directly, and Node does not strip types under node_modules (${here}).\n` +
      'Install it as a link to a clone instead: `npm link` inside the clone, or `npm install -g <path to the clone>` (README "Installing the CLI").\n',
  );
  process.exit(2);
}
const { main } = await import('../src/cli/index.ts');
process.exitCode = await main(process.argv.slice(2));
