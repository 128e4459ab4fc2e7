import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { compileExpression, MAX_EXPRESSION_LENGTH } from '../../src/expr/index.ts';
import { PlinthError } from '../../src/errors.ts';
import { ROOT } from '../helpers.ts';

const vars = ['payload', 'topic'];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof PlinthError ? err.code : `not a PlinthError: ${String(err)}`;
  }
  return undefined;
}

describe('expressions (CEL)', () => {
  it('evaluates conditions over JSON payloads (numbers are doubles, comparisons across int and double work)', () => {
    const big = compileExpression('payload.bytes > 10485760', { variables: vars });
    assert.equal(big.test({ payload: { bytes: 12_000_000 } }), true);
    assert.equal(big.test({ payload: { bytes: 1024 } }), false);
    const conf = compileExpression('payload.classification == "confidential" && topic.startsWith("data.")', { variables: vars });
    assert.equal(conf.test({ payload: { classification: 'confidential' }, topic: 'data.access' }), true);
  });

  it('transforms to JSON: ints to numbers, maps to objects, bytes to base64, timestamps to ISO text', () => {
    const t = compileExpression('{"user": payload.u, "kb": payload.bytes / 1024.0, "n": 3, "b": b"hi", "at": timestamp("2024-01-01T00:00:00Z")}', { variables: vars });
    assert.deepEqual(t.evaluate({ payload: { u: 'ann', bytes: 2048 } }), { user: 'ann', kb: 2, n: 3, b: 'aGk=', at: '2024-01-01T00:00:00.000Z' });
  });

  it('refuses at compile time, with the path: bad syntax, an unknown variable, too long, too deep', () => {
    for (const bad of ['payload.x +', 'secret == 1', 'x'.repeat(MAX_EXPRESSION_LENGTH + 1), '('.repeat(100) + '1' + ')'.repeat(100), '']) {
      try {
        compileExpression(bad, { variables: vars, path: '/events/routes/0/filter' });
        assert.fail(`accepted ${bad.slice(0, 30)}`);
      } catch (err) {
        assert.ok(err instanceof PlinthError);
        assert.equal(err.code, 'PLINTH_ERR_EXPRESSION_INVALID');
        assert.equal(err.problems[0]!.path, '/events/routes/0/filter');
      }
    }
  });

  it('a missing field or a type mismatch is PLINTH_ERR_EXPRESSION_FAILED, never a prototype', () => {
    const e = compileExpression('payload.missing == 1.0', { variables: vars });
    assert.equal(codeOf(() => e.test({ payload: {} })), 'PLINTH_ERR_EXPRESSION_FAILED');
    for (const key of ['__proto__', 'constructor']) {
      const p = compileExpression(`payload.${key}`, { variables: vars });
      assert.equal(codeOf(() => p.evaluate({ payload: {} })), 'PLINTH_ERR_EXPRESSION_FAILED', key);
    }
    assert.equal(compileExpression('has(payload.x) && payload.x > 1.0', { variables: vars }).test({ payload: {} }), false);
  });

  it("refuses CEL's backtracking `matches` (ReDoS on hostile payloads); matchesRe2 runs in linear time", () => {
    for (const bad of ['payload.s.matches("^(a+)+$")', 'matches(payload.s, "a")', 'true || [1].exists(x, payload.s.matches("b"))']) {
      assert.equal(codeOf(() => compileExpression(bad, { variables: vars })), 'PLINTH_ERR_EXPRESSION_INVALID', bad);
    }
    const re = compileExpression('payload.s.matchesRe2("^(a+)+$")', { variables: vars });
    // With a backtracking engine this input would not finish in any reasonable time (30 characters take seconds).
    assert.equal(re.test({ payload: { s: 'a'.repeat(5000) + '!' } }), false);
    assert.equal(re.test({ payload: { s: 'aaa' } }), true);
    assert.equal(codeOf(() => compileExpression('payload.s.matchesRe2(payload.p)', { variables: vars }).test({ payload: { s: 'a', p: '(' } })), 'PLINTH_ERR_EXPRESSION_FAILED');
  });

  it('a condition is true only for the boolean true', () => {
    assert.equal(compileExpression('payload.v', { variables: vars }).test({ payload: { v: 'yes' } }), false);
  });

  it('the host never evaluates code: neither src/ nor the expression library use eval or new Function', async () => {
    const lib = path.join(ROOT, 'node_modules', '@marcbachmann', 'cel-js', 'lib');
    const files = [
      ...(await readdir(lib)).filter((f) => f.endsWith('.js')).map((f) => path.join(lib, f)),
      ...(await readdir(path.join(ROOT, 'src'), { recursive: true })).filter((f) => f.endsWith('.ts')).map((f) => path.join(ROOT, 'src', f)),
    ];
    for (const f of files) {
      const text = await readFile(f, 'utf8');
      assert.doesNotMatch(text, /\bnew Function\s*\(|\beval\s*\(/, f);
    }
  });
});
