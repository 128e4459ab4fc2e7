import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTopicMatcher, matchTopic, normalizePattern, LocalBus } from '../../src/events/index.ts';
import type { PlinthEvent } from '../../src/sdk/index.ts';

// RabbitMQ's topic-exchange vectors: rabbitmq/rabbitmq-server, src/rabbit_tests.erl, test_topic_matching/0 —
// 26 bindings, the expected queues for 11 routing keys, then the same keys after removing bindings 1, 5, 11,
// 19 and 21 (t1 "a.b.c", t5 "#", t11 "a.#", t19 "vodka.martini", t21 "*.#"). Plinth topics have at least one
// word, so the empty binding t17 and the empty routing key "" are left out; nothing else is changed.
const BINDINGS: Array<[string, string]> = [
  ['a.b.c', 't1'], ['a.*.c', 't2'], ['a.#.b', 't3'], ['a.b.b.c', 't4'], ['#', 't5'], ['#.#', 't6'], ['#.b', 't7'],
  ['*.*', 't8'], ['a.*', 't9'], ['*.b.c', 't10'], ['a.#', 't11'], ['a.#.#', 't12'], ['b.b.c', 't13'], ['a.b.b', 't14'],
  ['a.b', 't15'], ['b.c', 't16'], ['*.*.*', 't18'], ['vodka.martini', 't19'], ['a.b.c', 't20'], ['*.#', 't21'],
  ['#.*.#', 't22'], ['*.#.#', 't23'], ['#.#.#', 't24'], ['*', 't25'], ['#.b.#', 't26'],
];

const EXPECTED: Record<string, string[]> = {
  'a.b.c': ['t1', 't2', 't5', 't6', 't10', 't11', 't12', 't18', 't20', 't21', 't22', 't23', 't24', 't26'],
  'a.b': ['t3', 't5', 't6', 't7', 't8', 't9', 't11', 't12', 't15', 't21', 't22', 't23', 't24', 't26'],
  'a.b.b': ['t3', 't5', 't6', 't7', 't11', 't12', 't14', 't18', 't21', 't22', 't23', 't24', 't26'],
  'b.c.c': ['t5', 't6', 't18', 't21', 't22', 't23', 't24', 't26'],
  'a.a.a.a.a': ['t5', 't6', 't11', 't12', 't21', 't22', 't23', 't24'],
  'vodka.gin': ['t5', 't6', 't8', 't21', 't22', 't23', 't24'],
  'vodka.martini': ['t5', 't6', 't8', 't19', 't21', 't22', 't23', 't24'],
  'b.b.c': ['t5', 't6', 't10', 't13', 't18', 't21', 't22', 't23', 't24', 't26'],
  'nothing.here.at.all': ['t5', 't6', 't21', 't22', 't23', 't24'],
  oneword: ['t5', 't6', 't21', 't22', 't23', 't24', 't25'],
};

const REMOVED = ['t1', 't5', 't11', 't19', 't21'];

const EXPECTED_AFTER_REMOVAL: Record<string, string[]> = {
  'a.b.c': ['t2', 't6', 't10', 't12', 't18', 't20', 't22', 't23', 't24', 't26'],
  'a.b': ['t3', 't6', 't7', 't8', 't9', 't12', 't15', 't22', 't23', 't24', 't26'],
  'a.b.b': ['t3', 't6', 't7', 't12', 't14', 't18', 't22', 't23', 't24', 't26'],
  'b.c.c': ['t6', 't18', 't22', 't23', 't24', 't26'],
  'a.a.a.a.a': ['t6', 't12', 't22', 't23', 't24'],
  'vodka.gin': ['t6', 't8', 't22', 't23', 't24'],
  'vodka.martini': ['t6', 't8', 't22', 't23', 't24'],
  'b.b.c': ['t6', 't10', 't13', 't18', 't22', 't23', 't24', 't26'],
  'nothing.here.at.all': ['t6', 't22', 't23', 't24'],
  oneword: ['t6', 't22', 't23', 't24', 't25'],
};

const sorted = (xs: string[]) => [...xs].sort();

