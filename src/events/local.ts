// An in-process publish/subscribe bus with AMQP-style patterns, nothing persisted (the durable bus in bus.ts is
// what the host uses). Fan-out goes through a TopicMatcher (a trie), never a loop over every subscription;
// publish runs the same middleware chain as the durable bus (middleware.ts) first.
import type { Json, PlinthEvent } from '../sdk/index.ts';
import { isValidPattern, isValidTopic } from './topics.ts';
import { createTopicMatcher, type TopicMatcher } from './matcher.ts';
import { runMiddleware, type Middleware } from './middleware.ts';
import { eventId } from './ids.ts';

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

  constructor(options: { matcher?: TopicMatcher<Subscription> } = {}) {
    this.#matcher = options.matcher ?? createTopicMatcher<Subscription>();
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

  async publish(topic: string, payload: Json, source?: string, headers?: Record<string, string>): Promise<void> {
    if (!isValidTopic(topic)) throw new TypeError(`not a valid topic: ${JSON.stringify(topic)}`);
    const now = Date.now();
    const event: PlinthEvent = { id: eventId(now), topic, time: new Date(now).toISOString(), payload, ...(source ? { source } : {}), ...(headers && Object.keys(headers).length > 0 ? { headers } : {}) };
    await runMiddleware(this.#middleware, event, (e) => this.#deliver(e));
  }

  async #deliver(event: PlinthEvent): Promise<PlinthEvent> {
    // One listener's failure never stops delivery to the others.
    await Promise.allSettled(this.#matcher.match(event.topic).map(async (s) => s.listener(event)));
    return event;
  }
}
