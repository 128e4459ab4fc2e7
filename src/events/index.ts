// The event bus (DESIGN.md §6). So far: topic and pattern rules, and an in-process bus.
export { isValidTopic, isValidPattern, matchTopic, topicWord, isReservedTopic, RESERVED_TOPIC_ROOTS, HOST_SOURCE } from './topics.ts';
export { LocalBus, type EventListener, type EventPublisher } from './local.ts';
