// Host policy (DESIGN.md §3, §4): what an extension may reach through its ctx and how much of the host it may
// use. It sits above the sandboxes: a sandbox only knows that "a ctx op goes to a handler"; this part decides
// what the handler answers (grants, quotas, the network checks, kv, emit) and what an untrusted extension may be
// granted at all.
export { createContextHandler, MAX_KV_KEY_CHARS, type ContextHost, type LogLevel } from './grants.ts';
export { KvStore, type KvPersistence } from './kv.ts';
export { DEFAULT_QUOTAS, effectiveQuotas, quotaExceeded, type Quotas, type QuotaOverrides } from './quotas.ts';
export { NetworkPolicy, parseNetworkGrant, specialRange, systemResolver, type NetworkGrant, type Resolver, type ResolvedAddress } from './network.ts';
export { boundLine, LogRate, type BoundedLine } from './log.ts';
export { checkApprovals, checkExtensionId, checkNetworkGrants, type ApprovalInput } from './approvals.ts';