describe('topic matcher: RabbitMQ topic-exchange vectors', () => {
  it('matches every routing key to exactly the expected bindings', () => {
    const m = createTopicMatcher<string>();
    for (const [pattern, q] of BINDINGS) m.add(pattern, q);
    for (const [topic, expected] of Object.entries(EXPECTED)) assert.deepEqual(sorted(m.match(topic)), sorted(expected), topic);
  });

  it('after removing bindings, matches exactly the remaining expected set', () => {
    const m = createTopicMatcher<string>();
    for (const [pattern, q] of BINDINGS) m.add(pattern, q);
    for (const [pattern, q] of BINDINGS) if (REMOVED.includes(q)) m.remove(pattern, q);
    for (const [topic, expected] of Object.entries(EXPECTED_AFTER_REMOVAL)) assert.deepEqual(sorted(m.match(topic)), sorted(expected), topic);
    // Removing the rest leaves nothing matching (RabbitMQ's "remove the entire exchange").
    for (const [pattern, q] of BINDINGS) if (!REMOVED.includes(q)) m.remove(pattern, q);
    assert.equal(m.size, 0);
    for (const topic of ['a.b.c', 'b.b.c', 'oneword']) assert.deepEqual(m.match(topic), []);
  });

  it('agrees with topics.ts matchTopic on every vector', () => {
    for (const [topic, expected] of Object.entries(EXPECTED)) {
      const viaRule = BINDINGS.filter(([p]) => matchTopic(p, topic)).map(([, q]) => q);
      assert.deepEqual(sorted(viaRule), sorted(expected), topic);
    }
  });
});

describe('topic matcher: values and counts', () => {
  it('one value under two matching patterns comes once; removing one pattern keeps the other', () => {
    const m = createTopicMatcher<string>();
    m.add('orders.*', 'sub');
    m.add('orders.#', 'sub');
    assert.deepEqual(m.match('orders.created'), ['sub']);
    m.remove('orders.*', 'sub');
    assert.deepEqual(m.match('orders.created'), ['sub']);
    m.remove('orders.#', 'sub');
    assert.deepEqual(m.match('orders.created'), []);
  });

  it('spellings that normalize alike are counted apart: removing `#.#` keeps the `#` binding of the same value', () => {
    assert.equal(normalizePattern('#.#'), '#');
    assert.equal(normalizePattern('#.*.#'), '*.#');
    assert.equal(normalizePattern('a.#.*.#.b'), 'a.*.#.b');
    const m = createTopicMatcher<string>();
    m.add('#', 'v');
    m.add('#.#', 'v');
    m.remove('#.#', 'v');
    assert.deepEqual(m.match('x.y'), ['v']);
    assert.equal(m.size, 1);
  });

  it('the same pair added twice needs two removes; removing a pair never added does nothing', () => {
    const m = createTopicMatcher<number>();
    m.add('a.*', 1);
    m.add('a.*', 1);
    m.remove('a.*', 2);
    m.remove('b.*', 1);
    m.remove('a.*', 1);
    assert.deepEqual(m.match('a.x'), [1]);
    m.remove('a.*', 1);
    assert.deepEqual(m.match('a.x'), []);
  });

  it('patterns with many `#` match exactly as topics.ts says, and a 128-word topic is fine', () => {
    const m = createTopicMatcher<string>();
    const many = '#.a.#.b.#.c.#.d.#';
    m.add(many, 'many');
    m.add('#', 'all');
    const long = Array.from({ length: 128 }, (_, i) => ['a', 'b', 'c', 'd'][i % 4]).join('.');
    assert.ok(long.length <= 255);
    assert.deepEqual(sorted(m.match(long)), ['all', 'many']);
    assert.deepEqual(m.match('a.b.c'), ['all']);
    m.remove(many, 'many');
    assert.deepEqual(m.match(long), ['all']);
    // Regression (qlobber era): values of side patterns were added into a Set the trie kept.
    m.add(many, 'many');
    m.match(long);
    m.remove(many, 'many');
    assert.deepEqual(m.match('x'), ['all']);
  });

  it('agrees with topics.ts matchTopic on thousands of random patterns and topics, through adds and removes (no cache)', () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const words = ['a', 'b', 'c'];
    const pattern = () => Array.from({ length: 1 + rand(5) }, () => ['a', 'b', 'c', '*', '#', '#'][rand(6)]!).join('.');
    const topic = () => Array.from({ length: 1 + rand(6) }, () => words[rand(3)]!).join('.');
    const m = createTopicMatcher<number>({ cacheSize: 0 });
    const held = new Map<number, string>();
    for (let i = 0; i < 400; i++) {
      const p = pattern();
      m.add(p, i);
      held.set(i, p);
    }
    const check = () => {
      for (let k = 0; k < 300; k++) {
        const t = topic();
        const expected = [...held].filter(([, p]) => matchTopic(p, t)).map(([i]) => i).sort((x, y) => x - y);
        assert.deepEqual(m.match(t).sort((x, y) => x - y), expected, t);
      }
    };
    check();
    for (let i = 0; i < 400; i += 2) {
      m.remove(held.get(i)!, i);
      held.delete(i);
    }
    check();
  });

  it('a hostile pattern of many `#` against a 128-word topic stays cheap (no backtracking blow-up)', () => {
    const m = createTopicMatcher<string>({ cacheSize: 0 });
    const hostile = Array.from({ length: 60 }, (_, i) => (i % 2 ? 'a' : '#')).join('.');
    m.add(hostile, 'h');
    const long = Array.from({ length: 127 }, () => 'a').concat('b').join('.');
    // Linear in words × trie nodes (a few thousand steps); a backtracking walk would not finish here.
    assert.deepEqual(m.match(long), []);
    assert.deepEqual(m.match(Array.from({ length: 128 }, () => 'a').join('.')), ['h']);
  });

  it('the topic cache never serves a stale answer: a subscribe or unsubscribe after a match is seen by the next match', () => {
    const m = createTopicMatcher<string>({ cacheSize: 2 });
    m.add('a.*', 'x');
    assert.deepEqual(m.match('a.b'), ['x']);
    m.add('#.b', 'y');
    assert.deepEqual(m.match('a.b').sort(), ['x', 'y']);
    m.remove('a.*', 'x');
    assert.deepEqual(m.match('a.b'), ['y']);
    // A caller changing the array it got does not change the next answer.
    m.match('a.b').push('junk');
    assert.deepEqual(m.match('a.b'), ['y']);
    // More distinct topics than the cache holds: still right.
    for (const t of ['c.b', 'd.b', 'e.b', 'a.b']) assert.deepEqual(m.match(t), ['y'], t);
  });

  it('refuses an invalid pattern and matches nothing for an invalid topic', () => {
    const m = createTopicMatcher<string>();
    assert.throws(() => m.add('a..b', 'x'), TypeError);
    assert.throws(() => m.add('a.b#', 'x'), TypeError);
    m.add('#', 'x');
    assert.deepEqual(m.match('a..b'), []);
  });
});

