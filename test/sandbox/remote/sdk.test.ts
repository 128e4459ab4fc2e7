// The SDK runs in an extension author's process: `plinth/sdk` (src/sdk/index.ts, runExtension included) must load
// only the wire pieces it needs, never the host (registry, control server, policy, stores…). Checked on the real
// module graph: every module it imports at run time (type-only imports are erased), followed transitively.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT } from '../../helpers.ts';
import { RUNNER_TOKEN } from './helpers.ts';
import { runExtension } from '../../../src/sdk/index.ts';
import { PlinthError } from '../../../src/errors.ts';

async function runtimeImports(file: string, seen = new Set<string>()): Promise<Set<string>> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = await readFile(file, 'utf8');
  for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"](\.[^'"]+)['"]/gm)) {
    await runtimeImports(path.resolve(path.dirname(file), m[1]!), seen);
  }
  return seen;
}

describe('the SDK', () => {
  it('loads no host internals: only src/sdk, the JSON-RPC link, the remote protocol and the error table', async () => {
    const files = [...(await runtimeImports(path.join(ROOT, 'src', 'sdk', 'index.ts')))].map((f) => path.relative(path.join(ROOT, 'src'), f)).sort();
    assert.deepEqual(files, ['errors.ts', 'sandbox/link/index.ts', 'sandbox/link/ws.ts', 'sandbox/remote/protocol.ts', 'sdk/index.ts', 'sdk/runner.ts']);
  });

  it('runExtension: a token the host refuses is final (registered rejects with CONTROL_AUTH) and the runner stops; a missing package.json too', async () => {
    const { remoteHost } = await import('./helpers.ts');
    const h = await remoteHost([]);
    try {
      const states: string[] = [];
      const handle = runExtension({ stages: {} }, { url: h.url, token: 'not-a-token', dir: path.join(ROOT, 'test', 'fixtures', 'remote', 'echo-remote'), handleSignals: false, log: () => undefined });
      handle.on('state', (s) => states.push(s));
      await assert.rejects(handle.registered, (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_CONTROL_AUTH');
      await handle.stop();
      assert.equal(handle.state, 'stopped');
      const missing = runExtension({ stages: {} }, { url: h.url, token: RUNNER_TOKEN, dir: path.join(ROOT, 'no-such-folder'), handleSignals: false, log: () => undefined });
      await assert.rejects(missing.registered, (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_PACKAGE_JSON_INVALID');
      await missing.stop();
    } finally {
      await h.stop();
    }
  });
});
