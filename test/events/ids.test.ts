// Event ids are UUIDv7 (time-ordered), so the journal's id index stays append-only (bench/events.bench.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventId } from '../../src/events/index.ts';

describe('event ids', () => {
  it('are RFC 9562 version-7 UUIDs carrying the millisecond, unique and in creation order within and across milliseconds', () => {
    const ms = Date.UTC(2026, 11, 1, 12, 0, 0);
    const ids = [...Array.from({ length: 5000 }, () => eventId(ms)), ...Array.from({ length: 10 }, () => eventId(ms + 1))];
    for (const id of ids.slice(0, 3)) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(parseInt(ids[0]!.replace(/-/g, '').slice(0, 12), 16), ms);
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids, 'sorted as made (over 4096 in one millisecond borrow the next one)');
  });

  it('a clock that goes back never makes an id sort before an earlier one', () => {
    const a = eventId(Date.UTC(2030, 0, 1));
    const b = eventId(Date.UTC(2029, 0, 1));
    assert.ok(b > a);
  });
});
