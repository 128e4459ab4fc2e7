// Issue 8 "Hot reload and schemas": an extension whose stage schema has an `$id` failed on the second scan
// (`schema with key or id already exists`, one ajv shared by every scan), so it could never be hot-reloaded.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { waitFor, workspace, writeExt } from './helpers.ts';

after(() => IsolateProcess.shutdownAll());

/** Gives the lifecycle fixture's stage schemas an `$id` (and a `$ref` to it), as a real author might. */
async function withSchemaId(dir: string): Promise<void> {
  const file = path.join(dir, 'package.json');
  const pkg = JSON.parse(await readFile(file, 'utf8')) as { plinth: { stages: Record<string, { input: unknown; output: unknown }> } };
  pkg.plinth.stages.whoami!.output = { $id: 'https://schemas.example.com/whoami.json', type: 'object', required: ['id', 'version'] };
  pkg.plinth.stages.slow!.output = { $ref: 'https://schemas.example.com/whoami.json' };
  await writeFile(file, JSON.stringify(pkg, null, 2));
}

describe('hot reload of an extension whose schemas have an $id', () => {
  it('a new version is swapped in on the second scan, and again on the third', async () => {
    const w = await workspace([{ id: 'with-id', version: '1.0.0', edit: withSchemaId }]);
    try {
      const version = async () => ((await w.host.call('with-id', 'whoami', {})) as { version: string }).version;
      assert.equal(await version(), '1.0.0');
      for (const next of ['1.1.0', '1.2.0']) {
        await writeExt(w.plugins, { id: 'with-id', version: next, edit: withSchemaId });
        await w.host.reload();
        await waitFor(async () => (await version()) === next, `version ${next} serving`);
        const entry = w.host.list().find((e) => e.id === 'with-id')!;
        assert.deepEqual([entry.version, entry.state, entry.reloadError], [next, 'active', undefined]);
      }
    } finally {
      await w.host.stop();
    }
  });
});
