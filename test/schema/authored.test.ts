// SchemaScope: extension-authored schemas keep their JSON Schema meaning while running on linear-time parts
// under a work budget (src/schema/authored.ts). Hostile end-to-end cases live in test/security/schemas.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SchemaScope, DEFAULT_SCHEMA_LIMITS, type SchemaValidator, type SchemaLimits } from '../../src/schema/index.ts';
import { PlinthError } from '../../src/errors.ts';

const label = { extension: 'acme', file: '/x/package.json' };

function compile(schema: unknown, limits?: SchemaLimits): SchemaValidator {
  const scope = new SchemaScope(label, limits);
  const v = scope.compile(schema, '/plinth/stages/s/input');
  scope.done();
  return v!;
}

function refusal(schema: unknown, limits?: SchemaLimits, first?: (scope: SchemaScope) => void): PlinthError {
  const scope = new SchemaScope(label, limits);
  first?.(scope);
  scope.compile(schema, '/plinth/stages/s/input');
  try {
    scope.done();
  } catch (err) {
    assert.ok(err instanceof PlinthError && err.code === 'PLINTH_ERR_STAGE_SCHEMA_INVALID');
    return err;
  }
  throw new Error('expected the schema to be refused');
}

function limitError(fn: () => unknown): PlinthError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PlinthError, String(err));
    assert.equal(err.code, 'PLINTH_ERR_SCHEMA_VALIDATION_LIMIT');
    return err;
  }
  throw new Error('expected PLINTH_ERR_SCHEMA_VALIDATION_LIMIT');
}

describe('extension schemas keep their meaning', () => {
  it('uniqueItems compares deeply, whatever the key order, and reports the two items', () => {
    const v = compile({ type: 'array', uniqueItems: true });
    assert.equal(v([{ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }]), false);
    assert.deepEqual(v.errors?.[0]?.params, { i: 1, j: 0 });
    assert.equal(v([1, '1', [1], { 1: 1 }, null, true]), true);
    assert.equal(v([[1, 2], [2, 1]]), true);
  });

  it('pattern and patternProperties match as ECMAScript would for RE2-compatible patterns', () => {
    const v = compile({ type: 'object', patternProperties: { '^x-[a-z]+$': { type: 'string', pattern: '\\d{3}' } }, additionalProperties: false });
    assert.equal(v({ 'x-a': 'ab123' }), true);
    assert.equal(v({ 'x-a': 'ab12' }), false);
    assert.equal(v({ y: 'ab123' }), false);
    assert.equal(compile({ type: 'string', pattern: '^(?<year>\\d{4})-\\p{Lu}$' })('2024-Ä'), true);
  });

  it('defaults are filled in, unevaluatedProperties and formats work', () => {
    const v = compile({ type: 'object', properties: { n: { type: 'integer', default: 3 } }, allOf: [{ properties: { a: { type: 'string', format: 'email' } } }], unevaluatedProperties: false });
    const value: Record<string, unknown> = { a: 'x@example.com' };
    assert.equal(v(value), true);
    assert.equal(value.n, 3);
    assert.equal(v({ a: 'not an email' }), false);
    assert.equal(v({ a: 'x@example.com', extra: 1 }), false);
    assert.equal(compile({ type: 'string', format: 'date-time' })('2024-02-30T00:00:00Z'), false);
  });

  it("one package's schemas may $ref each other's $id", () => {
    const scope = new SchemaScope(label);
    const a = scope.compile({ $id: 'https://acme.example/row.json', type: 'object', required: ['id'] }, '/plinth/stages/a/input')!;
    const b = scope.compile({ type: 'array', items: { $ref: 'https://acme.example/row.json' } }, '/plinth/stages/b/input')!;
    scope.done();
    assert.equal(a({ id: 1 }), true);
    assert.equal(b([{ id: 1 }, {}]), false);
  });
});

describe('one $id declared twice in a package', () => {
  it('equal copies are one schema; different ones are refused naming both places', () => {
    const row = { $id: 'https://acme.example/row.json', type: 'object', required: ['id'] };
    const scope = new SchemaScope(label);
    const input = scope.compile(structuredClone(row), '/plinth/stages/a/input')!;
    const output = scope.compile(structuredClone(row), '/plinth/stages/a/output')!;
    scope.done();
    assert.equal(input({ id: 1 }), true);
    assert.equal(output({}), false);
    const err = refusal({ $id: 'https://acme.example/row.json', type: 'string' }, undefined, (s) => s.compile(row, '/plinth/stages/first/input'));
    assert.match(err.problems[0]!.message, /already declared by \/plinth\/stages\/first\/input/);
  });
});

