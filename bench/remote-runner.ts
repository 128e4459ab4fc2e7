// A runner process for bench/remote.bench.ts: runExtension over bench/fixtures/echo-remote (signed copy in <dir>).
// argv: <dir> <url> <token>. Prints {"registered":…} once it serves.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runExtension } from '../src/sdk/index.ts';

const [dir, url, token] = process.argv.slice(2) as [string, string, string];
const mod = (await import(pathToFileURL(path.join(dir, 'index.js')).href)) as { default: Parameters<typeof runExtension>[0] };
const handle = runExtension(mod.default, { url, token, dir, log: () => undefined });
handle.registered.then(
  (r) => console.log(JSON.stringify({ registered: r })),
  (err: unknown) => {
    console.error(String(err));
    process.exit(1);
  },
);
