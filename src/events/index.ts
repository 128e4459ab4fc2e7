// The event bus (DESIGN.md §6). So far: topic and pattern rules shared by the sandbox's grants.
export { isValidTopic, isValidPattern, matchTopic } from './topics.ts';
