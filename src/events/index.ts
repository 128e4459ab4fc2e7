// The event bus (DESIGN.md §6). So far: topic and pattern rules, and an in-process bus.
export { isValidTopic, isValidPattern, matchTopic, topicWord } from './topics.ts';
export { LocalBus, type EventListener, type EventPublisher } from './local.ts';
