// Sandbox-escape attempts. None may reach the host: no process, require or isolated-vm object is reachable;
// prototype pollution stays inside the polluting isolate; hostile thrown and returned values are handled inside
// the isolate; shared memory passed to ctx is copied. After each attack the other extensions keep serving.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ROOT, rejectsWith } from '../../helpers.ts';
import { call, fixture, shutdownAfterAll, started } from './helpers.ts';

shutdownAfterAll();

interface Attempt {
  ok: boolean;
  value?: string;
  error?: string;
}

describe('escape attempts', () => {
  it('constructor chains, Function(), globals and stack frames lead nowhere', async () => {
    const { sandbox } = await started(await fixture('hostile'));
    const out = (await call(sandbox, 'escape')) as unknown as Record<string, Attempt> & { globals: string[] };
    for (const key of ['constructorChain', 'functionRequire', 'globalProcess']) {
      assert.equal(out[key]?.ok, false, `${key}: ${JSON.stringify(out[key])}`);
      assert.match(out[key]?.error ?? '', /not defined|undefined/);
    }
    assert.deepEqual(out.ctxChain, { ok: true, value: 'undefinedundefinedundefined' });
    assert.deepEqual(out.globals, [], 'no ivm, require, process, module, Buffer or underscored global');
    // Error.prepareStackTrace sees only the guest's own frames: no host function objects, no host file names.
    assert.equal(out.stackFrames?.ok, true);
    const frames = JSON.parse(out.stackFrames?.value ?? '[]') as Array<[string, string, string | null]>;
    for (const [, fn, file] of frames) {
      assert.notEqual(fn, 'function', 'strict frames expose no function objects');
      assert.ok(file === null || file === undefined || file.startsWith('plinth-extension://hostile/') || file === 'plinth:isolate-shim', String(file));
    }
  });

  it('prototype pollution stays in the polluting isolate; the shim keeps working; others and the host are clean', async () => {
    const other = (await started(await fixture('probe'))).sandbox;
    const { sandbox, host } = await started(await fixture('hostile'));
    const out = (await call(sandbox, 'pollute')) as { polluted: string; ok: boolean };
    assert.deepEqual(out, { polluted: 'yes', ok: true }, 'ctx still works in the polluted isolate');
    assert.deepEqual(host.kv.get('afterPollution'), { fine: true });
    // The polluted isolate still serves, serialising with the intrinsics captured before any extension code.
    assert.deepEqual(await call(sandbox, 'return_hostile'), { counted: 1, nested: { replaced: true } });
    const seen = (await call(other, 'inspect')) as { objectPolluted: string; arrayProtoPolluted: string; jsonStringifyNative: boolean; objectProtoKeys: string[] };
    assert.equal(seen.objectPolluted, 'undefined');
    assert.equal(seen.arrayProtoPolluted, 'undefined');
    assert.equal(seen.jsonStringifyNative, true);
    assert.ok(!seen.objectProtoKeys.includes('then'));
    // The realm that could be reached is the sandbox process's own (the test process never ran the polluting
    // code, so checking its prototypes could not fail): it is asked, over the link.
    assert.deepEqual(await sandbox.process.integrity(), { objectPrototype: true, arrayPrototype: true, polluted: false, nativeJson: true, nativePromiseThen: true }, 'the sandbox process realm is untouched');
  });

  it('thrown proxies, throwing getters and non-errors become plain STAGE_FAILED errors', async () => {
    const other = (await started(await fixture('probe'))).sandbox;
    const { sandbox } = await started(await fixture('hostile'));
    const proxy = await rejectsWith(call(sandbox, 'throw_proxy'), 'PLINTH_ERR_STAGE_FAILED');
    assert.match(proxy.message, /from a proxy/);
    const getters = await rejectsWith(call(sandbox, 'throw_throwing_getters'), 'PLINTH_ERR_STAGE_FAILED');
    assert.match(getters.message, /without message or stack/);
    const primitive = await rejectsWith(call(sandbox, 'throw_primitive'), 'PLINTH_ERR_STAGE_FAILED');
    assert.match(primitive.message, /non-error value/);
    for (const err of [proxy, getters, primitive]) {
      assert.equal(typeof err.extensionStack, 'string');
      assert.ok(!(err.extensionStack ?? '').includes(ROOT));
    }
    // The isolate survived all three (they were handled inside it) and so did its neighbour.
    assert.deepEqual(await call(sandbox, 'return_hostile'), { counted: 1, nested: { replaced: true } });
    assert.ok(await call(other, 'echo'));
  });

  it('returned values: getters and toJSON run inside the isolate; unserialisable results fail cleanly', async () => {
    const { sandbox } = await started(await fixture('hostile'));
    assert.deepEqual(await call(sandbox, 'return_hostile'), { counted: 1, nested: { replaced: true } });
    const circular = await rejectsWith(call(sandbox, 'return_circular'), 'PLINTH_ERR_STAGE_FAILED');
    assert.match(circular.message, /not JSON-serialisable/);
    assert.ok(await call(sandbox, 'return_hostile'));
  });

  it('SharedArrayBuffer-backed ctx arguments are copied: later writes do not reach the host', async () => {
    const { sandbox, host } = await started(await fixture('hostile'));
    const out = (await call(sandbox, 'sab')) as { stored: unknown };
    const expected = { view: { 0: 42, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0, 10: 0, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0 }, shared: {} };
    assert.deepEqual(JSON.parse(JSON.stringify(out.stored)), JSON.parse(JSON.stringify(expected)));
    assert.deepEqual(JSON.parse(JSON.stringify(host.kv.get('sab'))), JSON.parse(JSON.stringify(expected)));
    assert.equal(host.emitted.length, 1);
    const payload = host.emitted[0]?.payload as Record<string, number>;
    assert.equal(payload['0'], 42, 'the emitted copy kept the value it had when emitted');
    assert.ok(!(payload instanceof Uint8Array) && !ArrayBuffer.isView(payload), 'the host got plain JSON data, not shared memory');
  });
});
