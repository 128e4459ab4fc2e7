// The table of calls in flight (src/sandbox/link/call-table.ts): what a Map gave its users, without a Map's table chain.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CallTable } from '../../../src/sandbox/link/call-table.ts';

describe('CallTable', () => {
  it('sets, gets, deletes and counts by id, numbers and strings alike', () => {
    const t = new CallTable<number, { n: number }>();
    t.set(1, { n: 1 });
    t.set(2, { n: 2 });
    t.set(2, { n: 22 });
    assert.equal(t.size, 2, 'setting an id again replaces it');
    assert.deepEqual(t.get(2), { n: 22 });
    assert.equal(t.has(3), false);
    assert.equal(t.delete(1), true);
    assert.equal(t.delete(1), false, 'a second delete finds nothing');
    assert.equal(t.size, 1);
    const s = new CallTable<string, number>();
    s.set('c1', 1);
    s.set('__proto__', 2);
    assert.equal(s.get('__proto__'), 2, 'no prototype: any id is just an id');
    assert.equal(s.get('toString'), undefined);
  });

  it('values() is a snapshot: settling (deleting) while walking it visits every entry once', () => {
    const t = new CallTable<number, number>();
    for (let i = 1; i <= 100; i++) t.set(i, i);
    const seen: number[] = [];
    for (const v of t.values()) {
      seen.push(v);
      t.delete(v);
    }
    assert.equal(seen.length, 100);
    assert.equal(t.size, 0);
    t.set(7, 7);
    t.clear();
    assert.deepEqual([t.size, t.values()], [0, []]);
  });
});
