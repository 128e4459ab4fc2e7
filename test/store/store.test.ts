import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { openStore, storeFile, SqliteStore, APPLICATION_ID, STORE_VERSION } from '../../src/store/index.ts';
import { KvStore } from '../../src/policy/index.ts';
import { isPlinthError } from '../../src/errors.ts';
import { tempDir } from '../helpers.ts';

const event = (n: number, topic = 'orders.created') => ({ id: `e${n}`, topic, time: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(), payload: { n }, source: 'test' });

function rejects(fn: () => unknown, code: string, file: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isPlinthError(err), String(err));
    assert.equal(err.code, code);
    assert.ok(err.message.includes(file), `${err.message} names ${file}`);
    assert.equal(err.file, file);
    return true;
  });
}

describe('store: opening a file', () => {
  it('creates a WAL store with every migration applied, and opens it again', async () => {
    const dir = await tempDir();
    const store = openStore(dir);
    store.close();
    const db = new DatabaseSync(storeFile(dir), { readOnly: true });
    assert.equal((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
    assert.equal((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version, STORE_VERSION);
    assert.equal((db.prepare('PRAGMA application_id').get() as { application_id: number }).application_id, APPLICATION_ID);
    db.close();
    openStore(dir).close();
  });

  it('refuses a file written by a newer Plinth, naming it, and leaves it untouched', async () => {
    const dir = await tempDir();
    const file = storeFile(dir);
    const db = new DatabaseSync(file);
    db.exec(`PRAGMA application_id = ${APPLICATION_ID}; PRAGMA user_version = ${STORE_VERSION + 5}; CREATE TABLE future (x);`);
    db.close();
    const before = await readFile(file);
    rejects(() => openStore(dir), 'PLINTH_ERR_STORE_NEWER', file);
    assert.deepEqual(await readFile(file), before);
  });

  it('refuses a file that is not a database at all, and leaves it untouched', async () => {
    const dir = await tempDir();
    const file = storeFile(dir);
    await writeFile(file, 'my notes, not a database\n'.repeat(100));
    const before = await readFile(file);
    rejects(() => openStore(dir), 'PLINTH_ERR_STORE_INVALID', file);
    assert.deepEqual(await readFile(file), before);
  });

  it('refuses an SQLite database of another program, and leaves it untouched', async () => {
    const dir = await tempDir();
    const file = storeFile(dir);
    const db = new DatabaseSync(file);
    db.exec('CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES (\'ada\');');
    db.close();
    const before = await readFile(file);
    rejects(() => openStore(dir), 'PLINTH_ERR_STORE_INVALID', file);
    assert.deepEqual(await readFile(file), before);
  });

  it('refuses a corrupt store, naming it, and leaves it untouched', async () => {
    const dir = await tempDir();
    const file = storeFile(dir);
    const store = SqliteStore.open(file);
    store.appendEvents(Array.from({ length: 400 }, (_, i) => ({ event: { ...event(i), payload: { pad: 'x'.repeat(500) } }, subscribers: ['a'] })));
    store.close();
    // Checkpoint the WAL into the main file, then overwrite pages past the header with garbage.
    const db = new DatabaseSync(file);
    db.exec('PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;');
    db.close();
    const bytes = await readFile(file);
    assert.ok(bytes.length > 8192 * 2);
    bytes.fill(0xa5, 4096 + 16, bytes.length - 4096);
    await writeFile(file, bytes);
    const before = await readFile(file);
    rejects(() => openStore(dir), 'PLINTH_ERR_STORE_INVALID', file);
    assert.deepEqual(await readFile(file), before);
    assert.equal((await stat(file)).size, before.length);
  });
});

describe('store: journal, deliveries, dead letters', () => {
  it('keeps pending deliveries per subscriber in publish order until acknowledged, across a reopen', async () => {
    const dir = await tempDir();
    let store = openStore(dir);
    const seqs = store.appendEvents([1, 2, 3].map((n) => ({ event: event(n), subscribers: ['a', 'b'] })));
    store.acknowledge([{ subscriber: 'a', seq: seqs[0]! }]);
    store.recordFailure('b', seqs[0]!, { attempt: 1, startedAt: event(1).time, failedAt: event(1).time, error: { message: 'boom' } });
    store.close();
    store = openStore(dir);
    assert.deepEqual(store.pending('a').map((p) => p.event.id), ['e2', 'e3']);
    const b = store.pending('b');
    assert.deepEqual(b.map((p) => p.event.id), ['e1', 'e2', 'e3']);
    assert.equal(b[0]!.attempts[0]!.error.message, 'boom');
    assert.deepEqual(b[0]!.event, event(1));
    assert.deepEqual([...store.pendingCounts()].sort(), [['a', 2], ['b', 3]]);
    store.close();
  });

  it('dead letters: filtered list, show, replay as a new pending delivery, purge, expiry', async () => {
    const store = openStore(await tempDir());
    const seqs = store.appendEvents([event(1, 'orders.created'), event(2, 'users.joined')].map((e) => ({ event: e, subscribers: ['a'] })));
    const at = new Date(Date.UTC(2026, 0, 1, 1));
    const attempts = [{ attempt: 1, startedAt: at.toISOString(), failedAt: at.toISOString(), error: { code: 'PLINTH_ERR_STAGE_FAILED', message: 'no' } }];
    const d1 = store.deadLetter('a', seqs[0], event(1, 'orders.created'), attempts, at, 60_000);
    const d2 = store.deadLetter('a', seqs[1], event(2, 'users.joined'), attempts, new Date(at.getTime() + 1000), 60_000);
    assert.deepEqual(store.pending('a'), []);
    assert.deepEqual(store.listDeadLetters({ topicMatches: (t) => t.startsWith('orders.') }).map((d) => d.id), [d1.id]);
    assert.deepEqual(store.listDeadLetters({ since: new Date(at.getTime() + 500).toISOString() }).map((d) => d.id), [d2.id]);
    assert.deepEqual(store.listDeadLetters({ subscriber: 'nobody' }), []);
    assert.deepEqual(store.getDeadLetter(d1.id)?.attempts, attempts);
    const replayed = store.replayDeadLetter(d1.id, ['a']);
    assert.equal(replayed?.event.id, 'e1');
    assert.deepEqual(store.pending('a').map((p) => p.event.id), ['e1']);
    assert.equal(store.getDeadLetter(d1.id), undefined);
    assert.equal(store.expireDeadLetters(new Date(at.getTime() + 60_500)), 0);
    assert.equal(store.expireDeadLetters(new Date(at.getTime() + 61_000)), 1);
    store.deadLetter('a', undefined, event(3), attempts, at, 60_000);
    assert.equal(store.purgeDeadLetters({}), 1);
    assert.deepEqual(store.listDeadLetters(), []);
    store.close();
  });

  it('compacts only events that every subscriber acknowledged', async () => {
    const store = openStore(await tempDir());
    const seqs = store.appendEvents([event(1), event(2)].map((e) => ({ event: e, subscribers: ['a'] })));
    store.acknowledge([{ subscriber: 'a', seq: seqs[0]! }]);
    assert.equal(store.compact(new Date(Date.UTC(2030, 0, 1))), 1);
    assert.equal(store.getEvent('e1'), undefined);
    assert.equal(store.getEvent('e2')?.id, 'e2');
    store.close();
  });
});

describe('store: ctx.kv is durable', () => {
  it('kv survives a reopen, and its entries count against the quotas from the start', async () => {
    const dir = await tempDir();
    let store = openStore(dir);
    const kv = KvStore.durable(store.kv('acme.one'));
    kv.set('greeting', JSON.stringify({ hello: 'world' }));
    kv.set('gone', '1');
    kv.delete('gone');
    KvStore.durable(store.kv('acme.two')).set('greeting', '"other"');
    store.close();
    store = openStore(dir);
    const again = KvStore.durable(store.kv('acme.one'));
    assert.deepEqual(again.get('greeting'), { hello: 'world' });
    assert.equal(again.has('gone'), false);
    assert.equal(again.size, 1);
    assert.equal(again.bytes, KvStore.entryBytes('greeting', JSON.stringify({ hello: 'world' })));
    assert.equal(KvStore.durable(store.kv('acme.two')).get('greeting'), 'other');
    store.close();
    assert.equal(path.basename(storeFile(dir)), 'plinth.db');
  });
});

describe('store: the run journal', () => {
  it('a run row saved without its definition updates state, record and owner and keeps the definition written first', async () => {
    const store = openStore(await tempDir());
    try {
      const row = { id: 'r1', pipeline: 'p', state: 'pending', createdAt: '2026-01-01T00:00:00.000Z', record: '{"a":1}', owner: '1@h' };
      store.runs.save({ ...row, definition: '{"name":"p"}' }, [{ runId: 'r1', stageId: 's', position: 0, state: 'pending', record: '{}' }]);
      store.runs.save({ ...row, state: 'running', record: '{"a":2}', owner: '2@h' }, [{ runId: 'r1', stageId: 's', position: 0, state: 'running', record: '{"x":1}' }]);
      const got = store.runs.get('r1')!;
      assert.deepEqual([got.run.state, got.run.record, got.run.owner, got.run.definition], ['running', '{"a":2}', '2@h', '{"name":"p"}']);
      assert.deepEqual(got.stages.map((s) => [s.state, s.record]), [['running', '{"x":1}']]);
    } finally {
      store.close();
    }
  });

  it('an update of a run row that is not there is PLINTH_ERR_STORE_FAILED and writes none of its stage rows', async () => {
    const store = openStore(await tempDir());
    try {
      const row = { id: 'gone', pipeline: 'p', state: 'running', createdAt: '2026-01-01T00:00:00.000Z', record: '{}', owner: '1@h' };
      assert.throws(
        () => store.runs.save(row, [{ runId: 'gone', stageId: 's', position: 0, state: 'running', record: '{}' }]),
        (err: unknown) => isPlinthError(err) && err.code === 'PLINTH_ERR_STORE_FAILED' && err.message.includes('gone'),
      );
      assert.equal(store.runs.get('gone'), undefined);
      assert.equal(store.runs.list().length, 0);
    } finally {
      store.close();
    }
  });
});

describe('store: one group commit per turn shared by its writers', () => {
  it('the writers of a turn share one transaction; each hears after COMMIT (a second connection sees its writes then, not before)', async () => {
    const dir = await tempDir();
    const store = openStore(dir) as SqliteStore;
    const reader = openStore(dir);
    try {
      const seenAtDone: Array<{ event: boolean; row: boolean }> = [];
      const before: Array<{ event: boolean; row: boolean }> = [];
      const look = () => ({ event: reader.getEvent('e1') !== undefined, row: reader.runs.get('r1') !== undefined });
      const outcome: unknown[] = [];
      const settled = new Promise<void>((resolve) => {
        let n = 0;
        const done = (err?: unknown) => {
          outcome.push(err);
          seenAtDone.push(look());
          if (++n === 2) resolve();
        };
        store.groupCommit({
          write: () => {
            store.appendEvents([{ event: event(1), subscribers: [] }]);
            // Inside the shared transaction: not committed yet, so the other connection does not see it.
            before.push(look());
          },
          done,
        });
        store.groupCommit({
          write: () => store.runs.save({ id: 'r1', pipeline: 'p', state: 'pending', createdAt: '2026-01-01T00:00:00.000Z', record: '{}', owner: '1@h', definition: '{}' }, []),
          done,
        });
      });
      assert.deepEqual(look(), { event: false, row: false }, 'nothing is written before the end of the turn');
      await settled;
      assert.deepEqual(outcome, [undefined, undefined]);
      assert.deepEqual(before, [{ event: false, row: false }]);
      assert.deepEqual(seenAtDone, [{ event: true, row: true }, { event: true, row: true }]);
    } finally {
      store.close();
      reader.close();
    }
  });

  it('a writer that throws undoes only its own writes: the others of the turn are committed, it hears its error', async () => {
    const dir = await tempDir();
    const store = openStore(dir) as SqliteStore;
    try {
      const outcomes = await Promise.all([
        new Promise<unknown>((resolve) => store.groupCommit({ write: () => void store.appendEvents([{ event: event(1), subscribers: ['s'] }]), done: resolve })),
        new Promise<unknown>((resolve) =>
          store.groupCommit({
            write: () => {
              store.appendEvents([{ event: event(2), subscribers: ['s'] }]);
              // An update of a run row that is not there: PLINTH_ERR_STORE_FAILED, after this writer's event went in.
              store.runs.save({ id: 'gone', pipeline: 'p', state: 'running', createdAt: '2026-01-01T00:00:00.000Z', record: '{}', owner: '1@h' }, []);
            },
            done: resolve,
          }),
        ),
        new Promise<unknown>((resolve) => store.groupCommit({ write: () => void store.appendEvents([{ event: event(3), subscribers: ['s'] }]), done: resolve })),
      ]);
      assert.equal(outcomes[0], undefined);
      assert.ok(isPlinthError(outcomes[1]) && outcomes[1].code === 'PLINTH_ERR_STORE_FAILED', String(outcomes[1]));
      assert.equal(outcomes[2], undefined);
      assert.deepEqual(store.pending('s').map((p) => p.event.id), ['e1', 'e3'], 'the failed writer\'s event is not in the store');
      assert.equal(store.getEvent('e2'), undefined);
    } finally {
      store.close();
    }
  });

  it('writers waiting when the store closes hear PLINTH_ERR_SHUTDOWN, and nothing of theirs is written', async () => {
    const dir = await tempDir();
    const store = openStore(dir) as SqliteStore;
    let wrote = false;
    const outcome = new Promise<unknown>((resolve) => store.groupCommit({ write: () => void (wrote = true), done: resolve }));
    store.close();
    const err = await outcome;
    assert.ok(isPlinthError(err) && err.code === 'PLINTH_ERR_SHUTDOWN', String(err));
    assert.equal(wrote, false);
  });
});
