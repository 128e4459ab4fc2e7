// Issue 7 §5: for every extension, trusted or not, a network grant is checked against the address the name
// resolves to: loopback, private, link-local and metadata addresses need an address grant of their own, the
// name is resolved once and the connection goes to the address that was checked (a rebinding name server
// cannot swap it), and a grant may name a port. Traffic goes to a real server on 127.0.0.1 only: refused
// requests are refused before any connection, and the name server is injected.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ResolvedAddress } from '../../src/policy/index.ts';
import { localServer, ops, securityHost, type SecurityHost } from './helpers.ts';

describe('network grants are checked against the resolved address, for trusted extensions too', () => {
  const hits: string[] = [];
  let srv: Awaited<ReturnType<typeof localServer>>;
  let h: SecurityHost;
  /** The injected name server: answers by name, and counts what it was asked. */
  const answers = new Map<string, ResolvedAddress[][]>();
  const asked: string[] = [];
  const resolve = (name: string): Promise<ResolvedAddress[]> => {
    asked.push(name);
    const queue = answers.get(name);
    const next = queue && queue.length > 1 ? queue.shift()! : queue?.[0];
    if (!next) return Promise.reject(Object.assign(new Error(`no such name ${name}`), { code: 'ENOTFOUND' }));
    return Promise.resolve(next);
  };
  const v4 = (address: string): ResolvedAddress[] => [{ address, family: 4 }];

  before(async () => {
    srv = await localServer((req, res) => {
      hits.push(`${req.headers.host} ${req.url}`);
      if (req.url === '/to-metadata') res.writeHead(302, { location: `http://metadata.test:${srv.port}/latest/meta-data/` }).end();
      else res.end(`hello from ${req.url}`);
    });
    const p = srv.port;
    h = await securityHost(
      [
        // Trusted (signed): it gets what its manifest asks, but names alone still never reach special addresses.
        { fixture: 'hostile', id: 'names-only', signed: true, permissions: { network: [`localhost:${p}`, `metadata.test:${p}`, `internal.test:${p}`, `rebind.test:${p}`] } },
        { fixture: 'hostile', id: 'with-address', signed: true, permissions: { network: [`localhost:${p}`, `rebind.test:${p}`, `metadata.test:${p}`, `127.0.0.1:${p}`] } },
        { fixture: 'hostile', id: 'port-bound', signed: true, permissions: { network: [`127.0.0.1:${p}`] } },
        { fixture: 'hostile', id: 'any-port', signed: true, permissions: { network: ['127.0.0.1:*'] } },
        { fixture: 'hostile', id: 'bare', signed: true, permissions: { network: ['127.0.0.1'] } },
      ],
      { host: { resolve } },
    );
  });
  after(async () => {
    await h.stop();
    await srv.close();
  });

  it('a name that resolves to loopback, private, link-local or metadata addresses is refused without an address grant, before any connection', async () => {
    answers.set('localhost', [v4('127.0.0.1')]);
    answers.set('metadata.test', [v4('169.254.169.254')]);
    answers.set('internal.test', [[{ address: '::ffff:10.1.2.3', family: 6 }]]);
    const before = hits.length;
    const results = await ops(h.host, 'names-only', [
      { call: 'fetch', args: [`http://localhost:${srv.port}/a`] },
      { call: 'fetch', args: [`http://metadata.test:${srv.port}/latest/meta-data/`] },
      { call: 'fetch', args: [`http://internal.test:${srv.port}/b`] },
    ]);
    assert.deepEqual(results.map((r) => r.code), ['PLINTH_ERR_PERMISSION_DENIED', 'PLINTH_ERR_PERMISSION_DENIED', 'PLINTH_ERR_PERMISSION_DENIED']);
    assert.match(results[0]?.message ?? '', /127\.0\.0\.1 \(a loopback address\)/);
    assert.match(results[1]?.message ?? '', /169\.254\.169\.254 \(a linkLocal address\)/);
    assert.match(results[2]?.message ?? '', /10\.1\.2\.3 \(a private address\)/, 'an IPv4-mapped IPv6 answer is classified as the IPv4 it carries');
    assert.equal(hits.length, before, 'nothing was connected to');
    await h.bystanderAnswers();
  });

  it('with an address grant covering it, the same name reaches loopback', async () => {
    answers.set('localhost', [v4('127.0.0.1')]);
    const [r] = await ops(h.host, 'with-address', [{ call: 'fetch', args: [`http://localhost:${srv.port}/granted`] }]);
    assert.equal(r?.ok, true, JSON.stringify(r));
    assert.equal((r?.value as { text: string }).text, 'hello from /granted');
    assert.equal(hits.at(-1), `localhost:${srv.port} /granted`, 'the Host header is the name, the connection the checked address');
  });

  it('DNS rebinding: the name is resolved once per request and the connection goes to the address that was checked', async () => {
    // First answer: the granted loopback address; any later one: a private address the extension was not granted.
    answers.set('rebind.test', [v4('127.0.0.1'), v4('10.0.0.1')]);
    asked.length = 0;
    const [r] = await ops(h.host, 'with-address', [{ call: 'fetch', args: [`http://rebind.test:${srv.port}/pinned`] }]);
    assert.equal(r?.ok, true, JSON.stringify(r));
    assert.deepEqual(asked, ['rebind.test'], 'resolved exactly once');
    assert.equal(hits.at(-1), `rebind.test:${srv.port} /pinned`);
    // The next request asks again and now gets the private address: refused, not connected.
    const before = hits.length;
    const [again] = await ops(h.host, 'with-address', [{ call: 'fetch', args: [`http://rebind.test:${srv.port}/pinned`] }]);
    assert.equal(again?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.match(again?.message ?? '', /10\.0\.0\.1/);
    assert.equal(hits.length, before);
  });

  it('a redirect to a name that resolves to the metadata address is refused before it is followed', async () => {
    answers.set('metadata.test', [v4('169.254.169.254')]);
    const before = hits.length;
    // The name metadata.test is granted: it is the address it resolves to that is refused.
    const [r] = await ops(h.host, 'with-address', [{ call: 'fetch', args: [`${srv.base}/to-metadata`] }]);
    assert.equal(r?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.match(r?.message ?? '', /169\.254\.169\.254/);
    assert.deepEqual(hits.slice(before), [`127.0.0.1:${srv.port} /to-metadata`], 'only the redirecting request was made');
  });

  it('address literals in other spellings are the same address: [::ffff:127.0.0.1], 2130706433, 0x7f.1 need the grant', async () => {
    const before = hits.length;
    const results = await ops(h.host, 'names-only', [
      { call: 'fetch', args: [`http://[::ffff:127.0.0.1]:${srv.port}/x`] },
      { call: 'fetch', args: [`http://2130706433:${srv.port}/x`] },
      { call: 'fetch', args: [`http://0x7f.1:${srv.port}/x`] },
      { call: 'fetch', args: [`http://[::1]:${srv.port}/x`] },
    ]);
    assert.deepEqual(results.map((r) => r.code), Array(4).fill('PLINTH_ERR_PERMISSION_DENIED'));
    assert.equal(hits.length, before);
    // The address grant 127.0.0.1:<port> covers its IPv4-mapped spelling.
    const [mapped] = await ops(h.host, 'port-bound', [{ call: 'fetch', args: [`http://[::ffff:127.0.0.1]:${srv.port}/mapped`] }]);
    assert.equal(mapped?.ok, true, JSON.stringify(mapped));
  });

  it('a grant may name a port: host:port is that port only; host:* and a bare host any port', async () => {
    const other = await localServer((_req, res) => res.end('other port'));
    try {
      const [same, otherPort] = await ops(h.host, 'port-bound', [
        { call: 'fetch', args: [`${srv.base}/p`] },
        { call: 'fetch', args: [`${other.base}/p`] },
      ]);
      assert.equal(same?.ok, true);
      assert.equal(otherPort?.code, 'PLINTH_ERR_PERMISSION_DENIED');
      assert.match(otherPort?.message ?? '', new RegExp(`127\\.0\\.0\\.1:${other.port}`));
      const [anyPort] = await ops(h.host, 'any-port', [{ call: 'fetch', args: [`${other.base}/p`] }]);
      assert.equal((anyPort?.value as { text: string } | undefined)?.text, 'other port');
      const [bare] = await ops(h.host, 'bare', [{ call: 'fetch', args: [`${other.base}/p`] }]);
      assert.equal((bare?.value as { text: string } | undefined)?.text, 'other port', 'a grant that names no port allows any');
    } finally {
      await other.close();
    }
    await h.bystanderAnswers();
  });

  it('the Host header cannot be set to reach another virtual host behind a granted address, nor CONNECT open a tunnel', async () => {
    const before = hits.length;
    const [r, connect] = await ops(h.host, 'port-bound', [
      { call: 'fetch', args: [`${srv.base}/vhost`, { headers: { Host: 'internal.admin' } }] },
      { call: 'fetch', args: [`${srv.base}/tunnel`, { method: 'CONNECT' }] },
    ]);
    assert.equal(r?.code, 'PLINTH_ERR_PERMISSION_DENIED');
    assert.equal(connect?.code, 'PLINTH_ERR_PERMISSION_DENIED', 'CONNECT would make the granted host a tunnel');
    assert.equal(hits.length, before);
  });
});
