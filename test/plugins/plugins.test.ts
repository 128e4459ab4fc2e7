// The bundled extensions' own logic, called as the host will call their stages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCsv, toRecords } from '../../plugins/csv-ingest/index.js';
import { createRedactor } from '../../plugins/redact-fields/index.js';
import { validateRecords } from '../../plugins/record-validate/index.js';

describe('csv-ingest', () => {
  it('parses quoted cells with delimiters, escaped quotes, newlines, CRLF and a BOM', () => {
    const text = '\uFEFFname,note,amount\r\n"Doe, Jane","said ""hi""\nthen left",12.5\r\nBob,,7\r\n';
    assert.deepEqual(parseCsv(text), [['name', 'note', 'amount'], ['Doe, Jane', 'said "hi"\nthen left', '12.5'], ['Bob', '', '7']]);
    assert.deepEqual(toRecords(parseCsv(text)), {
      columns: ['name', 'note', 'amount'],
      rowCount: 2,
      records: [
        { name: 'Doe, Jane', note: 'said "hi"\nthen left', amount: 12.5 },
        { name: 'Bob', note: null, amount: 7 },
      ],
    });
  });

  it('keeps long digit strings (ids, phone numbers) as text rather than losing precision', () => {
    const { records } = toRecords(parseCsv('id,flag\n12345678901234567890,true\n007,false\n'));
    assert.deepEqual(records, [{ id: '12345678901234567890', flag: true }, { id: '007', flag: false }]);
  });

  it('reports an unterminated quote, a ragged row and a duplicate column clearly', () => {
    assert.throws(() => parseCsv('a,"b\n'), /closing " is missing/);
    assert.throws(() => toRecords(parseCsv('a,b\n1,2,3\n')), /row 2 has 3 cells but there are 2 columns/);
    assert.throws(() => toRecords(parseCsv('a,a\n1,2\n')), /column "a" twice/);
  });
});

describe('redact-fields', () => {
  it('masks named fields (dot paths), e-mails and Luhn-valid card numbers in any string', () => {
    const redact = createRedactor({ fields: ['ssn', 'address.street'], keepLast: 2 });
    const { records, redactedCount } = redact([
      { ssn: '123-45-6789', address: { street: 'Main St 1', city: 'Oslo' }, note: 'mail jane@example.com, card 4111 1111 1111 1111, order 1234567890123' },
    ]);
    assert.deepEqual(records[0], {
      ssn: '***89',
      address: { street: '*** 1', city: 'Oslo' },
      note: 'mail ***, card ***1111, order 1234567890123',
    });
    assert.equal(redactedCount, 4);
  });

  it('removes fields in remove mode and leaves the input records untouched', () => {
    const input = [{ email: 'a@b.co', keep: 1 }];
    const { records } = createRedactor({ fields: ['email'], mode: 'remove' })(input);
    assert.deepEqual(records, [{ keep: 1 }]);
    assert.deepEqual(input, [{ email: 'a@b.co', keep: 1 }]);
  });
});

describe('record-validate', () => {
  it('splits records into valid and invalid with every broken rule', () => {
    const rules = {
      id: { type: 'integer', required: true, min: 1 },
      email: { type: 'string', pattern: '^[^@]+@[^@]+$' },
      tier: { enum: ['free', 'pro'] },
    };
    const result = validateRecords([{ id: 1, email: 'a@b', tier: 'pro' }, { id: 0, email: 'nope', tier: 'gold' }, { email: 'x@y' }], { rules });
    assert.equal(result.validCount, 1);
    assert.deepEqual(result.invalid.map((i: { index: number; errors: unknown[] }) => [i.index, i.errors]), [
      [1, [{ field: 'id', message: 'must be at least 1' }, { field: 'email', message: 'must match ^[^@]+@[^@]+$' }, { field: 'tier', message: 'must be one of "free", "pro"' }]],
      [2, [{ field: 'id', message: 'is required' }]],
    ]);
  });

  it('rejects unknown fields when asked', () => {
    const result = validateRecords([{ id: 1, extra: true }], { rules: { id: { type: 'integer' } }, rejectUnknownFields: true });
    assert.deepEqual(result.invalid[0].errors, [{ field: 'extra', message: 'is not a known field' }]);
  });
});
