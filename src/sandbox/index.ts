// Sandboxes (DESIGN.md §4): one interface, a runtime per extension. `worker` (piscina threads: isolates crashes,
// hangs and memory blow-ups, NOT hostile code) and `isolate` (isolated-vm in a separate sandbox process: no Node
// APIs, only the granted ctx functions). The `remote` runtime arrives with the control channel.
import { PlinthError } from '../errors.ts';
import type { ContextHandler, Sandbox, SandboxSpec } from './types.ts';
import type { Runtime } from '../manifest/index.ts';
import { createWorkerSandbox } from './worker/index.ts';
import { createIsolateSandbox, IsolateProcess } from './isolate/index.ts';

export type { Sandbox, SandboxSpec, ContextHandler, ContextOp, CallOptions, SandboxExit, SandboxFactory } from './types.ts';
export { checkTimeout, startTimedOut } from './options.ts';
export { createWorkerSandbox, createIsolateSandbox, IsolateProcess };
export { checkIsolateModules } from './isolate/imports.ts';

export interface SandboxOptions {
  /** Isolate runtime: run in the shared sandbox process (default) or in one of its own. */
  isolateProcess?: 'shared' | 'dedicated';
}

export function createSandbox(runtime: Runtime, spec: SandboxSpec, context: ContextHandler, options: SandboxOptions = {}): Sandbox {
  switch (runtime) {
    case 'worker':
      return createWorkerSandbox(spec, context);
    case 'isolate':
      return createIsolateSandbox(spec, context, options.isolateProcess === 'dedicated' ? { process: 'dedicated' } : {});
    case 'remote':
      throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `extension ${spec.id}: the remote runtime is not available yet (it comes with the control channel)`, {
        extension: spec.id,
        hint: 'run it as "worker" or "isolate" for now',
      });
  }
}
