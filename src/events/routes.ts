// Routes from host config (issue 10 "Delivery", seed Olocus `EventRoute`): every event matching a route's
// pattern, and its optional filter, is published again on each destination topic, with an optional transform of
// its payload — a CEL expression, or an extension's stage called through an injected `callStage`. The original
// event is delivered as usual; a routed event comes from source `route:<id>` and carries the original's id as
// `causationId` (and its correlationId). A failing filter or transform skips that event for that route with a
// PLINTH_ERR_ROUTE_FAILED warning; a loop of routes stops at events.maxHops.
import { PlinthError, type Problem } from '../errors.ts';
import { compileExpression, type Expression } from '../expr/index.ts';
import type { Json, PlinthEvent } from '../sdk/index.ts';
import { derivedHeaders } from './hops.ts';
import { createTopicMatcher, type TopicMatcher } from './matcher.ts';
import type { PublishFunction } from './middleware.ts';
import { isReservedTopic, isValidPattern, isValidTopic } from './topics.ts';

/** Variables a route's filter and transform expression may read. */
export const ROUTE_VARIABLES = ['event', 'payload', 'topic', 'source', 'headers'] as const;

export interface RouteConfig {
  id: string;
  description?: string;
  /** Topic pattern of the events to route. */
  from: string;
  /** Topics each routed event is published on. */
  to: string[];
  /** CEL condition; events for which it is not true are not routed. */
  filter?: string;
  /** The routed event's payload: a CEL expression, or an extension's stage (input: the event; output: the payload). */
  transform?: { expression?: string; extension?: string; stage?: string; /** CEL giving the stage's input (default: the event). */ input?: string };
}

export interface CompiledRoute {
  id: string;
  from: string;
  to: string[];
  filter: Expression | undefined;
  transform: { kind: 'expression'; expression: Expression } | { kind: 'stage'; extension: string; stage: string; input: Expression | undefined } | undefined;
}

/** Calls an extension's stage (the host's call, with its breaker, timeout and schemas). */
export type CallStage = (extension: string, stage: string, input: Json) => Promise<Json>;

/** Checks and compiles `events.routes`; any problem throws PLINTH_ERR_CONFIG_INVALID with every path. */
export function compileRoutes(routes: readonly RouteConfig[], options: { path?: string; file?: string } = {}): CompiledRoute[] {
  const base = options.path ?? '/events/routes';
  const problems: Problem[] = [];
  const out: CompiledRoute[] = [];
  const ids = new Set<string>();
  const expr = (source: string, at: string): Expression | undefined => {
    try {
      return compileExpression(source, { variables: ROUTE_VARIABLES, path: at });
    } catch (err) {
      problems.push(...(err instanceof PlinthError ? err.problems : [{ path: at, message: String(err) }]));
      return undefined;
    }
  };
  routes.forEach((route, i) => {
    const at = `${base}/${i}`;
    if (ids.has(route.id)) problems.push({ path: `${at}/id`, message: `route id ${JSON.stringify(route.id)} is used twice` });
    ids.add(route.id);
    if (!isValidPattern(route.from)) problems.push({ path: `${at}/from`, message: `${JSON.stringify(route.from)} is not a topic pattern` });
    route.to.forEach((t, j) => {
      if (!isValidTopic(t)) problems.push({ path: `${at}/to/${j}`, message: `${JSON.stringify(t)} is not a topic` });
      else if (isReservedTopic(t)) problems.push({ path: `${at}/to/${j}`, message: `${t} is under a reserved root (extension, pipeline, host)`, hint: 'only the host publishes there; route to a topic of your own' });
    });
    const filter = route.filter === undefined ? undefined : expr(route.filter, `${at}/filter`);
    let transform: CompiledRoute['transform'];
    const t = route.transform;
    if (t) {
      const byStage = t.extension !== undefined || t.stage !== undefined;
      if (t.input !== undefined && !byStage) problems.push({ path: `${at}/transform/input`, message: '`input` goes with `extension` and `stage`' });
      if (t.expression !== undefined && byStage) {
        problems.push({ path: `${at}/transform`, message: 'give either `expression` or `extension` with `stage`, not both' });
      } else if (t.expression !== undefined) {
        const e = expr(t.expression, `${at}/transform/expression`);
        if (e) transform = { kind: 'expression', expression: e };
      } else if (t.extension === undefined || t.stage === undefined) {
        problems.push({ path: `${at}/transform`, message: 'a stage transform needs both `extension` and `stage`' });
      } else {
        const input = t.input === undefined ? undefined : expr(t.input, `${at}/transform/input`);
        transform = { kind: 'stage', extension: t.extension, stage: t.stage, input };
      }
    }
    out.push({ id: route.id, from: route.from, to: [...route.to], filter, transform });
  });
  if (problems.length > 0) {
    throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', `events.routes has ${problems.length} problem(s)`, {
      ...(options.file ? { file: options.file } : {}),
      problems,
      hint: 'see schemas/host-config.schema.json $defs/eventRoute and README "Routes"',
    });
  }
  return out;
}

