// The event bus (DESIGN.md §6): topic and pattern rules, and the durable bus with its interfaces.
export { isValidTopic, isValidPattern, matchTopic, topicWord, isReservedTopic, RESERVED_TOPIC_ROOTS, HOST_SOURCE } from './topics.ts';
export {
  DurableBus,
  LocalBus,
  createSimpleMatcher,
  retryDelay,
  DEFAULT_RETRY,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_DEAD_LETTER_TTL_MS,
  DEFAULT_MAX_QUEUED,
  DEFAULT_MAX_IN_FLIGHT,
  type EventBus,
  type EventPublisher,
  type EventHandler,
  type Middleware,
  type RetryPolicy,
  type SubscribeOptions,
  type Unsubscribe,
  type TopicMatcher,
  type BusOptions,
  type DeadLetterQuery,
} from './bus.ts';
export { patternCovers } from './cover.ts';
export { systemClock, ManualClock, type Clock } from './clock.ts';
