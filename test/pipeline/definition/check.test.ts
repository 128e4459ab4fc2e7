// The checks against the loaded extensions: unknown extension/stage, literal `with` against the input schema,
// typed contracts (what a reference is declared to produce against what the input accepts), conditions, and
// run variables — each refusal with its path, line and hint; and what must never be refused.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PipelineInvalidError } from '../../../src/pipeline/definition/index.ts';
import { applyVariableDefaults, checkPipeline, compareSchemas, parsePipeline, validatePipeline } from '../../../src/pipeline/definition/index.ts';
import type { StageCatalog } from '../../../src/pipeline/types.ts';
import { fixtureCatalog, issueAt, readFixture } from './helpers.ts';

const check = async (name: string, catalog?: StageCatalog) => validatePipeline(await readFixture(name), name, catalog ?? (await fixtureCatalog()));

describe('pipeline check: extensions and stages', () => {
  it('unknown extension and stage with did-you-mean; with none close, the known ones', async () => {
    const { definition, issues } = await check('extensions.yaml');
    assert.equal(definition, undefined);
    const ext = issueAt(issues, 'UNKNOWN_EXTENSION', '/stages/0/extension');
    assert.deepEqual([ext.location.line, ext.hint], [4, 'did you mean "source"?']);
    const stage = issueAt(issues, 'UNKNOWN_STAGE', '/stages/1/stage');
    assert.deepEqual([stage.location.line, stage.hint], [8, 'did you mean "take"?']);
    assert.match(stage.message, /sink 2\.1\.0 has no stage "tkae"/);
    assert.equal(issueAt(issues, 'UNKNOWN_EXTENSION', '/stages/2/extension').hint, 'known here: source, sink');
  });

  it('an installed extension that cannot load says why instead of "unknown"', async () => {
    const base = await fixtureCatalog();
    const catalog: StageCatalog = { ...base, unavailable: (id) => (id === 'audit-trail' ? 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER: not signed by a trusted publisher' : undefined) };
    const i = issueAt((await check('extensions.yaml', catalog)).issues, 'UNKNOWN_EXTENSION', '/stages/2/extension');
    assert.match(i.message, /installed but cannot be used: PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER/);
  });
});

describe('pipeline check: literal with', () => {
  it('every literal mistake against the input schema, at its line; references are left to the type check', async () => {
    const { issues } = await check('input-invalid.yaml');
    const missing = issueAt(issues, 'INPUT_INVALID', '/stages/1/with/items');
    assert.deepEqual([missing.location.line, missing.hint], [10, 'add "items"']);
    assert.equal(issueAt(issues, 'INPUT_INVALID', '/stages/1/with/colour').location.line, 13);
    assert.equal(issueAt(issues, 'INPUT_INVALID', '/stages/1/with/label').location.line, 11);
    const size = issueAt(issues, 'INPUT_INVALID', '/stages/1/with/size');
    assert.match(size.message, /sink take input/);
    // mode is a reference: no INPUT_INVALID for its placeholder, only the typed contract (slow is not allowed).
    assert.equal(issues.filter((i) => i.location.path === '/stages/1/with/mode').map((i) => i.code).join(), 'TYPE_MISMATCH');
  });
});

describe('pipeline check: typed contracts', () => {
  it('a string output where an array is required is refused with both schema paths', async () => {
    const { issues } = await check('type-mismatch.yaml');
    const i = issueAt(issues, 'TYPE_MISMATCH', '/stages/1/with/items');
    assert.deepEqual([i.location.line, i.location.column], [12, 7]);
    assert.match(i.message, /is string where array is required/);
    assert.match(i.message, /source emit output #\/properties\/text/);
    assert.match(i.message, /sink take input #\/properties\/items/);
    assert.ok(i.hint);
  });

  it('enums, interpolated text, integer into boolean, array items, a whole object into a closed input, optional into required', async () => {
    const { issues } = await check('type-mismatch.yaml');
    assert.match(issueAt(issues, 'TYPE_MISMATCH', '/stages/1/with/mode').message, /may be "slow", which the input does not allow \(allowed: "fast"\)/);
    assert.match(issueAt(issues, 'TYPE_MISMATCH', '/stages/1/with/size').message, /interpolated text is string where integer is required/);
    assert.match(issueAt(issues, 'TYPE_MISMATCH', '/stages/1/with/flag').message, /integer where boolean/);
    assert.match(issueAt(issues, 'TYPE_MISMATCH', '/stages/1/with/tags').message, /#\/properties\/names\/items.*#\/properties\/tags\/items/);
    const whole = issues.filter((i) => i.code === 'TYPE_MISMATCH' && i.location.path === '/stages/2/with');
    assert.ok(whole.some((i) => /always has "text", a property the input does not allow/.test(i.message)), JSON.stringify(whole));
    assert.match(issueAt(issues, 'TYPE_MISMATCH', '/stages/3/with').message, /has "label" optional, but the input requires it/);
  });

  it('a condition declared as a string is refused; a field the output does not declare gets did-you-mean', async () => {
    const { issues } = await check('type-mismatch.yaml');
    assert.match(issueAt(issues, 'TYPE_MISMATCH', '/stages/3/if').message, /condition .* is string where boolean is required/);
    const typo = issueAt(issues, 'UNKNOWN_OUTPUT_FIELD', '/stages/4/with/label');
    assert.deepEqual([typo.location.line, typo.hint], [33, 'did you mean "text"?']);
  });

  it('never a false refusal: integer into number, anyOf, unknown, computed, enum into any, nested fields', async () => {
    const { definition, issues } = await check('compatible.yaml');
    assert.deepEqual(issues, []);
    assert.ok(definition);
  });

  it('every reference form in valid.yaml passes, compensation reading its own stage included; JSON files too', async () => {
    assert.deepEqual((await check('valid.yaml')).issues, []);
    assert.deepEqual((await check('valid.json')).issues, []);
    const json = issueAt((await check('json-mismatch.json')).issues, 'TYPE_MISMATCH', '/stages/1/with/items');
    assert.deepEqual([json.location.line, json.location.column], [10, 17]);
  });

  it('compareSchemas rules directly', () => {
    const none = (p: object | boolean, c: object | boolean) => assert.deepEqual(compareSchemas(p as never, c as never, '', ''), [], JSON.stringify([p, c]));
    const some = (p: object | boolean, c: object | boolean, re: RegExp) => {
      const m = compareSchemas(p as never, c as never, '', '');
      assert.ok(m.length > 0 && re.test(m[0]!.message), JSON.stringify([p, c, m]));
    };
    none({ type: 'integer' }, { type: 'number' });
    none({ type: 'number' }, { type: 'integer' }); // a number may be whole: the stage checks at run time
    none({ type: ['string', 'null'] }, { type: 'string' }); // overlap: accepted
    none({}, { type: 'array' });
    none({ type: 'string' }, true);
    none({ type: 'string' }, { enum: ['a', 'b'] }); // a plain string feeding an enum: accepted
    none({ const: 'a' }, { enum: ['a', 'b'] });
    none({ anyOf: [{ type: 'string' }] }, { type: 'array' });
    none({ $ref: '#/x' }, { type: 'object', required: ['a'] });
    none({ type: 'object' }, { type: 'object', required: ['a'] }); // the producer says nothing about a
    none({ type: 'object', properties: { b: {} } }, { type: 'object', required: ['a'] }); // open object: unknown
    none(false, { type: 'string' });
    some({ type: 'string' }, { type: 'array' }, /string where array/);
    some({ type: 'string' }, false, /accepts nothing/);
    some({ const: 3 }, { enum: ['a'] }, /integer where string/);
    some({ const: 'c' }, { enum: ['a', 'b'] }, /may be "c"/);
    some({ type: 'boolean' }, { enum: ['a', 'b'] }, /boolean where string/);
    some({ enum: [1, 'x'] }, { type: 'integer' }, /may be "x"/);
    some({ type: 'object', properties: { a: { type: 'string' } } }, { type: 'object', required: ['a'] }, /"a" optional/);
    some({ type: 'object', additionalProperties: false }, { type: 'object', required: ['a'] }, /never has "a"/);
    some({ type: 'object', required: ['a'], properties: { a: { type: 'string' } } }, { type: 'object', properties: { a: { type: 'integer' } } }, /string where integer/);
    some({ type: 'object', required: ['a'], properties: { a: { type: 'string' } } }, { type: 'object', additionalProperties: { type: 'number' } }, /string where number/);
    some({ type: 'array', items: { type: 'array' } }, { type: 'array', items: { type: 'object' } }, /array where object/);
    const [m] = compareSchemas({ type: 'object', required: ['a'], properties: { a: { type: 'string' } } }, { properties: { a: { type: 'integer' } } }, '/out', '/in');
    assert.deepEqual([m!.producerPath, m!.consumerPath], ['/out/properties/a', '/in/properties/a']);
  });
});

describe('pipeline check: variables', () => {
  it('applyVariableDefaults fills defaults and converts command-line strings to the declared types', async () => {
    const def = parsePipeline(await readFixture('variables-ok.yaml')).definition!;
    assert.deepEqual(applyVariableDefaults(def, { region: 'eu' }), { region: 'eu', count: 2, dry: false, tags: [] });
    assert.deepEqual(applyVariableDefaults(def, { region: 'us', count: '7', dry: 'true', tags: '["a"]' }), { region: 'us', count: 7, dry: true, tags: ['a'] });
  });

  it('refuses a missing, wrong or undeclared variable with PLINTH_ERR_PIPELINE_INVALID carrying the issues', async () => {
    const def = parsePipeline(await readFixture('variables-ok.yaml')).definition!;
    let err: PipelineInvalidError | undefined;
    try {
      applyVariableDefaults(def, { count: '0', regoin: 'eu' });
    } catch (e) {
      err = e as PipelineInvalidError;
    }
    assert.equal(err?.code, 'PLINTH_ERR_PIPELINE_INVALID');
    const issues = err.issues;
    assert.ok(issues.every((i) => i.code === 'VARIABLES_INVALID'));
    assert.equal(issues.find((i) => /"regoin" is not declared/.test(i.message))?.hint, 'did you mean "region"?');
    assert.ok(issues.some((i) => i.location.path === '/variables/region' && i.location.line === 3 && /required/.test(i.message)), JSON.stringify(issues));
    assert.ok(issues.some((i) => i.location.path === '/variables/count' && /given: 0/.test(i.message)), JSON.stringify(issues));
    assert.deepEqual((err.toJSON() as { issues: unknown[] }).issues, issues, '`issues` in the error data');
    assert.throws(() => applyVariableDefaults(def, { region: 'mars' }), (e: PipelineInvalidError) => /not allowed/.test(e.issues[0]!.message));
  });

  it('checkPipeline with variables reports them with the rest; a pipeline without variables refuses any', async () => {
    const catalog = await fixtureCatalog();
    const def = parsePipeline(await readFixture('variables-ok.yaml')).definition!;
    assert.deepEqual(checkPipeline(def, catalog, { region: 'eu' }), []);
    assert.equal(checkPipeline(def, catalog, { region: 5 })[0]!.code, 'VARIABLES_INVALID');
    const bare = parsePipeline('name: bare\nstages:\n  - { id: src, extension: source, stage: emit }\n').definition!;
    assert.match(checkPipeline(bare, catalog, { x: '1' })[0]!.message, /declares no variables/);
  });
});
