// An in-process publish/subscribe bus with AMQP-style patterns. The full bus (ordering, retries, dead letters,
// Redis) builds on this contract; the registry and sandboxes only need publish/subscribe. Fan-out goes through a
// TopicMatcher (a trie), never a loop over every subscription; publish runs the middleware chain first.
import { randomUUID } from 'node:crypto';
import type { Json, PlinthEvent } from '../sdk/index.ts';
import { isValidPattern, isValidTopic } from './topics.ts';
import { createTopicMatcher, type TopicMatcher } from './matcher.ts';
import { applyMiddleware, type Middleware, type PublishFunction } from './middleware.ts';

export type EventListener = (event: PlinthEvent) => void | Promise<void>;

export interface EventPublisher {
  publish(topic: string, payload: Json, source?: string, headers?: Record<string, string>): Promise<void>;
}

interface Subscription {
  pattern: string;
  listener: EventListener;
}

export class LocalBus implements EventPublisher {
  readonly #matcher: TopicMatcher<Subscription>;
  readonly #middleware: Middleware[] = [];
  readonly #publish: PublishFunction;

  constructor(options: { matcher?: TopicMatcher<Subscription> } = {}) {
    this.#matcher = options.matcher ?? createTopicMatcher<Subscription>();
    this.#publish = applyMiddleware(this.#middleware, (topic, payload, source, headers) => this.#deliver(topic, payload, source, headers));
  }

  subscribe(pattern: string, listener: EventListener): () => void {
    if (!isValidPattern(pattern)) throw new TypeError(`not a valid topic pattern: ${JSON.stringify(pattern)}`);
    const sub: Subscription = { pattern, listener };
    this.#matcher.add(pattern, sub);
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      this.#matcher.remove(pattern, sub);
    };
  }

  /** Adds a middleware at the end of the chain; returns a function that removes it. */
  use(middleware: Middleware): () => void {
    this.#middleware.push(middleware);
    return () => {
      const i = this.#middleware.indexOf(middleware);
      if (i >= 0) this.#middleware.splice(i, 1);
    };
  }

  /** Subscriptions held (for tests and metrics). */
  get subscriptionCount(): number {
    return this.#matcher.size;
  }

  publish(topic: string, payload: Json, source?: string, headers?: Record<string, string>): Promise<void> {
    if (!isValidTopic(topic)) return Promise.reject(new TypeError(`not a valid topic: ${JSON.stringify(topic)}`));
    return this.#publish(topic, payload, source, headers);
  }

  async #deliver(topic: string, payload: Json, source?: string, headers?: Record<string, string>): Promise<void> {
    const event: PlinthEvent = { topic, payload, id: randomUUID(), time: new Date().toISOString(), ...(source ? { source } : {}), ...(headers && Object.keys(headers).length > 0 ? { headers } : {}) };
    // One listener's failure never stops delivery to the others.
    await Promise.allSettled(this.#matcher.match(topic).map(async (s) => s.listener(event)));
  }
}
