// `plinth call` as users run it: a subprocess with an embedded host over the bundled, signed plugins.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { runCli, tempDir } from '../helpers.ts';

describe('plinth call', () => {
  it('runs a stage of every bundled extension in its declared runtime and prints the output JSON', async () => {
    const data = await tempDir();
    const cases: Array<[string, string, unknown, (out: unknown) => void]> = [
      ['csv-ingest', 'parse', { text: 'a,b\n1,x\n' }, (o) => assert.deepEqual(o, { records: [{ a: 1, b: 'x' }], columns: ['a', 'b'], rowCount: 1 })],
      ['redact-fields', 'redact', { records: [{ note: 'write to jane@example.com' }] }, (o) => assert.deepEqual(o, { records: [{ note: 'write to ***' }], redactedCount: 1 })],
      ['record-validate', 'validate', { records: [{ id: 1 }] }, (o) => assert.equal((o as { validCount: number }).validCount, 1)],
      ['audit-log', 'record', { action: 'cli-test' }, (o) => assert.equal((o as { seq: number }).seq, 1)],
      ['policy-check', 'evaluate', { records: [{ r: 'eu' }, { r: 'us' }], rules: [{ id: 'eu', field: 'r', oneOf: ['eu'] }] }, (o) => assert.deepEqual([(o as { allowedCount: number }).allowedCount, (o as { deniedCount: number }).deniedCount], [1, 1])],
      ['analytics', 'summarize', { records: [{ n: 1, g: 'a' }, { n: 3, g: 'a' }], groupBy: 'g' }, (o) => assert.deepEqual(o, { count: 2, fields: { n: { count: 2, sum: 4, min: 1, max: 3, mean: 2 } }, groups: { a: 2 } })],
      ['report', 'render', { title: 'T', records: [{ a: 1 }] }, (o) => assert.deepEqual(o, { markdown: '# T\n\n| a |\n| --- |\n| 1 |\n', rowCount: 1, truncated: false })],
      ['storage-writer', 'write', { dataset: 'cli-test', records: [{ a: 'é' }] }, (o) => assert.deepEqual(o, { path: 'warehouse/cli-test.jsonl', written: 1, bytes: 11 })],
    ];
    for (const [ext, stage, input, check] of cases) {
      const r = await runCli(['call', ext, stage, '--plugins', 'plugins', '--data-dir', data, '--input', JSON.stringify(input)]);
      assert.equal(r.code, 0, `${ext}: ${r.stderr}`);
      check(JSON.parse(r.stdout));
    }
  });

  it('reads the input from a file', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'in.json'), JSON.stringify({ text: 'x\n1\n' }));
    const r = await runCli(['call', 'csv-ingest', 'parse', '--plugins', 'plugins', '--data-dir', dir, '--input-file', path.join(dir, 'in.json')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { rowCount: number }).rowCount, 1);
  });

  it('failures exit non-zero with the code and message on stderr and nothing on stdout', async () => {
    const data = await tempDir();
    const invalid = await runCli(['call', 'csv-ingest', 'parse', '--plugins', 'plugins', '--data-dir', data, '--input', '{"txt":1}']);
    assert.equal(invalid.code, 1);
    assert.equal(invalid.stdout, '');
    assert.match(invalid.stderr, /^PLINTH_ERR_STAGE_INPUT_INVALID: extension csv-ingest, stage parse/m);
    assert.match(invalid.stderr, /\/text: required property "text" is missing/);

    const unknown = await runCli(['call', 'no-such-ext', 'parse', '--plugins', 'plugins', '--data-dir', data]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /PLINTH_ERR_EXTENSION_NOT_FOUND/);

    const notJson = await runCli(['call', 'csv-ingest', 'parse', '--plugins', 'plugins', '--data-dir', data, '--input', '{nope']);
    assert.equal(notJson.code, 2);
    assert.match(notJson.stderr, /PLINTH_ERR_USAGE: --input is not valid JSON/);

    const denied = await runCli(['call', 'csv-ingest', 'read_file', '--plugins', 'plugins', '--data-dir', data, '--input', '{"path":"inbox/missing.csv"}']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /PLINTH_ERR_STAGE_FAILED: .*ENOENT/);
  });
});
