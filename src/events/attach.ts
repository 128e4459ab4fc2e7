// Plugs routes and complex-event rules into a bus: any bus that can subscribe a listener to a pattern and
// publish (the in-process LocalBus today, the durable bus next) — the pieces only see those two functions.
import type { PlinthError } from '../errors.ts';
import type { PlinthEvent } from '../sdk/index.ts';
import { compileRules, RuleEngine, type CepSettings, type Clock, type RuleConfig } from './cep/index.ts';
import type { TopicMatcher } from './matcher.ts';
import type { PublishFunction } from './middleware.ts';
import { compileRoutes, Router, type CallStage, type RouteConfig } from './routes.ts';

export interface AttachOptions {
  subscribe: (pattern: string, listener: (event: PlinthEvent) => void | Promise<void>) => () => void;
  publish: PublishFunction;
  settings: { maxHops: number; routes: RouteConfig[]; rules: RuleConfig[]; cep: CepSettings };
  callStage?: CallStage;
  clock?: Clock;
  onWarning?: (warning: PlinthError) => void;
  /** How often rule state is expired and absences fired (ms); 0 for never (tests call tick()). Default 1000. */
  tickMs?: number;
  createMatcher?: <T>() => TopicMatcher<T>;
}

export interface AttachedEvents {
  router: Router;
  rules: RuleEngine;
  detach(): void;
}

/** Compiles the routes and rules (PLINTH_ERR_CONFIG_INVALID on a problem) and subscribes them to every topic. */
export function attachRoutesAndRules(options: AttachOptions): AttachedEvents {
  const { settings } = options;
  const common = {
    publish: options.publish,
    maxHops: settings.maxHops,
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
    ...(options.createMatcher ? { createMatcher: options.createMatcher } : {}),
  };
  const router = new Router({ ...common, routes: compileRoutes(settings.routes), ...(options.callStage ? { callStage: options.callStage } : {}) });
  const rules = new RuleEngine({ ...common, rules: compileRules(settings.rules, { settings: settings.cep }), ...(options.clock ? { clock: options.clock } : {}) });
  const offs: Array<() => void> = [];
  // A route may call a stage (up to its call timeout): the publisher never waits for routes. Router.handle
  // reports every failure through onWarning and never rejects.
  if (settings.routes.length > 0) offs.push(options.subscribe('#', (e) => void router.handle(e)));
  if (settings.rules.length > 0) offs.push(options.subscribe('#', (e) => rules.handle(e)));
  const tickMs = options.tickMs ?? 1000;
  let timer: NodeJS.Timeout | undefined;
  if (settings.rules.length > 0 && tickMs > 0) {
    timer = setInterval(() => void rules.tick(), tickMs);
    // Never keeps the process alive (STYLE.md "timers unref'd").
    timer.unref();
  }
  return {
    router,
    rules,
    detach() {
      if (timer) clearInterval(timer);
      for (const off of offs.splice(0)) off();
    },
  };
}
