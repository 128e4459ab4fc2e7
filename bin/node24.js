// @ts-check
// Finding a Node 24 for Plinth's launchers. Plinth runs on Node 24 (its TypeScript sources load through Node's type
// stripping). A clone brings one in node_modules (the `node` devDependency), but a shell's `node` may be older — as
// when an extension's `npm test` runs `node <plinth>/bin/plinth-node.js` outside the clone. The launchers then
// re-run themselves on that Node 24 instead of refusing.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MIN_MAJOR = 24;

/** @returns {boolean} */
export function nodeIsRecentEnough() {
  return Number(process.versions.node.split('.')[0]) >= MIN_MAJOR;
}

/**
 * A Node 24 binary shipped with this Plinth (its `node` devDependency), or undefined.
 * @returns {string | undefined}
 */
export function bundledNode() {
  for (const rel of ['../node_modules/node/bin/node', '../node_modules/.bin/node']) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(file)) return file;
  }
  return undefined;
}

/**
 * Runs `node args…` as a child with the terminal (stdio inherited) and ends this process the way the child
 * ended. SIGINT from a terminal reaches both (one process group): this side waits for the child to finish;
 * SIGTERM/SIGHUP sent to this process alone are passed on.
 * @param {string} node
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} [env]
 */
export function runAndExit(node, args, env = process.env) {
  const child = spawn(node, args, { stdio: 'inherit', env });
  /** @type {NodeJS.Signals[]} */
  const passOn = ['SIGTERM', 'SIGHUP'];
  const forward = (/** @type {NodeJS.Signals} */ signal) => child.kill(signal);
  for (const s of passOn) process.on(s, forward);
  process.on('SIGINT', () => undefined);
  child.on('error', (err) => {
    process.stderr.write(`cannot start ${node}: ${err.message}\n`);
    process.exit(2);
  });
  child.on('exit', (code, signal) => {
    for (const s of passOn) process.removeListener(s, forward);
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
}

/**
 * Refuses an old Node, after trying to re-run `script args…` on the bundled Node 24. Returns only on Node 24.
 * @param {string} script the launcher's own file
 * @param {string} name shown in the message
 * @returns {boolean} true when this process is on Node 24 and should go on; false when a child took over
 */
export function onNode24(script, name) {
  if (nodeIsRecentEnough()) return true;
  const node = process.env.PLINTH_REEXEC === '1' ? undefined : bundledNode();
  if (node) {
    runAndExit(node, [script, ...process.argv.slice(2)], { ...process.env, PLINTH_REEXEC: '1' });
    return false;
  }
  process.stderr.write(
    `${name} needs Node.js ${MIN_MAJOR} or newer; this is ${process.version} (${process.execPath}).\n` +
      'Run it as `npx plinth …` after `npm ci` (the project ships Node 24 in node_modules/.bin), or install Node 24.\n',
  );
  process.exit(2);
}
