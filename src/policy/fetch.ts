// ctx.fetch in the host (issue 7 §4, §5). node:http(s) rather than the global fetch, because two things must hold
// that undici's fetch does not let us state without a dispatcher of our own: the connection goes to the address we
// checked (a `lookup` that answers only that address: resolve once, check, connect — DNS rebinding cannot swap it),
// and the body is streamed and cut at `quotas.fetch.maxResponseBytes` (decompressed bytes counted, so a
// compression bomb is cut too) instead of read whole before a size check. Each hop of a redirect is checked the
// same way. `agent: false`: no pooled socket outlives the check that opened it.
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Readable } from 'node:stream';
import { PlinthError } from '../errors.ts';
import type { Json } from '../sdk/index.ts';
import { literalAddress, type NetworkPolicy, type ResolvedAddress, type Resolver } from './network.ts';
import { quotaExceeded, type Quotas } from './quotas.ts';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface FetchContext {
  extension: string;
  network: NetworkPolicy;
  quotas: Quotas['fetch'];
  resolve: Resolver;
  /** Builds the PERMISSION_DENIED error naming the grant to add. */
  denied(what: string, permission: string): PlinthError;
}

/** An error the extension can handle like Node's own (`err.code === 'ECONNREFUSED'`). */
function netError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

interface Hop {
  status: number;
  headers: Record<string, string>;
  location?: string;
  body?: Buffer;
}

function decoded(res: http.IncomingMessage): Readable {
  switch ((res.headers['content-encoding'] ?? '').trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return res.pipe(createGunzip());
    case 'deflate':
      return res.pipe(createInflate());
    case 'br':
      return res.pipe(createBrotliDecompress());
    default:
      return res;
  }
}

