// Reading pipeline files: YAML and JSON, normalisation (durations, defaults, retry policies), and every problem
// found without the extensions, each with its JSON Pointer, line and column and a hint.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadPipelineFile, parsePipeline, readPipeline, NEVER_RETRIED } from '../../../src/pipeline/definition/index.ts';
import { fixture, issueAt, readFixture } from './helpers.ts';

describe('pipeline definition: parse and normalise', () => {
  it('normalises the file: durations in ms, needs as a list, retry policies with defaults, triggers, variables schema', async () => {
    const { definition, issues } = await loadPipelineFile(fixture('valid.yaml'));
    assert.deepEqual(issues, []);
    const def = definition!;
    assert.equal(def.file, fixture('valid.yaml'));
    assert.deepEqual([def.name, def.version, def.maxConcurrentStages, def.timeoutMs, def.onFailure, def.concurrency], ['valid', '2', 2, 300_000, 'stop', 1]);
    assert.deepEqual(def.triggers, [
      { type: 'manual' },
      { type: 'event', pattern: 'orders.#', if: 'event.payload.total > 10' },
      { type: 'schedule', cron: '0 3 * * *' },
      { type: 'webhook', name: 'orders' },
    ]);
    assert.deepEqual(def.variablesSchema, {
      type: 'object',
      properties: { label: { type: 'string', default: 'hello' }, size: { type: 'integer', default: 3 }, region: { type: 'string' } },
      required: ['region'],
      additionalProperties: false,
    });
    const [src, sink] = def.stages;
    assert.equal(src!.timeoutMs, 1500);
    assert.deepEqual(src!.retry.retry, { policy: 'exponential', attempts: 4, initialDelayMs: 100, maxDelayMs: 2000, factor: 3, jitter: 0.5 });
    // Prefix-less codes are kept as written and as their PLINTH_ERR_ spelling; caller mistakes are always listed.
    for (const code of ['STAGE_TIMEOUT', 'PLINTH_ERR_STAGE_TIMEOUT', 'my.Error', ...NEVER_RETRIED]) assert.ok(src!.retry.nonRetryable.includes(code), code);
    assert.ok(NEVER_RETRIED.includes('PLINTH_ERR_STAGE_INPUT_INVALID'));
    assert.deepEqual(sink!.needs, ['src']);
    assert.deepEqual(sink!.retry.retry, { policy: 'fixed', attempts: 3, intervalMs: 1000 });
    assert.equal(sink!.if, 'stages.src.output.count > 0 && vars.region == "eu"', 'the ${{ }} around a condition is optional');
    assert.deepEqual(sink!.compensate, { extension: 'sink', stage: 'undo', with: { ok: '${{ stages.sink.output.ok }}', why: '$${{ literal }}' } });
    assert.equal(sink!.continueOnError, true);
    assert.deepEqual(sink!.location, { path: '/stages/1', line: 27, column: 5 });
    assert.deepEqual(src!.with, {}, 'no with: an empty input');
  });

  it('defaults: version, maxConcurrentStages, onFailure compensate, a manual trigger, retry none', () => {
    const { definition } = parsePipeline('name: tiny\nstages:\n  - { id: a, extension: x, stage: y }\n');
    assert.deepEqual([definition!.version, definition!.maxConcurrentStages, definition!.onFailure, definition!.triggers], ['0.0.0', 4, 'compensate', [{ type: 'manual' }]]);
    assert.deepEqual(definition!.stages[0]!.retry.retry, { policy: 'none' });
    assert.equal(definition!.stages[0]!.continueOnError, false);
  });

  it('reads JSON with the same lines and columns', async () => {
    const { definition } = parsePipeline(await readFixture('valid.json'), 'valid.json');
    assert.deepEqual(definition!.stages[1]!.location, { path: '/stages/1', line: 5, column: 5 });
    assert.deepEqual(definition!.stages[1]!.with, { items: '${{ stages.src.output.items }}' });
  });

  it('a syntax error is SYNTAX with its line and column, and no definition', async () => {
    const { definition, issues } = parsePipeline(await readFixture('syntax.yaml'));
    assert.equal(definition, undefined);
    assert.ok(issues.length >= 1);
    assert.deepEqual([issues[0]!.code, issues[0]!.location.line], ['SYNTAX', 6]);
    assert.ok(issues[0]!.hint);
    const dup = parsePipeline('name: a\nname: b\nstages: []\n').issues[0]!;
    assert.deepEqual([dup.code, dup.location.line], ['SYNTAX', 2], 'a key given twice is refused, not silently overwritten');
  });

  it('schema problems: unknown key with did-you-mean, a bad duration, a bound, a missing field — each at its line', async () => {
    const { definition, issues } = parsePipeline(await readFixture('schema.yaml'));
    assert.equal(definition, undefined);
    const unknown = issueAt(issues, 'SCHEMA', '/stages/0/neeeds');
    assert.deepEqual([unknown.location.line, unknown.location.column, unknown.hint], [6, 5, 'did you mean "needs"?']);
    const duration = issueAt(issues, 'SCHEMA', '/stages/0/timeout');
    assert.equal(duration.location.line, 7);
    assert.match(duration.hint!, /500ms, 30s, 5m/);
    assert.equal(issueAt(issues, 'SCHEMA', '/stages/0/retry/attempts').location.line, 8);
    const missing = issueAt(issues, 'SCHEMA', '/stages/1/extension');
    assert.equal(missing.location.line, 9, 'a missing field points at the stage that lacks it');
    assert.equal(missing.hint, 'add "extension"');
  });

  it('a file that is not an object, and an empty stage list, are refused', () => {
    assert.equal(parsePipeline('- a\n- b\n').issues[0]!.code, 'SCHEMA');
    assert.equal(issueAt(parsePipeline('name: x\nstages: []\n').issues, 'SCHEMA', '/stages').location.line, 2);
  });

  it('a duplicate stage id and a needs naming no stage (did you mean)', async () => {
    const { definition, issues } = parsePipeline(await readFixture('duplicate-and-needs.yaml'));
    assert.equal(definition, undefined, 'the contract parse gives no definition while anything is wrong');
    const dup = issueAt(issues, 'DUPLICATE_STAGE', '/stages/1/id');
    assert.equal(dup.location.line, 6);
    assert.match(dup.message, /first at \/stages\/0/);
    const needs = issueAt(issues, 'UNKNOWN_NEEDS', '/stages/2/needs/0');
    assert.deepEqual([needs.location.line, needs.location.column, needs.hint], [12, 13, 'did you mean "src"?']);
  });

  it('a cycle is refused with its members in order; a stage needing itself too', async () => {
    const { issues } = parsePipeline(await readFixture('cycle.yaml'));
    const cycle = issueAt(issues, 'CYCLE', '/stages/0/needs');
    assert.match(cycle.message, /a → c → b → a/);
    assert.equal(cycle.location.line, 6);
    assert.match(cycle.hint!, /"c" from a/);
    const self = issueAt(issues, 'CYCLE', '/stages/3/needs');
    assert.match(self.message, /"d" needs itself/);
    assert.equal(issues.filter((i) => i.code === 'CYCLE').length, 2, 'each cycle once, whichever stage it is entered from');
  });

  it('references: a stage not upstream, an unknown stage, an undeclared variable, a bad field, its own output', async () => {
    const { issues } = readPipeline(await readFixture('references.yaml'));
    const notUp = issueAt(issues, 'NOT_UPSTREAM', '/stages/2/with/items');
    assert.deepEqual([notUp.location.line, notUp.location.column], [17, 7]);
    assert.match(notUp.hint!, /add "other" to the needs of "sink"/);
    assert.equal(issueAt(issues, 'UNKNOWN_STAGE_REFERENCE', '/stages/2/with/label').hint, 'did you mean "src"?');
    assert.equal(issueAt(issues, 'UNKNOWN_VARIABLE', '/stages/2/with/size').hint, 'did you mean "region"?');
    assert.equal(issueAt(issues, 'BAD_REFERENCE', '/stages/2/with/flag').hint, 'did you mean "output"?');
    assert.match(issueAt(issues, 'BAD_REFERENCE', '/stages/2/with/any').message, /run has only id and pipeline/);
    assert.match(issueAt(issues, 'NOT_UPSTREAM', '/stages/2/with/tags').message, /its own stage "sink"/);
    assert.equal(issueAt(issues, 'NOT_UPSTREAM', '/stages/2/if').location.line, 15, 'conditions are checked the same way');
    assert.equal(issues.length, 7);
  });

  it('bad expressions: unterminated ${{, a variable that is not offered, CEL that does not parse', async () => {
    const { issues } = readPipeline(await readFixture('expressions.yaml'));
    assert.match(issueAt(issues, 'BAD_EXPRESSION', '/stages/1/with/items').message, /no closing "}}"/);
    assert.match(issueAt(issues, 'BAD_EXPRESSION', '/stages/1/with/label').message, /process/);
    assert.equal(issueAt(issues, 'BAD_EXPRESSION', '/stages/1/if').location.line, 10);
    const trigger = parsePipeline('name: t\ntriggers:\n  - { type: event, pattern: a.b, if: "stages.x" }\nstages:\n  - { id: a, extension: x, stage: y }\n').issues;
    assert.equal(issueAt(trigger, 'BAD_EXPRESSION', '/triggers/0/if').location.line, 3, 'a trigger condition reads only `event`');
  });

  it("a variable's schema that is not a JSON Schema is refused at that variable", async () => {
    const v = issueAt(readPipeline(await readFixture('variables.yaml')).issues, 'VARIABLES_INVALID', '/variables/bad');
    assert.equal(v.location.line, 6);
    assert.match(v.message, /"bad"/);
  });

  it('loadPipelineFile: a missing file is a usage error naming it', async () => {
    await assert.rejects(loadPipelineFile(fixture('nope.yaml')), (err: { code: string; message: string }) => err.code === 'PLINTH_ERR_USAGE' && err.message.includes('nope.yaml'));
  });
});
