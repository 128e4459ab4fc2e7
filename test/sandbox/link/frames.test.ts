// The frame codec of the links outside the host (src/sandbox/link/frames.ts): frames cut anywhere in the byte
// stream, several in one chunk, raw payloads kept as text, and every malformed frame refused before it is
// buffered whole (a lying length) or decoded (an envelope that is not a JSON object).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameError, FrameLink, MAX_FRAMES_PER_WRITE, encodeFrame, type Frame } from '../../../src/sandbox/link/frames.ts';
import { waitFor } from '../../helpers.ts';

const caps = { maxEnvelopeBytes: 1024, maxPayloadBytes: 4096 };

function decodeAll(bytes: Buffer, cut: number): Frame[] {
  const d = new FrameDecoder(caps);
  const out: Frame[] = [];
  for (let i = 0; i < bytes.length; i += cut) d.push(bytes.subarray(i, i + cut), (f) => out.push(f));
  assert.equal(d.buffered, 0, 'nothing left over');
  return out;
}

function header(envBytes: number, payBytes: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32BE(envBytes, 0);
  h.writeUInt32BE(payBytes, 4);
  return h;
}

describe('frames', () => {
  const frames = [
    encodeFrame(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'a' })),
    encodeFrame(JSON.stringify({ jsonrpc: '2.0', id: 'c2', result: { absent: false } }), '{"é":"ü€😀","n":[1,2,3]}'),
    encodeFrame(JSON.stringify({ jsonrpc: '2.0', method: 'n', params: { s: 'x'.repeat(300) } })),
  ];
  const stream = Buffer.concat(frames);

  it('a batch (JSON-RPC §6) is an envelope too', () => {
    const out = decodeAll(encodeFrame(JSON.stringify([{ jsonrpc: '2.0', id: 1, result: 1 }])), 5);
    assert.deepEqual(out, [{ message: [{ jsonrpc: '2.0', id: 1, result: 1 }], payload: undefined }]);
  });

  for (const cut of [1, 3, 7, 64, stream.length]) {
    it(`decodes frames cut every ${cut} byte(s), multi-byte UTF-8 split included`, () => {
      const out = decodeAll(stream, cut);
      assert.deepEqual(
        out.map((f) => (Array.isArray(f.message) ? 'batch' : (f.message.id ?? f.message.method))),
        [1, 'c2', 'n'],
      );
      assert.equal(out[0]!.payload, undefined);
      assert.equal(out[1]!.payload, '{"é":"ü€😀","n":[1,2,3]}', 'the payload is the raw text, not parsed');
      assert.equal(((out[2]!.message as { params: { s: string } }).params.s).length, 300);
    });
  }

  const refused: Array<[string, Buffer, RegExp]> = [
    ['an envelope length over the cap (refused from the header alone)', header(caps.maxEnvelopeBytes + 1, 0), /envelope of 1025 bytes, over the cap/],
    ['a payload length over the cap', header(2, caps.maxPayloadBytes + 1), /payload of 4097 bytes, over the cap/],
    ['a frame with no envelope', header(0, 0), /without an envelope/],
    ['an envelope that is not JSON', Buffer.concat([header(5, 0), Buffer.from('{nope')]), /not JSON/],
    ['an envelope that is null', Buffer.concat([header(4, 0), Buffer.from('null')]), /neither a JSON object nor an array/],
    ['an envelope that is a number', Buffer.concat([header(1, 0), Buffer.from('7')]), /neither a JSON object nor an array/],
    ['a raw payload beside a batch', Buffer.concat([header(2, 2), Buffer.from('[]{}')]), /payload beside a batch/],
  ];
  for (const [what, bytes, message] of refused) {
    it(`refuses ${what}: FrameError`, () => {
      const d = new FrameDecoder(caps);
      const seen: Frame[] = [];
      assert.throws(() => d.push(bytes, (f) => seen.push(f)), (err: unknown) => err instanceof FrameError && message.test(err.message));
      assert.deepEqual(seen, []);
    });
  }
});

describe('FrameLink over a real socket', () => {
  async function pair(): Promise<{ a: FrameLink; b: FrameLink; raw: Socket; close: () => void }> {
    const file = path.join(tmpdir(), `plinth-frames-${process.pid}-${Math.random().toString(36).slice(2)}.sock`);
    const accepted = new Promise<Socket>((resolve) => {
      const server = createServer((s) => {
        server.close();
        resolve(s);
      });
      server.listen(file);
    });
    const raw = connect(file);
    const server = await accepted;
    const a = new FrameLink(raw, caps);
    const b = new FrameLink(server, caps);
    return { a, b, raw, close: () => (a.close(), b.close()) };
  }

  it('messages and raw payloads arrive in order, each to its listener', async () => {
    const { a, b, close } = await pair();
    const got: Array<[unknown, string | undefined]> = [];
    b.onRaw((m, payload) => {
      if (payload === undefined) return false;
      got.push([m, payload]);
      return true;
    });
    b.onMessage((m) => got.push([m, undefined]));
    a.send({ n: 1 });
    a.sendRaw({ n: 2 }, '[1,2]');
    a.send({ n: 3 });
    await waitFor(() => got.length === 3, 'three frames', 5000);
    assert.deepEqual(got, [[{ n: 1 }, undefined], [{ n: 2 }, '[1,2]'], [{ n: 3 }, undefined]]);
    close();
  });

  it(`frames of one tick go out in writes of at most ${MAX_FRAMES_PER_WRITE}, in order`, async () => {
    const { a, b, raw, close } = await pair();
    const writes: number[] = [];
    const write = raw.write.bind(raw);
    raw.write = ((chunk: Buffer, ...rest: never[]) => {
      writes.push(chunk.length);
      return write(chunk, ...rest);
    });
    const got: unknown[] = [];
    b.onMessage((m) => got.push(m));
    const n = 2 * MAX_FRAMES_PER_WRITE + 3;
    for (let i = 0; i < n; i++) a.send({ i });
    await waitFor(() => got.length === n, `${n} frames`, 5000);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => ({ i })));
    assert.equal(writes.length, 3, 'two full batches, then the rest at the end of the tick');
    close();
  });

  it('a malformed frame closes the link and is reported once', async () => {
    const { b, raw, close } = await pair();
    const errors: string[] = [];
    const closes: string[] = [];
    b.onError((e) => errors.push(e.message));
    b.onClose((r) => closes.push(r));
    raw.write(header(caps.maxEnvelopeBytes * 10, 0));
    await waitFor(() => closes.length === 1, 'the link to close', 5000);
    assert.equal(errors.length, 1);
    assert.match(closes[0]!, /malformed frame/);
    assert.equal(b.closed, true);
    close();
  });

  it('a raw payload nobody takes is a protocol error, not a message', async () => {
    const { a, b, close } = await pair();
    const messages: unknown[] = [];
    const errors: string[] = [];
    b.onMessage((m) => messages.push(m));
    b.onError((e) => errors.push(e.message));
    a.sendRaw({ n: 1 }, '{}');
    await waitFor(() => b.closed, 'the link to close', 5000);
    assert.deepEqual(messages, []);
    assert.match(errors[0] ?? '', /payload nobody asked for/);
    close();
  });
});
