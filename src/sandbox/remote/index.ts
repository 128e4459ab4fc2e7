// The `remote` runtime (DESIGN.md §4, issue 13): an extension served by runner processes that connected to the
// control channel and registered it (src/control: runner.register). They speak the same JSON-RPC as the isolate
// sandbox process, through the same Peer (../link), over WebSocket instead of a pipe. Runners of one id and
// version form a pool (pool.ts) that each call is load-balanced over; the Sandbox the supervisor drives is a view
// of the pool (sandbox.ts). protocol.ts is the wire contract both sides import (the SDK's runner too).
// A runner's process is outside every sandbox: what the host controls is what reaches it — ctx ops through the
// grants, outputs through the stage schemas, time through the call timeouts (docs/remote.md).
export { REMOTE_METHODS, type RegisterParams, type RegisterResult, type InitializeParams, type ExecuteParams, type ExecuteResult, type HandleEventParams, type HealthCheckResult, type CtxParams, type CtxResult } from './protocol.ts';
export { RunnerPool, RunnerInstance, POOL_STRATEGIES, type RunnerLink, type PoolInfo, type InstanceInfo, type InstanceState, type PoolBinding } from './pool.ts';
export { RemoteSandbox } from './sandbox.ts';
