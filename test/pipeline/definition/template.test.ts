// `${{ }}` references and `if` conditions during a run: one reference yields the value with its type, inside a
// longer string it is interpolated as text, `$${{` is a literal, failures are PLINTH_ERR_EXPRESSION_FAILED
// naming the path, and nothing reaches a prototype.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateCondition, parseTemplateString, resolveTemplate } from '../../../src/pipeline/definition/index.ts';
import type { RunScope } from '../../../src/pipeline/types.ts';

const scope: RunScope = {
  vars: { region: 'eu', limit: 3, opts: { deep: true } },
  stages: {
    ingest: { state: 'succeeded', output: { records: [{ id: 1 }, { id: 2 }], rowCount: 2, columns: ['id'] } },
    skipped: { state: 'skipped' },
  },
  run: { id: 'run-1', pipeline: 'demo' },
};

describe('pipeline references', () => {
  it('a string that is exactly one reference yields the referenced value with its type', () => {
    const out = resolveTemplate(
      { records: '${{ stages.ingest.output.records }}', n: '${{stages.ingest.output.rowCount}}', spaced: '  ${{ vars.opts }}  ', first: '${{ stages.ingest.output.records[0].id }}', state: '${{ stages.skipped.state }}' },
      scope,
    );
    assert.deepEqual(out, { records: [{ id: 1 }, { id: 2 }], n: 2, spaced: { deep: true }, first: 1, state: 'skipped' });
  });

  it('references inside longer strings are interpolated as text (strings as they are, the rest as JSON)', () => {
    const out = resolveTemplate(['Rows: ${{ stages.ingest.output.rowCount }} in ${{ vars.region }}', 'cols=${{ stages.ingest.output.columns }} run ${{ run.id }}', '$${{ not a reference }}', 'a "}}" ${{ "}}" }}'], scope);
    assert.deepEqual(out, ['Rows: 2 in eu', 'cols=["id"] run run-1', '${{ not a reference }}', 'a "}}" }}']);
  });

  it('expressions are CEL: computed values, nested templates, untouched literals', () => {
    const out = resolveTemplate({ big: '${{ stages.ingest.output.rowCount > 1 }}', size: '${{ size(stages.ingest.output.records) }}', list: [1, true, null, { x: '${{ vars.limit }}' }] }, scope);
    assert.deepEqual(out, { big: true, size: 2, list: [1, true, null, { x: 3 }] });
  });

  it('a failing reference is PLINTH_ERR_EXPRESSION_FAILED naming the path in the pipeline', () => {
    assert.throws(
      () => resolveTemplate({ a: { b: '${{ stages.skipped.output.records }}' } }, scope, '/stages/2/with'),
      (err: { code: string; message: string; problems: Array<{ path: string }> }) => err.code === 'PLINTH_ERR_EXPRESSION_FAILED' && err.message.includes('/stages/2/with/a/b') && err.problems[0]!.path === '/stages/2/with/a/b',
    );
    assert.throws(() => resolveTemplate('${{ vars.region', scope), { code: 'PLINTH_ERR_EXPRESSION_FAILED' });
  });

  it('no prototype is reachable and a __proto__ key stays a key', () => {
    const hostile: RunScope = { ...scope, stages: { x: { state: 'succeeded', output: JSON.parse('{"__proto__": {"polluted": 1}}') as never } } };
    const out = resolveTemplate(JSON.parse('{"__proto__": "${{ stages.x.output }}"}') as never, hostile) as Record<string, unknown>;
    assert.ok(Object.hasOwn(out, '__proto__'));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.throws(() => resolveTemplate('${{ vars.constructor }}', scope), { code: 'PLINTH_ERR_EXPRESSION_FAILED' });
  });

  it('parseTemplateString: whole vs interpolated, escapes, unterminated', () => {
    assert.equal(parseTemplateString('plain'), undefined);
    assert.equal(parseTemplateString('${{ a }}')!.whole, true);
    assert.equal(parseTemplateString('x ${{ a }}')!.whole, false);
    assert.equal(parseTemplateString('${{ a }}${{ b }}')!.whole, false);
    assert.throws(() => parseTemplateString('${{ a '), /no closing/);
    assert.throws(() => parseTemplateString('${{  }}'), /empty/);
  });
});

describe('pipeline conditions', () => {
  it('bare or wrapped CEL over vars and stages; true or false', () => {
    assert.equal(evaluateCondition('stages.ingest.output.rowCount > 1 && vars.region == "eu"', scope), true);
    assert.equal(evaluateCondition('${{ vars.region == "us" }}', scope), false);
    assert.equal(evaluateCondition('stages.skipped.state == "skipped" || has(stages.skipped.output)', scope), true);
  });

  it('a condition that fails or is not a boolean is PLINTH_ERR_EXPRESSION_FAILED, never a silent skip', () => {
    assert.throws(() => evaluateCondition('stages.skipped.output.x', scope, '/stages/3/if'), (e: { code: string; message: string }) => e.code === 'PLINTH_ERR_EXPRESSION_FAILED' && e.message.includes('/stages/3/if'));
    assert.throws(() => evaluateCondition('vars.region', scope), (e: { code: string; message: string }) => e.code === 'PLINTH_ERR_EXPRESSION_FAILED' && /not true or false/.test(e.message));
    assert.throws(() => evaluateCondition('process.exit(1)', scope), { code: 'PLINTH_ERR_EXPRESSION_INVALID' });
  });
});