function requestOnce(ctx: FetchContext, url: URL, target: ResolvedAddress, init: FetchInit, signal: AbortSignal): Promise<Hop> {
  const { maxResponseBytes } = ctx.quotas;
  const tooLarge = (bytes: string) => quotaExceeded(ctx.extension, 'fetch', 'maxResponseBytes', maxResponseBytes, `the response from ${url.host} (${bytes})`);
  // Answers every lookup with the checked address, whatever the name server would say now.
  const lookup: LookupFunction = (_hostname, options, callback) => {
    if (options.all) (callback as (err: null, addresses: Array<{ address: string; family: number }>) => void)(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return new Promise<Hop>((resolve, reject) => {
    // Past the deadline every error is the timeout, whichever stream reports it first.
    const fail = (err: NodeJS.ErrnoException, doing: string) =>
      reject(signal.aborted ? quotaExceeded(ctx.extension, 'fetch', 'timeoutMs', ctx.quotas.timeoutMs, `the fetch of ${url.host}`) : netError(err.code ?? 'EIO', `${doing} ${url.host} failed: ${err.message}`));
    const req = (url.protocol === 'https:' ? https : http).request(
      {
        protocol: url.protocol,
        hostname,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: init.method ?? 'GET',
        headers: init.headers ?? {},
        lookup,
        agent: false,
        signal,
        ...(url.protocol === 'https:' && literalAddress(url.hostname) === undefined ? { servername: hostname } : {}),
      },
      (res) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        const status = res.statusCode ?? 0;
        const location = headers.location;
        if (status >= 300 && status < 400 && location) {
          res.destroy(); // the body of a redirect is never read
          resolve({ status, headers, location });
          return;
        }
        const declared = Number(headers['content-length']);
        if (!headers['content-encoding'] && Number.isFinite(declared) && declared > maxResponseBytes) {
          req.destroy();
          reject(tooLarge(`${declared} bytes declared`));
          return;
        }
        const body = decoded(res);
        const chunks: Buffer[] = [];
        let total = 0;
        body.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (total > maxResponseBytes) {
            req.destroy();
            body.destroy();
            reject(tooLarge(`more than ${maxResponseBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        body.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks) }));
        body.on('error', (err: NodeJS.ErrnoException) => fail(err, 'reading the response from'));
        res.on('error', (err: NodeJS.ErrnoException) => fail(err, 'reading the response from'));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => fail(err, 'fetch of'));
    if (init.body !== undefined) req.write(init.body);
    req.end();
  });
}

/** Checks the URL against the grants, resolves once, checks every address; returns the address to connect to. */
async function checkedTarget(ctx: FetchContext, url: URL, signal: AbortSignal): Promise<ResolvedAddress> {
  const byUrl = ctx.network.checkUrl(url);
  if (!byUrl.ok) throw ctx.denied(byUrl.why!, `"${byUrl.need!}" under permissions.network`);
  const defaultPort = url.protocol === 'https:' ? 443 : 80;
  const port = url.port === '' ? defaultPort : Number(url.port);
  const literal = literalAddress(url.hostname);
  let addresses: ResolvedAddress[];
  if (literal) addresses = [{ address: literal.toString(), family: literal.kind() === 'ipv6' ? 6 : 4 }];
  else {
    try {
      // A name server that never answers is cut at the fetch's deadline too.
      addresses = await new Promise<ResolvedAddress[]>((resolve, reject) => {
        const onAbort = () => reject(quotaExceeded(ctx.extension, 'fetch', 'timeoutMs', ctx.quotas.timeoutMs, `resolving ${url.hostname}`));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        ctx.resolve(url.hostname.replace(/\.$/, '')).then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    } catch (err) {
      if (err instanceof PlinthError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      throw netError(code, `${code}: cannot resolve ${url.hostname}`);
    }
    if (addresses.length === 0) throw netError('ENOTFOUND', `ENOTFOUND: ${url.hostname} has no address`);
  }
  let refusal: { why?: string; need?: string } | undefined;
  for (const a of addresses) {
    const check = ctx.network.checkAddress(a.address, port);
    if (check.ok) return a;
    refusal ??= check;
  }
  throw ctx.denied(`${refusal!.why!} (${url.hostname} resolved to it)`, `"${refusal!.need!}" under permissions.network (an address grant: names alone never reach such addresses)`);
}

/** PERMISSION_DENIED for what no grant can allow. */
function refused(ctx: FetchContext, what: string, hint: string): PlinthError {
  return new PlinthError('PLINTH_ERR_PERMISSION_DENIED', `extension ${ctx.extension}: ${what}`, { extension: ctx.extension, hint });
}

export async function pinnedFetch(ctx: FetchContext, url: string, init: FetchInit = {}): Promise<Json> {
  const parse = (u: string, base?: URL): URL => {
    let parsed: URL;
    try {
      parsed = new URL(u, base);
    } catch {
      throw ctx.denied(`fetch of ${JSON.stringify(u)} (not a URL)`, 'its host under permissions.network');
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw ctx.denied(`fetch with ${parsed.protocol}`, 'an http(s) URL');
    return parsed;
  };
  const method = (init.method ?? 'GET').toUpperCase();
  // CONNECT would turn the granted host into a tunnel to anywhere; TRACE echoes what it was sent.
  if (!METHODS.has(method)) throw refused(ctx, `the HTTP method ${JSON.stringify(init.method)} is not allowed`, `use one of ${[...METHODS].join(', ')}`);
  const headers = init.headers ?? {};
  if (typeof headers !== 'object' || headers === null) throw new TypeError('fetch headers must be an object of strings');
  // The Host header is the grant's host: a different one would reach another virtual host behind the granted address.
  if (Object.keys(headers).some((k) => k.toLowerCase() === 'host')) throw refused(ctx, 'setting the Host header is not allowed', 'leave it out: the host sets it from the URL');
  const signal = AbortSignal.timeout(ctx.quotas.timeoutMs);
  let current = parse(url);
  let hopInit: FetchInit = init;
  const maxRedirects = ctx.quotas.maxRedirects;
  for (let hop = 0; hop <= maxRedirects; hop++) {
    const target = await checkedTarget(ctx, current, signal);
    const res = await requestOnce(ctx, current, target, hopInit, signal);
    if (res.location !== undefined) {
      // Fetch's rule: 303 (and 301/302 after a POST) continue as GET without a body.
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && (hopInit.method ?? 'GET').toUpperCase() === 'POST')) {
        hopInit = { ...(hopInit.headers ? { headers: hopInit.headers } : {}), method: 'GET' };
      }
      current = parse(res.location, current);
      continue;
    }
    return { status: res.status, headers: res.headers, text: (res.body ?? Buffer.alloc(0)).toString('utf8') };
  }
  throw new PlinthError('PLINTH_ERR_FETCH_REDIRECT_LIMIT', `extension ${ctx.extension}: ${url} redirected more than quotas.fetch.maxRedirects = ${maxRedirects} times`, {
    extension: ctx.extension,
    hint: `raise quotas.fetch.maxRedirects in the host config (or extensions.${ctx.extension}.quotas.fetch.maxRedirects for this extension alone), or fetch the final URL directly`,
  });
}
