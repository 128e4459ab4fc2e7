import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { ERROR_CODES } from '../src/errors.ts';
import { ROOT } from './helpers.ts';

describe('error codes', () => {
  it('every code is documented in docs/errors.md, and the doc lists no code that does not exist', async () => {
    const doc = await readFile(path.join(ROOT, 'docs', 'errors.md'), 'utf8');
    const documented = new Set([...doc.matchAll(/`(PLINTH_ERR_[A-Z_]+)`/g)].map((m) => m[1]));
    assert.deepEqual([...documented].sort(), Object.keys(ERROR_CODES).sort());
  });

  it('every code used in src/ is in the table', async () => {
    const files = (await readdir(path.join(ROOT, 'src'), { recursive: true })).filter((f) => f.endsWith('.ts'));
    for (const f of files) {
      const text = await readFile(path.join(ROOT, 'src', f), 'utf8');
      for (const [code] of text.matchAll(/PLINTH_ERR_[A-Z_]+[A-Z]/g)) assert.ok(code in ERROR_CODES, `${f} uses ${code}`);
    }
  });
});
