// Routes and rules publish events derived from events; a route into its own pattern, or two rules feeding each
// other, would loop forever. Every derived event carries how many routes/rules it went through, and nothing is
// forwarded past `events.maxHops`.
import { PlinthError } from '../errors.ts';
import type { PlinthEvent } from '../sdk/index.ts';

export const HOPS_HEADER = 'plinthHops';

export function hopsOf(event: PlinthEvent): number {
  const n = Number(event.headers?.[HOPS_HEADER] ?? 0);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/**
 * Headers for an event derived from `cause` (and, for rules, from earlier events): the correlation id is kept,
 * the cause's id is recorded, the hop count goes up. Throws PLINTH_ERR_ROUTE_HOPS_EXCEEDED past `maxHops`.
 */
export function derivedHeaders(cause: PlinthEvent, by: string, maxHops: number): Record<string, string> {
  const hops = hopsOf(cause) + 1;
  if (hops > maxHops) {
    throw new PlinthError('PLINTH_ERR_ROUTE_HOPS_EXCEEDED', `${by} would forward an event from ${cause.topic} for the ${hops}th time (events.maxHops is ${maxHops})`, {
      hint: 'routes or rules form a loop: break it in events.routes / events.rules, or raise events.maxHops',
    });
  }
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  if (cause.headers?.correlationId) headers.correlationId = cause.headers.correlationId;
  if (cause.headers?.traceId) headers.traceId = cause.headers.traceId;
  headers.causationId = cause.id;
  headers[HOPS_HEADER] = String(hops);
  return { ...headers };
}
