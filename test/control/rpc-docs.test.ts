// docs/rpc.md and src/control/rpc-types.ts are generated from schemas/rpc/ (scripts/rpc-gen.ts): this fails when
// either is stale, and when a method the issue names has no schema or a schema names no implemented method.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { DOC_FILE, TYPES_FILE, generateDoc, generateTypes } from '../../scripts/rpc-gen.ts';
import { loadRpcSchemas, compileParams } from '../../src/control/schemas.ts';

const METHODS = [
  'host.info', 'extensions.list', 'extensions.get', 'extensions.reload', 'extensions.enable', 'extensions.disable', 'stages.call',
  'pipelines.validate', 'pipelines.run', 'pipelines.status', 'pipelines.cancel', 'pipelines.resume', 'runs.list', 'runs.get',
  'events.publish', 'events.subscribe', 'events.unsubscribe', 'dlq.list', 'dlq.get', 'dlq.replay', 'dlq.purge', 'logs.subscribe', '$/cancelRequest',
  // issue 13: what a remote runner calls
  'runner.register', 'runner.drain', 'ctx',
];
const NOTIFICATIONS = ['events.event', 'events.dropped', 'logs.entry', 'runs.progress', 'extensions.changed'];

describe('schemas/rpc', () => {
  const schemas = loadRpcSchemas();
  it('names exactly the methods and notifications of the issue, every one compiling', () => {
    assert.deepEqual([...schemas.methods.keys()].sort(), [...METHODS].sort());
    assert.deepEqual([...schemas.notifications.keys()].sort(), [...NOTIFICATIONS].sort());
    assert.equal(compileParams(schemas).size, METHODS.length);
  });
  it('docs/rpc.md is current (npm run rpc:gen)', async () => {
    assert.equal(await readFile(DOC_FILE, 'utf8'), generateDoc(schemas));
  });
  it('src/control/rpc-types.ts is current (npm run rpc:gen)', async () => {
    assert.equal(await readFile(TYPES_FILE, 'utf8'), generateTypes(schemas));
  });
});
