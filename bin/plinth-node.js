#!/usr/bin/env node
// @ts-check
// `plinth-node [node args…]`: Node 24 with this Plinth's SDK importable (`plinth/sdk`, `plinth/sdk/testing`) and
// the flags its sandboxes need (isolated-vm wants --no-node-snapshot). What a scaffolded extension's scripts run
// (`plinth new`): `npm test` is `node <plinth>/bin/plinth-node.js --test`, whichever `node` the shell has —
// started by an older one, it runs the Node 24 that ships with Plinth (node24.js).
import { fileURLToPath } from 'node:url';
import { onNode24, runAndExit } from './node24.js';

if (onNode24(fileURLToPath(import.meta.url), 'plinth-node')) {
  const register = new URL('./register.js', import.meta.url).href;
  runAndExit(process.execPath, ['--no-node-snapshot', '--disable-warning=ExperimentalWarning', '--import', register, ...process.argv.slice(2)]);
}
