// The in-process bus the registry publishes lifecycle events on: patterns (`*` one word, `#` zero or more),
// unsubscribe, one failing listener never stopping the others, and publish resolving after its listeners.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalBus } from '../../src/events/index.ts';
import type { PlinthEvent } from '../../src/sdk/index.ts';

describe('LocalBus', () => {
  it('delivers to every matching pattern, with id, time and source', async () => {
    const bus = new LocalBus();
    const got: Record<string, string[]> = { exact: [], star: [], hash: [], all: [] };
    bus.subscribe('orders.created', (e) => void got.exact!.push(e.topic));
    bus.subscribe('orders.*', (e) => void got.star!.push(e.topic));
    bus.subscribe('orders.#', (e) => void got.hash!.push(e.topic));
    bus.subscribe('#', (e) => void got.all!.push(e.topic));
    const seen: PlinthEvent[] = [];
    bus.subscribe('orders.created', (e) => void seen.push(e));
    for (const topic of ['orders.created', 'orders.eu.created', 'orders', 'users.created']) await bus.publish(topic, { n: 1 }, 'shop');
    assert.deepEqual(got, {
      exact: ['orders.created'],
      star: ['orders.created'],
      hash: ['orders.created', 'orders.eu.created', 'orders'],
      all: ['orders.created', 'orders.eu.created', 'orders', 'users.created'],
    });
    assert.equal(seen[0]!.source, 'shop');
    assert.deepEqual(seen[0]!.payload, { n: 1 });
    assert.match(seen[0]!.id, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(seen[0]!.time)));
  });

  it('unsubscribe stops delivery', async () => {
    const bus = new LocalBus();
    const got: string[] = [];
    const off = bus.subscribe('a.b', (e) => void got.push(e.topic));
    await bus.publish('a.b', null);
    off();
    await bus.publish('a.b', null);
    assert.deepEqual(got, ['a.b']);
  });

  it('one listener throwing or rejecting never stops the others; publish waits for async listeners', async () => {
    const bus = new LocalBus();
    const got: string[] = [];
    bus.subscribe('x.y', () => {
      throw new Error('sync boom');
    });
    bus.subscribe('x.y', () => Promise.reject(new Error('async boom')));
    bus.subscribe('x.y', async () => {
      await new Promise((resolve) => setImmediate(resolve));
      got.push('slow');
    });
    bus.subscribe('x.y', () => void got.push('fast'));
    await bus.publish('x.y', null);
    assert.deepEqual(got.sort(), ['fast', 'slow']);
  });

  it('refuses topics and patterns that are not valid', async () => {
    const bus = new LocalBus();
    assert.throws(() => bus.subscribe('a..b', () => undefined), TypeError);
    await assert.rejects(bus.publish('a.*', null), TypeError);
    await assert.rejects(bus.publish('', null), TypeError);
  });
});
