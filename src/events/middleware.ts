// Middleware around publish (issue 10 "Delivery", seed U43 `Middleware`): a chain that sees every event before
// it is published and may enrich it (add headers), transform it (change topic or payload) or reject it (throw,
// or return without calling next). Any bus can use it: the chain ends in the bus's own publish.
import { PlinthError } from '../errors.ts';
import type { Json } from '../sdk/index.ts';
import { isValidTopic } from './topics.ts';

/** An event on its way to the bus: everything but the id and time the bus gives it. */
export interface OutgoingEvent {
  topic: string;
  payload: Json;
  source?: string;
  headers?: Record<string, string>;
}

/** The publish function every piece here works with, whatever the bus behind it. */
export type PublishFunction = (topic: string, payload: Json, source?: string, headers?: Record<string, string>) => Promise<void>;

export type Next = (event: OutgoingEvent) => Promise<void>;

/**
 * One link of the chain: call `next(event)` (with the event as given, or a changed copy) to pass it on; throw to
 * reject it with a reason. Returning without calling `next` also rejects it (PLINTH_ERR_EVENT_REJECTED): an event
 * never disappears silently.
 */
export interface Middleware {
  (event: OutgoingEvent, next: Next): void | Promise<void>;
  /** Named in errors; defaults to the function's name. */
  displayName?: string;
}

function nameOf(mw: Middleware, index: number): string {
  return mw.displayName ?? (mw.name || `middleware #${index}`);
}

/** Wraps `publish` in `middlewares` (first in the list runs first). The list is read at each publish. */
export function applyMiddleware(middlewares: readonly Middleware[], publish: PublishFunction): PublishFunction {
  return async (topic, payload, source, headers) => {
    const run = async (index: number, event: OutgoingEvent): Promise<void> => {
      if (!isValidTopic(event.topic)) {
        throw new PlinthError('PLINTH_ERR_EVENT_REJECTED', `${index === 0 ? 'publish' : nameOf(middlewares[index - 1]!, index - 1)} produced an invalid topic ${JSON.stringify(event.topic)}`, {
          hint: 'topics are dot-separated words of letters, digits, `_` and `-`',
        });
      }
      const mw = middlewares[index];
      if (!mw) return publish(event.topic, event.payload, event.source, event.headers);
      let called = false;
      await mw(event, async (next) => {
        if (called) throw new PlinthError('PLINTH_ERR_EVENT_REJECTED', `${nameOf(mw, index)} called next() twice`, { hint: 'a middleware passes an event on once' });
        called = true;
        await run(index + 1, next);
      });
      if (!called) {
        throw new PlinthError('PLINTH_ERR_EVENT_REJECTED', `event on ${event.topic} was rejected by ${nameOf(mw, index)}`, {
          hint: 'the middleware returned without passing the event on',
        });
      }
    };
    const event: OutgoingEvent = { topic, payload };
    if (source !== undefined) event.source = source;
    if (headers !== undefined) event.headers = headers;
    await run(0, event);
  };
}
