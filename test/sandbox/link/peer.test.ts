// The Peer link (DESIGN.md §4: one protocol for everything outside the host process) over a real IPC channel to
// a real child process: request/response framing, notifications, errors with and without a PlinthError, requests
// in both directions, and closes — by the parent, and by the child dying (every pending call rejected).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Peer, RPC_ERRORS, childTransport } from '../../../src/sandbox/link/index.ts';
import { PlinthError } from '../../../src/errors.ts';
import { rejectsWith } from '../../helpers.ts';

const CHILD = fileURLToPath(new URL('./peer.child.ts', import.meta.url));

async function spawnPeer(): Promise<{ child: ChildProcess; peer: Peer }> {
  const child = fork(CHILD, [], { execArgv: ['--disable-warning=ExperimentalWarning'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
  const peer = new Peer(childTransport(child));
  await new Promise<void>((resolve) => peer.handle('ready', () => resolve()));
  return { child, peer };
}

describe('Peer over IPC', () => {
  let child: ChildProcess;
  let peer: Peer;
  before(async () => ({ child, peer } = await spawnPeer()));
  after(() => peer.close('test done'));

  it('matches each response to its request, concurrent ones included', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => peer.request('add', { a: i, b: 1000 })));
    assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => i + 1000));
    assert.deepEqual(await peer.request('echo', { nested: [1, 'two', null] }), { nested: [1, 'two', null] });
  });

  it('a handler that returns nothing answers null; a notification gets no reply', async () => {
    assert.equal(await peer.request('note'), null);
    peer.notify('note');
    peer.notify('note');
    assert.equal(await peer.request('notes'), 3, 'two notifications and one request, in order');
  });

  it('a thrown PlinthError travels with its code, hint and extension', async () => {
    const err = await rejectsWith(peer.request('fail'), 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(err.message, 'not granted');
    assert.equal(err.hint, 'grant it');
    assert.equal(err.extension, 'x');
  });

  it('any other thrown error arrives coded, with its message', async () => {
    const err = await peer.request('throw').catch((e: unknown) => e);
    assert.ok(err instanceof PlinthError);
    assert.match(err.message, /plain error/);
  });

  it('an unknown method is a protocol error (JSON-RPC -32601), PLINTH_ERR_LINK_PROTOCOL', async () => {
    const err = await rejectsWith(peer.request('no.such.method'), 'PLINTH_ERR_LINK_PROTOCOL');
    assert.match(err.message, new RegExp(`${RPC_ERRORS.methodNotFound}.*method not found: no\\.such\\.method`));
  });

  it('requests go both ways over one link', async () => {
    peer.handle('parent.hello', (params) => ({ hello: (params as { from: string }).from }));
    assert.deepEqual(await peer.request('ask'), { hello: 'child' });
  });

  it('the child dying rejects every pending request and later ones; close listeners hear why', async () => {
    const other = await spawnPeer();
    const closed = new Promise<string>((resolve) => other.peer.onClose(resolve));
    const pending = [other.peer.request('never'), other.peer.request('never')];
    other.peer.notify('exit'); // exit(7): the child handles a notification the same way
    for (const p of pending) await rejectsWith(p, 'PLINTH_ERR_SANDBOX_CRASHED');
    assert.match(await closed, /IPC channel disconnected|exited with code 7/);
    assert.equal(other.peer.closed, true);
    await rejectsWith(other.peer.request('echo', 1), 'PLINTH_ERR_SANDBOX_CRASHED');
    other.peer.notify('note'); // a notification on a closed link is dropped, not thrown
  });

  it('closing from this side ends the child (it exits when its parent goes)', async () => {
    const other = await spawnPeer();
    const exited = new Promise<number | null>((resolve) => other.child.once('exit', (code) => resolve(code)));
    const pending = other.peer.request('never');
    other.peer.close('done with it');
    await rejectsWith(pending, 'PLINTH_ERR_SANDBOX_CRASHED');
    assert.equal(await exited, 0);
    assert.ok(child.connected, 'the other link is untouched');
  });
});
