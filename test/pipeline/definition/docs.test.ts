// docs/pipelines.md lists every issue code the checks give, and no other; the schema file is the one the code uses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ISSUE_CODES } from '../../../src/pipeline/definition/index.ts';
import { ROOT } from '../../helpers.ts';

describe('pipeline docs', () => {
  it('every issue code is in the docs/pipelines.md table, and the table lists no other', async () => {
    const doc = await readFile(path.join(ROOT, 'docs', 'pipelines.md'), 'utf8');
    const table = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual([...table].sort(), Object.keys(ISSUE_CODES).sort());
  });

  it('every issue code the source gives is in the table', async () => {
    const dir = path.join(ROOT, 'src', 'pipeline', 'definition');
    for (const f of ['parse.ts', 'check.ts', 'template.ts', 'contracts.ts']) {
      const text = await readFile(path.join(dir, f), 'utf8');
      for (const [, code] of text.matchAll(/issue\('([A-Z_]+)'/g)) assert.ok(code! in ISSUE_CODES, `${f} gives ${code}`);
    }
  });
});
