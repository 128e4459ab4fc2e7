// Host policy (DESIGN.md §3, §4): what an extension may reach through its ctx and how much of the host it may
// use. It sits above the sandboxes: a sandbox only knows that "a ctx op goes to a handler"; this part decides
// what the handler answers (grants, the data-dir layout, kv, emit).
export { createContextHandler, MAX_TEXT_BYTES, MAX_KV_VALUE_BYTES, type ContextHost } from './grants.ts';
