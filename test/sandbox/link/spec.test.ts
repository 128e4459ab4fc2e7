// The Peer against the JSON-RPC 2.0 specification's §7 examples, verbatim (https://www.jsonrpc.org/specification#examples):
// the text goes in as it would arrive on a WebSocket, the replies come out as the text the peer sends.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Peer, RpcError, RPC_ERRORS, type Transport } from '../../../src/sandbox/link/index.ts';

/** A text transport whose other end is this test: `feed` text in, `next()` the next reply out. */
function textPeer(): { peer: Peer; feed(text: string): void; sent: unknown[]; next(): Promise<unknown>; settle(): Promise<void> } {
  let listener: (m: unknown) => void = () => undefined;
  const sent: unknown[] = [];
  const waiters: Array<() => void> = [];
  const transport: Transport = {
    send: (m) => {
      sent.push(JSON.parse(JSON.stringify(m)));
      for (const w of waiters.splice(0)) w();
    },
    onMessage: (l) => (listener = l),
    onClose: () => undefined,
    close: () => undefined,
  };
  const peer = new Peer(transport);
  peer.handle('subtract', (p) => {
    if (Array.isArray(p)) return (p[0] as number) - (p[1] as number);
    const { minuend, subtrahend } = p as { minuend: number; subtrahend: number };
    return minuend - subtrahend;
  });
  peer.handle('sum', (p) => (p as number[]).reduce((a, b) => a + b, 0));
  peer.handle('notify_hello', () => undefined);
  peer.handle('update', () => undefined);
  peer.handle('get_data', () => ['hello', 5]);
  peer.handle('needs_object', (p) => {
    if (Array.isArray(p)) throw new RpcError(RPC_ERRORS.invalidParams, 'Invalid params', { path: '' });
    return 'ok';
  });
  let taken = 0;
  return {
    peer,
    sent,
    feed: (text) => listener(text),
    next: () =>
      new Promise((resolve) => {
        const take = () => resolve(sent[taken++]);
        if (sent.length > taken) take();
        else waiters.push(take);
      }),
    // Everything the peer would send in answer to what was fed has been sent once a macrotask has passed.
    settle: () => new Promise((resolve) => setImmediate(resolve)),
  };
}

const unordered = (v: unknown) => [...(v as Array<{ id: unknown }>)].sort((a, b) => JSON.stringify(a.id).localeCompare(JSON.stringify(b.id)));

describe('JSON-RPC 2.0 §7 examples', () => {
  it('rpc call with positional parameters', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}');
    assert.deepEqual(await t.next(), { jsonrpc: '2.0', result: 19, id: 1 });
    t.feed('{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}');
    assert.deepEqual(await t.next(), { jsonrpc: '2.0', result: -19, id: 2 });
  });

  it('rpc call with named parameters', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}');
    assert.deepEqual(await t.next(), { jsonrpc: '2.0', result: 19, id: 3 });
    t.feed('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}');
    assert.deepEqual(await t.next(), { jsonrpc: '2.0', result: 19, id: 4 });
  });

  it('a notification gets no reply (known method or not)', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}');
    t.feed('{"jsonrpc": "2.0", "method": "foobar"}');
    await t.settle();
    assert.deepEqual(t.sent, []);
  });

  it('rpc call of non-existent method: -32601', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}');
    const r = (await t.next()) as { id: unknown; error: { code: number } };
    assert.equal(r.id, '1');
    assert.equal(r.error.code, -32601);
  });

  it('rpc call with invalid JSON: -32700, id null', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]');
    assert.deepEqual(await t.next(), { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error' }, id: null });
  });

  it('rpc call with invalid Request object: -32600, id null', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": 1, "params": "bar"}');
    const r = (await t.next()) as { id: unknown; error: { code: number } };
    assert.equal(r.id, null);
    assert.equal(r.error.code, -32600);
  });

  it('rpc call Batch, invalid JSON: one -32700, not an array', async () => {
    const t = textPeer();
    t.feed('[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n  {"jsonrpc": "2.0", "method"\n]');
    assert.deepEqual(await t.next(), { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error' }, id: null });
  });

  it('rpc call with an empty Array: one -32600, not an array', async () => {
    const t = textPeer();
    t.feed('[]');
    const r = (await t.next()) as { id: unknown; error: { code: number } };
    assert.ok(!Array.isArray(r));
    assert.equal(r.id, null);
    assert.equal(r.error.code, -32600);
  });

  it('rpc call with an invalid Batch (but not empty): an array of one -32600', async () => {
    const t = textPeer();
    t.feed('[1]');
    const r = (await t.next()) as Array<{ id: unknown; error: { code: number } }>;
    assert.equal(r.length, 1);
    assert.equal(r[0]!.id, null);
    assert.equal(r[0]!.error.code, -32600);
  });

  it('rpc call with an invalid Batch: three -32600', async () => {
    const t = textPeer();
    t.feed('[1,2,3]');
    const r = (await t.next()) as Array<{ id: unknown; error: { code: number } }>;
    assert.deepEqual(r.map((e) => [e.id, e.error.code]), [[null, -32600], [null, -32600], [null, -32600]]);
  });

  it('rpc call Batch: results for the calls, errors for the bad ones, nothing for notifications', async () => {
    const t = textPeer();
    t.feed(`[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]`);
    const r = (await t.next()) as Array<Record<string, unknown>>;
    assert.equal(r.length, 5);
    const byId = unordered(r) as Array<{ id: unknown; result?: unknown; error?: { code: number } }>;
    assert.deepEqual(
      byId.map((e) => [e.id, e.result ?? e.error?.code]),
      [['1', 7], ['2', 19], ['5', -32601], ['9', ['hello', 5]], [null, -32600]].sort((a, b) => JSON.stringify(a[0]).localeCompare(JSON.stringify(b[0]))),
    );
  });

  it('rpc call Batch (all notifications): nothing at all', async () => {
    const t = textPeer();
    t.feed('[\n  {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},\n  {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}\n]');
    await t.settle();
    assert.deepEqual(t.sent, []);
  });
});

