// Middleware around publish (issue 10 "Delivery", seed U43 `Middleware`): one shape for every bus (the durable bus
// and LocalBus run the same chain). A link sees the event about to be published — id, time, topic, payload,
// source, headers — and may enrich it (add headers), transform it (change topic or payload) or reject it (throw,
// or return without calling next). There is no silent drop: `publish()` resolving means the event was published
// (and, on the durable bus, is in the store), so an event a link does not pass on is a rejected publish.
import { PlinthError } from '../errors.ts';
import type { Json, PlinthEvent } from '../sdk/index.ts';
import { isValidTopic } from './topics.ts';

/** The publish function routes and rules work with, whatever the bus behind it. */
export type PublishFunction = (topic: string, payload: Json, source?: string, headers?: Record<string, string>) => Promise<void>;

/**
 * Passes the event (as given, or a changed copy) on down the chain; resolves with the event as published (after
 * the commit on the durable bus), rejects with the reason the publish failed. Call it at most once.
 */
export type Next = (event: PlinthEvent) => Promise<PlinthEvent>;

/**
 * One link of the chain: `(event, next) => …`. Call `next(event)` to pass it on — awaiting it is optional, but
 * the publish settles only when the rest of the chain has. Throw to reject the publish with your error; returning
 * without calling `next` rejects it with PLINTH_ERR_EVENT_REJECTED. A link that catches next's rejection cannot
 * turn it into a success: the publisher still gets it.
 */
export interface Middleware {
  (event: PlinthEvent, next: Next): unknown;
  /** Named in errors; defaults to the function's name. */
  displayName?: string;
}

function nameOf(mw: Middleware, index: number): string {
  return mw.displayName ?? (mw.name || `middleware #${index}`);
}

/**
 * Runs `event` through `chain` (first in the list runs first; the list is read as it goes) and hands what the
 * last link passed on to `publish`. Resolves with what `publish` resolved.
 */
export async function runMiddleware(chain: readonly Middleware[], event: PlinthEvent, publish: (event: PlinthEvent) => Promise<PlinthEvent>): Promise<PlinthEvent> {
  const run = async (index: number, current: PlinthEvent): Promise<PlinthEvent> => {
    if (index > 0 && (current === null || typeof current !== 'object' || !isValidTopic(current.topic))) {
      throw new PlinthError('PLINTH_ERR_EVENT_REJECTED', `${nameOf(chain[index - 1]!, index - 1)} passed on an event with an invalid topic ${JSON.stringify((current as Partial<PlinthEvent> | null)?.topic)}`, {
        hint: 'topics are dot-separated words of letters, digits, `_` and `-`',
      });
    }
    const mw = chain[index];
    if (!mw) return publish(current);
    let inner: Promise<PlinthEvent> | undefined;
    try {
      await mw(current, (next) => {
        if (inner) return Promise.reject(new PlinthError('PLINTH_ERR_EVENT_REJECTED', `${nameOf(mw, index)} called next() twice`, { hint: 'a middleware passes an event on once' }));
        inner = run(index + 1, next);
        return inner;
      });
    } catch (err) {
      // The link's own error is the answer; what it passed on may still fail, and that must not go unhandled.
      inner?.catch(() => {});
      throw err;
    }
    if (!inner) {
      throw new PlinthError('PLINTH_ERR_EVENT_REJECTED', `event on ${current.topic} was rejected by ${nameOf(mw, index)}`, {
        hint: 'the middleware returned without passing the event on',
      });
    }
    return inner;
  };
  return run(0, event);
}
