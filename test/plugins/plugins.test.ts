// The bundled extensions' own logic, called as the host will call their stages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseCsv, toRecords } from '../../plugins/csv-ingest/index.js';
import { createRedactor } from '../../plugins/redact-fields/index.js';
import { validateRecords } from '../../plugins/record-validate/index.js';
import { evaluatePolicy } from '../../plugins/policy-check/index.js';
import { summarize } from '../../plugins/analytics/index.js';
import { renderReport } from '../../plugins/report/index.js';
import { toJsonLines, utf8Length } from '../../plugins/storage-writer/index.js';

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

describe('policy-check', () => {
  const records = [
    { id: 1, region: 'eu', amount: 10, status: 'settled' },
    { id: 2, region: 'us', amount: 5, status: 'settled' },
    { id: 3, region: 'eu', status: 'refunded' },
  ];
  const rules = [
    { id: 'region', field: 'region', oneOf: ['eu'] },
    { id: 'amount', field: 'amount', required: true, min: 0, max: 100 },
    { id: 'no-refunds', field: 'status', notOneOf: ['refunded'] },
  ];

  it('allows records that break no rule and lists every violation of the others, by index', () => {
    const out = evaluatePolicy(records, rules);
    assert.deepEqual(out.allowed, [records[0]]);
    assert.deepEqual([out.allowedCount, out.deniedCount], [1, 2]);
    assert.deepEqual(out.denied.map((d: { index: number; violations: Array<{ rule: string }> }) => [d.index, d.violations.map((v) => v.rule)]), [[1, ['region']], [2, ['amount', 'no-refunds']]]);
  });

  it('fails when more than maxDeniedRatio of the records are denied; dot paths reach nested fields', () => {
    assert.throws(() => evaluatePolicy(records, rules, 0.5), /denied 2 of 3 records, more than maxDeniedRatio 0.5/);
    assert.equal(evaluatePolicy([{ a: { b: 2 } }], [{ id: 'x', field: 'a.b', max: 1 }]).deniedCount, 1);
    assert.equal(evaluatePolicy([{ a: {} }], [{ id: 'x', field: 'a.__proto__', required: true }]).deniedCount, 1, 'no prototype is read as a field');
  });
});

describe('analytics', () => {
  it('count, per numeric field count/sum/min/max/mean, groups; fields inferred when not named', () => {
    const out = summarize([{ n: 2, g: 'a', s: 'x' }, { n: 4, g: 'b' }, { g: 'a' }], undefined, 'g');
    assert.deepEqual(out, { count: 3, fields: { n: { count: 2, sum: 6, min: 2, max: 4, mean: 3 } }, groups: { a: 2, b: 1 } });
    assert.deepEqual(summarize([{ __proto__: 1 }], ['missing'], '__proto__').fields, {});
  });

  it('a group called __proto__ is a group, not a prototype', () => {
    const out = summarize(JSON.parse('[{"g":"__proto__"},{"g":"__proto__"}]'), [], 'g');
    assert.equal(Object.getOwnPropertyDescriptor(out.groups, '__proto__')?.value, 2);
  });
});

describe('report', () => {
  it('a title, facts and a table of the first rows; pipes and newlines cannot break the table', () => {
    const out = renderReport({ title: 'Sales', records: [{ a: 'x|y', b: 'line\nbreak' }, { a: 2 }, { a: 3 }], maxRows: 2, facts: { total: 3 } });
    assert.equal(out.markdown, '# Sales\n\n- **total**: 3\n\n| a | b |\n| --- | --- |\n| x\\|y | line break |\n| 2 |  |\n\n_1 more rows not shown_\n');
    assert.deepEqual([out.rowCount, out.truncated], [3, true]);
    assert.match(renderReport({ title: 'Empty', records: [] }).markdown, /_no records_/);
  });
});

describe('storage-writer', () => {
  it('JSON Lines, one record a line; UTF-8 byte counts', () => {
    assert.equal(toJsonLines([{ a: 1 }, { b: 'x' }]), '{"a":1}\n{"b":"x"}\n');
    assert.equal(toJsonLines([]), '');
    assert.deepEqual([utf8Length('a'), utf8Length('é'), utf8Length('€'), utf8Length('😀')], [1, 2, 3, 4]);
  });
});
