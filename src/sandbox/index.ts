// Sandboxes (DESIGN.md §4): one interface, a runtime per extension. `worker` (piscina threads: isolates crashes,
// hangs and memory blow-ups, NOT hostile code) and `isolate` (isolated-vm in a separate sandbox process: no Node
// APIs, only the granted ctx functions) and `remote` (runners connected over the control channel, ./remote: made
// by the registry over the pool of the runners that registered the extension, not from a folder).
import { PlinthError } from '../errors.ts';
import type { ContextHandler, Sandbox, SandboxSpec } from './types.ts';
import type { Runtime } from '../manifest/index.ts';
import { createWorkerSandbox } from './worker/index.ts';
import { createIsolateSandbox, IsolateProcess } from './isolate/index.ts';
import { RemoteSandbox, type RunnerPool } from './remote/index.ts';

export type { Sandbox, SandboxSpec, ContextHandler, ContextOp, CallOptions, SandboxExit, SandboxFactory } from './types.ts';
export { checkTimeout, startTimedOut } from './options.ts';
export { createWorkerSandbox, createIsolateSandbox, IsolateProcess };
export { checkIsolateModules } from './isolate/imports.ts';
export { RemoteSandbox, RunnerPool, REMOTE_METHODS, POOL_STRATEGIES, type RunnerLink, type PoolInfo, type InstanceInfo, type RegisterParams, type RegisterResult } from './remote/index.ts';

export interface SandboxOptions {
  /** Isolate runtime: run in the shared sandbox process (default) or in one of its own. */
  isolateProcess?: 'shared' | 'dedicated';
  /** Remote runtime: the pool of the runners that registered the extension. */
  pool?: RunnerPool;
}

export function createSandbox(runtime: Runtime, spec: SandboxSpec, context: ContextHandler, options: SandboxOptions = {}): Sandbox {
  switch (runtime) {
    case 'worker':
      return createWorkerSandbox(spec, context);
    case 'isolate':
      return createIsolateSandbox(spec, context, options.isolateProcess === 'dedicated' ? { process: 'dedicated' } : {});
    case 'remote':
      if (!options.pool) {
        throw new PlinthError('PLINTH_ERR_RUNTIME_UNSUPPORTED', `extension ${spec.id}: a remote extension is not loaded from a folder; it is served by the runners that register it over the control channel`, {
          extension: spec.id,
          hint: 'start its runner (runExtension from plinth/sdk) against the host (docs/remote.md)',
        });
      }
      return new RemoteSandbox(spec, context, options.pool);
  }
}
