// Runs this extension as a remote runner: connects to a running host's control channel with a runner token,
// registers the signed manifest (package.json + plinth.sig) and serves the host's stage calls until stopped
// (Ctrl-C / SIGTERM stop it gracefully). `npm start` runs it.
import { fileURLToPath } from 'node:url';
import { runExtension } from 'plinth/sdk';
import extension from './index.ts';

const url = process.env.PLINTH_URL ?? 'ws://127.0.0.1:7420/rpc';
const token = process.env.PLINTH_TOKEN;
if (!token) {
  console.error('set PLINTH_TOKEN to a runner token of the host (and PLINTH_URL if it is not at ws://127.0.0.1:7420/rpc)');
  process.exit(2);
}
const runner = runExtension(extension, { url, token, dir: fileURLToPath(new URL('.', import.meta.url)), log: (line) => console.error(line) });
runner.on('state', (state) => console.error(`runner: ${state}`));
const { id, version } = await runner.registered;
console.error(`serving ${id}@${version} for ${url}`);
