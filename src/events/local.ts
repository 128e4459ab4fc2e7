// An in-process publish/subscribe bus with AMQP-style patterns. The full bus (ordering, retries, dead letters,
// complex-event rules, Redis) builds on this contract; the registry and sandboxes only need publish/subscribe.
import { randomUUID } from 'node:crypto';
import type { Json, PlinthEvent } from '../sdk/index.ts';
import { isValidPattern, isValidTopic, matchTopic } from './topics.ts';

export type EventListener = (event: PlinthEvent) => void | Promise<void>;

export interface EventPublisher {
  publish(topic: string, payload: Json, source?: string): Promise<void>;
}

export class LocalBus implements EventPublisher {
  readonly #subscriptions = new Set<{ pattern: string; listener: EventListener }>();

  subscribe(pattern: string, listener: EventListener): () => void {
    if (!isValidPattern(pattern)) throw new TypeError(`not a valid topic pattern: ${JSON.stringify(pattern)}`);
    const sub = { pattern, listener };
    this.#subscriptions.add(sub);
    return () => this.#subscriptions.delete(sub);
  }

  async publish(topic: string, payload: Json, source?: string): Promise<void> {
    if (!isValidTopic(topic)) throw new TypeError(`not a valid topic: ${JSON.stringify(topic)}`);
    const event: PlinthEvent = { topic, payload, id: randomUUID(), time: new Date().toISOString(), ...(source ? { source } : {}) };
    // One listener's failure never stops delivery to the others.
    await Promise.allSettled([...this.#subscriptions].filter((s) => matchTopic(s.pattern, topic)).map(async (s) => s.listener(event)));
  }
}