export interface RouterOptions {
  routes: readonly CompiledRoute[];
  publish: PublishFunction;
  /** Needed by stage transforms; without it such a route fails each event with PLINTH_ERR_ROUTE_FAILED. */
  callStage?: CallStage;
  /** `events.maxHops`. */
  maxHops: number;
  onWarning?: (warning: PlinthError) => void;
  createMatcher?: <T>() => TopicMatcher<T>;
}

export function eventAsJson(event: PlinthEvent): Json {
  return { id: event.id, topic: event.topic, source: event.source ?? null, time: event.time, headers: { ...(event.headers ?? {}) } as Record<string, string>, payload: event.payload };
}

export class Router {
  readonly #matcher: TopicMatcher<CompiledRoute>;
  readonly #options: RouterOptions;
  readonly #counts = new Map<string, { routed: number; failed: number }>();

  constructor(options: RouterOptions) {
    this.#options = options;
    this.#matcher = (options.createMatcher ?? createTopicMatcher)<CompiledRoute>();
    for (const r of options.routes) {
      this.#matcher.add(r.from, r);
      this.#counts.set(r.id, { routed: 0, failed: 0 });
    }
  }

  /** Routes one event through every route whose pattern it matches; resolves when the routed events are published. */
  async handle(event: PlinthEvent): Promise<void> {
    const routes = this.#matcher.match(event.topic);
    if (routes.length === 0) return;
    await Promise.all(routes.map((route) => this.#route(route, event)));
  }

  stats(): Array<{ id: string; routed: number; failed: number }> {
    return [...this.#counts].map(([id, c]) => ({ id, ...c }));
  }

  async #route(route: CompiledRoute, event: PlinthEvent): Promise<void> {
    const counts = this.#counts.get(route.id)!;
    const vars = { event: eventAsJson(event), payload: event.payload, topic: event.topic, source: event.source ?? '', headers: event.headers ?? {} };
    let payload: Json = event.payload;
    let headers: Record<string, string>;
    try {
      if (route.filter) {
        let passes = false;
        try {
          passes = route.filter.test(vars);
        } catch {
          // A field this event lacks: it does not pass the filter (CEL errors are not warnings here).
        }
        if (!passes) return;
      }
      headers = derivedHeaders(event, `route ${route.id}`, this.#options.maxHops);
      if (route.transform?.kind === 'expression') payload = route.transform.expression.evaluate(vars);
      else if (route.transform?.kind === 'stage') {
        if (!this.#options.callStage) throw new Error('no stage caller was given to the router');
        const input = route.transform.input ? route.transform.input.evaluate(vars) : eventAsJson(event);
        payload = await this.#options.callStage(route.transform.extension, route.transform.stage, input);
      }
    } catch (err) {
      counts.failed++;
      this.#warn(err, route, event);
      return;
    }
    for (const to of route.to) {
      try {
        await this.#options.publish(to, payload, `route:${route.id}`, headers);
        counts.routed++;
      } catch (err) {
        counts.failed++;
        this.#warn(err, route, event);
      }
    }
  }

  #warn(err: unknown, route: CompiledRoute, event: PlinthEvent): void {
    if (err instanceof PlinthError && err.code === 'PLINTH_ERR_ROUTE_HOPS_EXCEEDED') {
      this.#options.onWarning?.(err);
      return;
    }
    this.#options.onWarning?.(
      new PlinthError('PLINTH_ERR_ROUTE_FAILED', `route ${route.id} did not route event ${event.id} from ${event.topic}: ${err instanceof Error ? err.message : String(err)}`, {
        hint: 'the original event was delivered as usual; fix the route\'s filter or transform (see the cause)',
        ...(err instanceof PlinthError && err.extension ? { extension: err.extension } : {}),
        cause: err,
      }),
    );
  }
}