describe('Peer: the rules around the examples', () => {
  it('jsonrpc must be "2.0"; params must be structured; a valid id is echoed on -32600', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "1.0", "method": "sum", "params": [1], "id": 7}');
    t.feed('{"jsonrpc": "2.0", "method": "sum", "params": 3, "id": 8}');
    t.feed('{"jsonrpc": "2.0", "method": "sum", "params": [1], "id": {"x": 1}}');
    const got = [await t.next(), await t.next(), await t.next()] as Array<{ id: unknown; error: { code: number } }>;
    assert.deepEqual(got.map((r) => [r.id, r.error.code]), [[7, -32600], [8, -32600], [null, -32600]]);
  });

  it('-32602 from a handler carries its data; 1 and "1" are different ids', async () => {
    const t = textPeer();
    t.feed('{"jsonrpc": "2.0", "method": "needs_object", "params": [1], "id": 1}');
    t.feed('{"jsonrpc": "2.0", "method": "needs_object", "params": {}, "id": "1"}');
    const a = (await t.next()) as { id: unknown; error: { code: number; data: unknown } };
    const b = (await t.next()) as { id: unknown; result: unknown };
    assert.deepEqual([a.id, a.error.code, a.error.data], [1, -32602, { path: '' }]);
    assert.deepEqual([b.id, b.result], ['1', 'ok']);
  });

  it('$/cancelRequest aborts the signal of the request it names; the request still gets its reply', async () => {
    const t = textPeer();
    t.peer.handle('wait', (_p, ctx) => new Promise((_r, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error))));
    t.feed('{"jsonrpc": "2.0", "method": "wait", "id": 42}');
    await t.settle();
    assert.equal(t.peer.serving, 1);
    t.feed('{"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 42}}');
    const r = (await t.next()) as { id: unknown; error: { code: number; data: { code: string } } };
    assert.deepEqual([r.id, r.error.code, r.error.data.code], [42, RPC_ERRORS.application, 'PLINTH_ERR_CANCELLED']);
    assert.equal(t.peer.serving, 0);
  });

  it('replies to a batch it sent are matched one by one', async () => {
    let listener: (m: unknown) => void = () => undefined;
    const out: Array<{ id: number; method: string; params: number[] }> = [];
    const peer = new Peer({ send: (m) => out.push(m as (typeof out)[0]), onMessage: (l) => (listener = l), onClose: () => undefined, close: () => undefined });
    const a = peer.request('sum', [1, 2]);
    const b = peer.request('nope');
    listener(JSON.stringify([{ jsonrpc: '2.0', id: out[1]!.id, error: { code: -32601, message: 'Method not found' } }, { jsonrpc: '2.0', id: out[0]!.id, result: 3 }]));
    assert.equal(await a, 3);
    await assert.rejects(b, { code: 'PLINTH_ERR_LINK_PROTOCOL' });
  });
});