describe('the work budget', () => {
  it('a validation past extensionSchemas.maxValidationCost is refused with the key named; the validator stays usable', () => {
    const v = compile({ type: 'array', items: { type: 'string', pattern: '^a+$' } }, { ...DEFAULT_SCHEMA_LIMITS, maxValidationCost: 100_000 });
    const err = limitError(() => v(Array.from({ length: 10_000 }, () => 'aaaa')));
    assert.equal(err.extension, 'acme');
    assert.match(err.message, /extensionSchemas\.maxValidationCost/);
    assert.equal(v(['aaaa', 'aa']), true);
    assert.ok(v.lastCost > 0 && v.lastCost < 100_000, `cost ${v.lastCost}`);
  });

  it('an exponential $ref fan-out stops at the budget, not after 2^40 evaluations', () => {
    const defs: Record<string, unknown> = { d40: { type: 'string' } };
    for (let i = 39; i >= 0; i--) defs[`d${i}`] = { allOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    const v = compile({ $defs: defs, $ref: '#/$defs/d0' }, { ...DEFAULT_SCHEMA_LIMITS, maxValidationCost: 1_000_000 });
    limitError(() => v('x'));
  });

  it('a value nested deeper than the validator can follow is refused with a coded error, not a RangeError', () => {
    let deep: unknown = [];
    for (let i = 0; i < 200_000; i++) deep = [deep];
    const v = compile({ $defs: { t: { type: 'array', items: { $ref: '#/$defs/t' } } }, $ref: '#/$defs/t' });
    const err = limitError(() => v(deep));
    assert.match(err.message, /nested too deeply/);
  });

  it("an author's own cost annotation is ignored", () => {
    const v = compile({ 'x-plinth-cost': { b: -1e15, sb: 0, s: 0, k: 0, kc: 0, a: 0 }, type: 'array', items: { 'x-plinth-cost': { b: -1e15, sb: 0, s: 0, k: 0, kc: 0, a: 0 } } }, { ...DEFAULT_SCHEMA_LIMITS, maxValidationCost: 10_000 });
    limitError(() => v(Array.from({ length: 10_000 }, (_, i) => i)));
  });
});

describe('schemas refused at compile time', () => {
  it('a $ref into data (const, enum, default) or at a map is refused, however it is spelled', () => {
    for (const [schema, into] of [
      [{ const: { a: {} }, $ref: '#/const/a' }, 'const'],
      [{ enum: [{}], $ref: '#/%65num/0' }, 'enum'],
      [{ properties: { a: {} }, $ref: '#/properties' }, 'properties'],
    ] as const) {
      const err = refusal(schema);
      assert.equal(err.problems[0]!.path, '/plinth/stages/s/input/$ref');
      assert.match(err.problems[0]!.message, new RegExp(into));
    }
    // A property or definition that happens to be called "enum" is a schema like any other.
    assert.equal(compile({ $defs: { enum: { type: 'string' } }, $ref: '#/$defs/enum' })('x'), true);
  });

  it('more patterns than extensionSchemas.maxPatterns in one package are refused once, at the first one over', () => {
    const scope = new SchemaScope(label, { ...DEFAULT_SCHEMA_LIMITS, maxPatterns: 3 });
    scope.compile({ type: 'string', pattern: '^a$' }, '/plinth/stages/a/input');
    scope.compile({ patternProperties: { '^b$': true, '^c$': true, '^a$': true, '^d$': true, '^e$': true } }, '/plinth/stages/b/input');
    try {
      scope.done();
      assert.fail('expected a refusal');
    } catch (err) {
      assert.ok(err instanceof PlinthError);
      assert.deepEqual(err.problems.map((p) => p.path), ['/plinth/stages/b/input/patternProperties/^d$']);
      assert.match(err.problems[0]!.message, /limit is 3 \(extensionSchemas\.maxPatterns\)/);
    }
  });

  it('no meta-schema can be reached by $ref', () => {
    const err = refusal({ $ref: 'https://json-schema.org/draft/2020-12/schema' });
    assert.match(err.problems[0]!.message, /can't resolve reference/);
  });
});
