// The control channel (issue 12): the server `plinth serve` runs, and the typed client the CLI (and anyone) uses.
export { ControlServer, type ControlServerOptions, type ListenInfo } from './server.ts';
export { ControlClient, connectControl, resolveEndpoint, SERVE_FILE, DEFAULT_PORT, type Endpoint } from './client.ts';
export { LogHub, type LogRecord } from './logs.ts';
export { webhookTargetFor, webhookTargetForService, type WebhookTarget, type WebhookDelivery } from './hooks.ts';
export { loadTokens, TOKEN_FILE, TOKEN_PROTOCOL_PREFIX, RPC_PROTOCOL } from './auth.ts';
export { loadRpcSchemas } from './schemas.ts';
export type { ControlHost } from './methods.ts';
export type { RpcMethods, RpcNotifications } from './rpc-types.ts';
