// Inputs cross into a worker thread as JSON text (issue 14). JSON.stringify would change some values without a
// word (drop a function, turn a Map into {}, a Date into a string, NaN into null); each of those is refused before
// anything is sent, with STAGE_INPUT_INVALID naming where it is, and the stage never runs.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { harness, opts, within, WORKER_FIXTURES } from './harness.ts';
import { rejectsWith } from '../../helpers.ts';
import type { Json } from '../../../src/sdk/index.ts';

const cyclic: Record<string, unknown> = { name: 'loop' };
cyclic.self = { back: cyclic };

class Point {
  x = 1;
}

const REFUSED: Array<[string, unknown, RegExp]> = [
  ['a function', { f: () => 1 }, /input\.f is a function/],
  ['a Map', { lookup: new Map([['a', 1]]) }, /input\.lookup is a Map/],
  ['a Date deep inside', { records: [{ id: 1 }, { id: 2, when: new Date(0) }] }, /input\.records\[1\]\.when is a Date/],
  ['a class instance', { at: new Point() }, /input\.at is a Point/],
  ['NaN', { amount: Number.NaN }, /input\.amount is NaN/],
  ['Infinity in an array', [1, Number.POSITIVE_INFINITY], /input\[1\] is Infinity/],
  ['undefined in an array', [1, undefined], /input\[1\] is undefined/],
  ['a bigint', { n: 10n }, /input\.n is a bigint/],
  ['a symbol', { s: Symbol('x') }, /input\.s is a symbol/],
  ['a circular reference', cyclic, /input\.self\.back is a circular reference/],
  ['a key that is not an identifier', { 'odd key': { 'x-y': () => 0 } }, /input\["odd key"\]\["x-y"\] is a function/],
];

describe('worker runtime: inputs are plain JSON data', () => {
  it('refuses what JSON would silently change, naming the path; the stage is never run and the sandbox lives on', async () => {
    const h = await harness(path.join(WORKER_FIXTURES, 'healthy'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      for (const [what, input, message] of REFUSED) {
        const err = await rejectsWith(h.sandbox.call('echo', input as Json, opts()), 'PLINTH_ERR_STAGE_INPUT_INVALID');
        assert.match(err.message, message, what);
        assert.match(err.message, /not plain JSON data/, what);
      }
      // `echo` counts its calls in its module state: none of the refused ones reached it.
      const first = (await h.sandbox.call('echo', { ok: true }, opts())) as { calls: number; input: Json };
      assert.equal(first.calls, 1);
      assert.deepEqual(first.input, { ok: true });
      assert.deepEqual(h.exits, []);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });

  it('carries plain data exactly: nesting, unicode, numbers, null, a null-prototype object; an undefined property is absent', async () => {
    const h = await harness(path.join(WORKER_FIXTURES, 'healthy'));
    await within(h.sandbox.start(), 10_000, 'start');
    try {
      const bare = Object.assign(Object.create(null) as Record<string, Json>, { k: 'v' });
      const input = { text: 'zaï 𝄞 "quoted"\n', n: -0.5, big: 1e21, nil: null, yes: true, list: [[], {}, [1, [2, [3]]]], bare, gone: undefined };
      const out = (await h.sandbox.call('echo', input as unknown as Json, opts())) as { input: Json };
      assert.deepEqual(out.input, { text: 'zaï 𝄞 "quoted"\n', n: -0.5, big: 1e21, nil: null, yes: true, list: [[], {}, [1, [2, [3]]]], bare: { k: 'v' } });
      // No input at all is null, as JSON has no undefined.
      assert.equal(((await h.sandbox.call('echo', undefined as unknown as Json, opts())) as { input: Json }).input, null);
    } finally {
      await h.sandbox.stop(1_000);
    }
  });
});
