// Issue 7 §4: an extension cannot push the host's memory or disk without limit through ctx.fetch, ctx.kv, ctx.fs.
// Each case runs a hostile extension in a real sandbox under a real host with small quotas from the host config,
// asserts the coded refusal naming the config key, that nothing past the quota was kept, and that a well-behaved
// extension kept answering meanwhile.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { localServer, ops, securityHost, type Outcome, type SecurityHost } from './helpers.ts';

const MiB = 1024 * 1024;

describe('ctx.fetch: response bodies are streamed and cut at quotas.fetch.maxResponseBytes', () => {
  let sent = 0;
  /** Resolves when the endless response's connection closes, with whether it closed before the body was out. */
  let endlessClosed: Promise<boolean> = Promise.resolve(false);
  let releaseHeld: (() => void) | undefined;
  const held: Array<() => void> = [];
  let srv: Awaited<ReturnType<typeof localServer>>;
  let h: SecurityHost;
  const bomb = gzipSync(Buffer.alloc(64 * MiB));

  before(async () => {
    srv = await localServer((req, res) => {
      if (req.url === '/endless') {
        // 256 MiB, without a content-length: only streaming and cutting can stop it.
        const chunk = Buffer.alloc(64 * 1024, 'x');
        let left = 4096;
        res.writeHead(200, { 'content-type': 'text/plain' });
        endlessClosed = new Promise((resolve) => res.on('close', () => resolve(left > 0)));
        const pump = () => {
          while (left > 0) {
            left--;
            sent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      } else if (req.url === '/bomb') {
        // 64 MiB of zeros in about 64 kB of gzip: the cut counts decompressed bytes.
        res.writeHead(200, { 'content-encoding': 'gzip' }).end(bomb);
      } else if (req.url === '/silent') {
        // Never answers: only the fetch timeout ends it.
        held.push(() => res.end('late'));
      } else if (req.url === '/declared') {
        res.writeHead(200, { 'content-length': String(64 * MiB) }).write('x');
      } else if (req.url === '/hold') {
        // Answers only when the test lets it: keeps fetches in flight.
        held.push(() => res.end('held'));
        releaseHeld?.();
      } else res.end('small');
    });
    h = await securityHost(
      [
        { fixture: 'hostile', id: 'fetcher', permissions: { network: [`127.0.0.1:${srv.port}`] } },
        { fixture: 'hostile', id: 'thrifty', permissions: { network: [`127.0.0.1:${srv.port}`] }, limits: { fetch: { maxResponseBytes: 1000 } } },
        { fixture: 'hostile', id: 'impatient', signed: true, permissions: { network: [`127.0.0.1:${srv.port}`] } },
        { fixture: 'hostile', id: 'fetch-worker', runtime: 'worker', signed: true, permissions: { network: [`127.0.0.1:${srv.port}`] } },
      ],
      {
        config: `quotas: { fetch: { maxResponseBytes: ${MiB}, maxConcurrent: 2 } }\nextensions:\n  fetcher: { allow: { network: ["127.0.0.1:${srv.port}"] } }\n  thrifty: { allow: { network: ["127.0.0.1:${srv.port}"] } }\n  impatient: { quotas: { fetch: { timeoutMs: 300 } } }\n`,
      },
    );
  });
  after(async () => {
    await h.stop();
    await srv.close();
  });

  it('an endless body is cut at the quota: the host stops reading, the server sees the connection close', async () => {
    const [r] = await ops(h.host, 'fetcher', [{ call: 'fetch', args: [`${srv.base}/endless`] }]);
    assert.equal(r?.ok, false);
    assert.equal(r?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(r?.message ?? '', /quotas\.fetch\.maxResponseBytes/);
    // The socket is closed long before the 256 MiB are out (what is in flight in kernel buffers aside).
    assert.equal(await endlessClosed, true, 'the server saw the connection close before its body was out');
    assert.ok(sent < 64 * MiB, `the server sent ${sent} bytes before the host hung up`);
    await h.bystanderAnswers();
  });

  it('a trusted worker\'s ctx.fetch is cut the same way', async () => {
    const [r] = await ops(h.host, 'fetch-worker', [{ call: 'fetch', args: [`${srv.base}/endless`] }]);
    assert.equal(r?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    await h.bystanderAnswers();
  });

  it('a compression bomb is cut at the quota of decompressed bytes', async () => {
    const [r] = await ops(h.host, 'fetcher', [{ call: 'fetch', args: [`${srv.base}/bomb`] }]);
    assert.equal(r?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(r?.message ?? '', /quotas\.fetch\.maxResponseBytes/);
    await h.bystanderAnswers();
  });

  it('a server that never answers is cut at quotas.fetch.timeoutMs (here set for one extension by extensions.<id>.quotas)', async () => {
    const [r] = await ops(h.host, 'impatient', [{ call: 'fetch', args: [`${srv.base}/silent`] }]);
    assert.equal(r?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(r?.message ?? '', /quotas\.fetch\.timeoutMs = 300/);
    for (const release of held.splice(0)) release();
    await h.bystanderAnswers();
  });

  it('a declared content-length over the quota is refused before reading the body', async () => {
    const [r] = await ops(h.host, 'fetcher', [{ call: 'fetch', args: [`${srv.base}/declared`] }]);
    assert.equal(r?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    await h.bystanderAnswers();
  });

  it("a manifest's limits.fetch asks for less than the host's quota, and gets it", async () => {
    const results = await ops(h.host, 'thrifty', [{ call: 'fetch', args: [`${srv.base}/small`] }, { call: 'fetch', args: [`${srv.base}/endless`] }]);
    assert.equal(results[0]?.ok, true);
    assert.equal(results[1]?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(results[1]?.message ?? '', /= 1000/);
  });

  it('concurrent fetches are counted: the one past quotas.fetch.maxConcurrent is refused, the others complete', async () => {
    const twoHeld = new Promise<void>((resolve) => (releaseHeld = () => held.length >= 2 && resolve()));
    const run = h.host.call('fetcher', 'parallel', { steps: [1, 2].map(() => ({ call: 'fetch', args: [`${srv.base}/hold`] })) }, { timeoutMs: 20000 });
    await twoHeld;
    const [third] = await ops(h.host, 'fetcher', [{ call: 'fetch', args: [`${srv.base}/small`] }]);
    assert.equal(third?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(third?.message ?? '', /quotas\.fetch\.maxConcurrent/);
    await h.bystanderAnswers();
    for (const release of held.splice(0)) release();
    const done = (await run) as unknown as Outcome[];
    assert.deepEqual(done.map((o) => o.ok), [true, true]);
    const [after] = await ops(h.host, 'fetcher', [{ call: 'fetch', args: [`${srv.base}/small`] }]);
    assert.equal(after?.ok, true, 'the count went down when they finished');
  });
});

describe('ctx.kv: key count and total size are quotas, checked before storing', () => {
  let h: SecurityHost;
  before(async () => {
    h = await securityHost(
      [
        { fixture: 'hostile', id: 'kv-keys', permissions: { kv: true } },
        { fixture: 'hostile', id: 'kv-bytes', permissions: { kv: true } },
        { fixture: 'hostile', id: 'kv-asks-less', permissions: { kv: true }, limits: { kv: { maxKeys: 3 } } },
        { fixture: 'hostile', id: 'kv-worker', runtime: 'worker', signed: true, permissions: { kv: true } },
      ],
      { config: 'quotas: { kv: { maxKeys: 50, maxBytes: 20000, maxValueBytes: 10000 } }\nextensions:\n  kv-bytes: { quotas: { kv: { maxKeys: 1000 } } }\n' },
    );
  });
  after(() => h.stop());

  it('the key past quotas.kv.maxKeys is refused; what was stored stays readable', async () => {
    const r = (await h.host.call('kv-keys', 'fill_kv', { n: 1000, size: 10 }, { timeoutMs: 20000 })) as unknown as { stored: number; refusal: Outcome };
    assert.equal(r.stored, 50);
    assert.equal(r.refusal.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(r.refusal.message ?? '', /quotas\.kv\.maxKeys = 50/);
    const [first, overwrite, none] = await ops(h.host, 'kv-keys', [
      { call: 'kv.get', args: ['key-0'] },
      { call: 'kv.set', args: ['key-1', 'replaced'] },
      { call: 'kv.get', args: ['key-50'] },
    ]);
    assert.equal(first?.value, 'v'.repeat(10));
    assert.equal(overwrite?.ok, true, 'overwriting a key adds none');
    assert.equal(none?.value, null);
    await h.bystanderAnswers();
  });

  it('the write past quotas.kv.maxBytes is refused, whatever the key count; a delete makes room', async () => {
    const r = (await h.host.call('kv-bytes', 'fill_kv', { n: 1000, size: 5000 }, { timeoutMs: 20000 })) as unknown as { stored: number; refusal: Outcome };
    assert.equal(r.stored, 3, '3 values of ~5 kB fit in 20 kB, a 4th does not');
    assert.match(r.refusal.message ?? '', /quotas\.kv\.maxBytes = 20000/);
    const [del, again, tooBig] = await ops(h.host, 'kv-bytes', [
      { call: 'kv.delete', args: ['key-0'] },
      { call: 'kv.set', args: ['key-3', 'v'.repeat(5000)] },
      { call: 'kv.set', args: ['huge', 'v'.repeat(20000)] },
    ]);
    assert.equal(del?.value, true);
    assert.equal(again?.ok, true);
    assert.match(tooBig?.message ?? '', /quotas\.kv\.maxValueBytes/);
    await h.bystanderAnswers();
  });

  it('the same quota holds for a trusted worker: the host enforces it, not the runtime', async () => {
    const r = (await h.host.call('kv-worker', 'fill_kv', { n: 1000, size: 10 }, { timeoutMs: 20000 })) as unknown as { stored: number; refusal: Outcome };
    assert.equal(r.stored, 50);
    assert.equal(r.refusal.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    await h.bystanderAnswers();
  });

  it("a manifest's limits.kv.maxKeys lowers the host quota for that extension", async () => {
    const r = (await h.host.call('kv-asks-less', 'fill_kv', { n: 10, size: 1 }, { timeoutMs: 20000 })) as unknown as { stored: number; refusal: Outcome };
    assert.equal(r.stored, 3);
    assert.match(r.refusal.message ?? '', /quotas\.kv\.maxKeys = 3/);
  });
});

describe('ctx.fs: disk quota, file-size cap and file count per data directory', () => {
  let h: SecurityHost;
  before(async () => {
    h = await securityHost(
      [
        { fixture: 'hostile', id: 'disk-filler', permissions: { fs: { write: ['out'] } } },
        { fixture: 'hostile', id: 'file-spammer', permissions: { fs: { write: ['out'] } } },
      ],
      { config: 'quotas: { fs: { maxBytes: 100000, maxFileBytes: 30000, maxFiles: 20 } }\n' },
    );
  });
  after(() => h.stop());

  it('appending past quotas.fs.maxFileBytes is refused and the file keeps what it had; it reads back whole', async () => {
    const r = (await h.host.call('disk-filler', 'fill_fs', { n: 100, size: 10000, dir: 'out' }, { timeoutMs: 20000 })) as unknown as { written: number; refusal: Outcome };
    assert.equal(r.written, 3);
    assert.equal(r.refusal.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.match(r.refusal.message ?? '', /quotas\.fs\.maxFileBytes = 30000/);
    const [back] = await ops(h.host, 'disk-filler', [{ call: 'fs.readText', args: ['out/big.txt'] }]);
    assert.equal((back?.value as string).length, 30000, 'the refused append left the file as it was, and what it could write it can read back');
    await h.bystanderAnswers();
  });

  it('writing past quotas.fs.maxBytes is refused, counting every file in the data directory', async () => {
    // 30 kB already in big.txt; files of 20 kB: 3 more fit (90 kB), the 4th would make 110 kB.
    const r = (await h.host.call('disk-filler', 'fill_fs', { n: 100, size: 20000, dir: 'out/many', files: true }, { timeoutMs: 20000 })) as unknown as { written: number; refusal: Outcome };
    assert.equal(r.written, 3);
    assert.match(r.refusal.message ?? '', /quotas\.fs\.maxBytes = 100000/);
    const [last, refused] = await ops(h.host, 'disk-filler', [
      { call: 'fs.readText', args: ['out/many/file-2.txt'] },
      { call: 'fs.readText', args: ['out/many/file-3.txt'] },
    ]);
    assert.equal((last?.value as string).length, 20000);
    assert.equal(refused?.code, 'ENOENT', 'the refused file was not created');
    await h.bystanderAnswers();
  });

  it('creating files past quotas.fs.maxFiles is refused', async () => {
    const r = (await h.host.call('file-spammer', 'fill_fs', { n: 1000, size: 1, dir: 'out', files: true }, { timeoutMs: 20000 })) as unknown as { written: number; refusal: Outcome };
    // out/ itself is one entry of the 20.
    assert.equal(r.written, 19);
    assert.match(r.refusal.message ?? '', /quotas\.fs\.maxFiles = 20/);
    const [first] = await ops(h.host, 'file-spammer', [{ call: 'fs.readText', args: ['out/file-0.txt'] }]);
    assert.equal(first?.value, 'f');
    await h.bystanderAnswers();
  });
});