describe('LocalBus fans out through the matcher', () => {
  it('delivers to matching subscribers only; unsubscribe is idempotent and cheap', async () => {
    const bus = new LocalBus();
    const got: string[] = [];
    const offA = bus.subscribe('orders.*', (e) => void got.push(`a:${e.topic}`));
    bus.subscribe('#.created', (e) => void got.push(`b:${e.topic}`));
    await bus.publish('orders.created', { n: 1 }, 'x');
    await bus.publish('users.deleted', {}, 'x');
    offA();
    offA();
    await bus.publish('orders.created', { n: 2 }, 'x');
    assert.deepEqual(got.sort(), ['a:orders.created', 'b:orders.created', 'b:orders.created']);
    assert.equal(bus.subscriptionCount, 1);
  });

  it('a throwing listener does not stop the others; headers travel with the event', async () => {
    const bus = new LocalBus();
    const seen: PlinthEvent[] = [];
    bus.subscribe('#', () => {
      throw new Error('boom');
    });
    bus.subscribe('#', (e) => void seen.push(e));
    await bus.publish('a.b', 1, 'src', { correlationId: 'c-1' });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.source, 'src');
    assert.deepEqual(seen[0]!.headers, { correlationId: 'c-1' });
  });

  it('10 000 subscriptions, one publish reaches the one that matches', async () => {
    const bus = new LocalBus();
    const hits: number[] = [];
    for (let i = 0; i < 10_000; i++) bus.subscribe(`tenant${i}.orders.*`, () => void hits.push(i));
    await bus.publish('tenant4242.orders.created', {});
    assert.deepEqual(hits, [4242]);
  });
});
