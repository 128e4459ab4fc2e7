// The event bus (DESIGN.md §6): topic and pattern rules, a trie matcher, middleware around publish, the in-process
// bus, the durable bus with its store-backed delivery and dead letters, routes from host config and complex-event
// rules.
export { isValidTopic, isValidPattern, matchTopic, topicWord, isReservedTopic, RESERVED_TOPIC_ROOTS, HOST_SOURCE } from './topics.ts';
export { createTopicMatcher, normalizePattern, type TopicMatcher } from './matcher.ts';
export { runMiddleware, type Middleware, type Next, type PublishFunction } from './middleware.ts';
export { eventId } from './ids.ts';
export { LocalBus, type EventListener, type EventPublisher } from './local.ts';
export {
  DurableBus,
  retryDelay,
  DEFAULT_RETRY,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_DEAD_LETTER_TTL_MS,
  DEFAULT_MAX_QUEUED,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_DELIVERY_TIMEOUT_MS,
  type EventBus,
  type EventHandler,
  type RetryPolicy,
  type SubscribeOptions,
  type Unsubscribe,
  type BusOptions,
  type BusCounters,
  type DeadLetterQuery,
} from './bus.ts';
export { patternCovers } from './cover.ts';
export { systemClock, ManualClock, type Clock as BusClock } from './clock.ts';
export { parseDuration } from './duration.ts';
export { HOPS_HEADER, derivedHeaders, hopsOf } from './hops.ts';
export { compileRoutes, Router, ROUTE_VARIABLES, eventAsJson, type RouteConfig, type CompiledRoute, type CallStage, type RouterOptions } from './routes.ts';
export * from './cep/index.ts';
export { attachRoutesAndRules, type AttachOptions, type AttachedEvents } from './attach.ts';
