// Both runtimes check what they are given the same way (issue 8): a bad spec is PLINTH_ERR_EXTENSION_LOAD_FAILED
// naming the field — never a TypeError from one runtime and a PlinthError from the other (call options are
// checked by one function for both, src/sandbox/options.ts). Checked at construction: nothing is started.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createSandbox, type SandboxSpec } from '../../src/sandbox/index.ts';
import { PlinthError } from '../../src/errors.ts';
import { ROOT } from '../helpers.ts';

function spec(limits: Partial<SandboxSpec['limits']>): SandboxSpec {
  const dir = path.join(ROOT, 'test', 'fixtures', 'sandbox-isolate', 'echo');
  return {
    instanceId: 'i-1',
    id: 'echo-soak',
    version: '1.0.0',
    dir,
    mainPath: path.join(dir, 'index.js'),
    config: {},
    permissions: {},
    limits: { memoryMb: 32, callTimeoutMs: 1000, concurrency: 1, ...limits },
    stages: ['echo'],
  };
}

const noContext = () => Promise.resolve(undefined);

describe('sandbox options, the same in both runtimes', () => {
  for (const [what, limits] of [
    ['memoryMb 0', { memoryMb: 0 }],
    ['memoryMb -5', { memoryMb: -5 }],
    ['memoryMb NaN', { memoryMb: Number.NaN }],
  ] as const) {
    for (const runtime of ['worker', 'isolate'] as const) {
      it(`${runtime}: a spec with ${what} is EXTENSION_LOAD_FAILED naming limits.memoryMb`, () => {
        assert.throws(
          () => createSandbox(runtime, spec(limits), noContext),
          (err: unknown) => err instanceof PlinthError && err.code === 'PLINTH_ERR_EXTENSION_LOAD_FAILED' && /limits\.memoryMb/.test(err.message) && err.extension === 'echo-soak',
        );
      });
    }
  }
});
