// A runner process for the remote-runtime tests: runs the fixture folder's default export with runExtension and
// reports its states and registration on stdout as JSON lines (the test waits on them, never on a clock).
// argv: <dir> <url> <token> [instance]
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runExtension } from '../../../src/sdk/index.ts';

const [dir, url, token, instance] = process.argv.slice(2) as [string, string, string, string | undefined];
const mod = (await import(pathToFileURL(path.join(dir, 'index.js')).href)) as { default: Parameters<typeof runExtension>[0] };
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
const handle = runExtension(mod.default, {
  url,
  token,
  dir,
  reconnect: { baseMs: 50, maxMs: 400 },
  ...(instance ? { instance } : {}),
  log: (line) => process.stderr.write(line + '\n'),
});
handle.on('state', (state) => say({ state }));
handle.registered.then(
  (r) => say({ registered: r, instance: handle.instance }),
  (err: { code?: string; message?: string }) => say({ refused: err.code ?? 'unknown', message: err.message }),
);
