// The host side of an extension's ctx: every way out of a sandbox passes here and is checked against the
// manifest's permissions (DESIGN.md §4). Both runtimes use this one implementation, so a grant means the same
// thing in a worker and in an isolate. A denial is PLINTH_ERR_PERMISSION_DENIED naming the permission to add.
import { open, mkdir, realpath, lstat, constants } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import { isValidTopic, matchTopic } from '../events/index.ts';
import type { Permissions } from '../manifest/index.ts';
import type { Json } from '../sdk/index.ts';
import type { ContextHandler, ContextOp } from '../sandbox/index.ts';

export const MAX_TEXT_BYTES = 16 * 1024 * 1024;
export const MAX_KV_VALUE_BYTES = 1024 * 1024;
const MAX_REDIRECTS = 5;

export interface ContextHost {
  extension: string;
  /** The extension's own data directory (absolute); fs grants are paths inside it. */
  dataDir: string;
  permissions: Permissions;
  emit(topic: string, payload: Json): Promise<void>;
  log(level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, Json>): void;
  /** Per-extension store; outlives sandbox restarts. */
  kv: Map<string, Json>;
  env: NodeJS.ProcessEnv;
  fetch?: typeof globalThis.fetch;
}

/** An error the extension can handle like Node's own (`err.code === 'ENOENT'`). */
function fsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

function isInside(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

export function createContextHandler(host: ContextHost): ContextHandler {
  const denied = (what: string, permission: string) =>
    new PlinthError('PLINTH_ERR_PERMISSION_DENIED', `extension ${host.extension}: ${what} is not granted`, {
      extension: host.extension,
      hint: `add ${permission} to "plinth.permissions" in its package.json (and re-sign it)`,
    });

  /** Resolves `rel` inside a granted root of `kind`; checks the real path of whatever exists. */
  async function grantedPath(rel: string, kind: 'read' | 'write'): Promise<string> {
    if (typeof rel !== 'string' || rel === '' || path.isAbsolute(rel) || rel.includes('\0')) {
      throw denied(`path ${JSON.stringify(rel)}`, `a relative path under permissions.fs.${kind}`);
    }
    const normal = path.normalize(rel);
    if (normal === '..' || normal.startsWith('..' + path.sep)) throw denied(`path ${JSON.stringify(rel)} (outside the data directory)`, `a path under permissions.fs.${kind}`);
    const roots = kind === 'read' ? [...(host.permissions.fs?.read ?? []), ...(host.permissions.fs?.write ?? [])] : (host.permissions.fs?.write ?? []);
    const target = path.resolve(host.dataDir, normal);
    const root = roots.map((r) => path.resolve(host.dataDir, r)).find((r) => isInside(r, target));
    if (!root) throw denied(`${kind} access to ${JSON.stringify(rel)}`, `"${normal.split(path.sep)[0]}" under permissions.fs.${kind}`);
    await mkdir(root, { recursive: true });
    const realRoot = await realpath(root);
    // The deepest part of the path that exists must really be inside the root (no link out of it).
    let existing = target;
    for (;;) {
      try {
        await lstat(existing);
        break;
      } catch {
        existing = path.dirname(existing);
      }
    }
    let realExisting: string;
    try {
      realExisting = await realpath(existing);
    } catch {
      throw denied(`path ${JSON.stringify(rel)} (cannot be resolved)`, `a path under permissions.fs.${kind}`);
    }
    if (!isInside(realRoot, realExisting)) throw denied(`path ${JSON.stringify(rel)} (it leads outside its granted folder)`, `a path under permissions.fs.${kind}`);
    return target;
  }

  async function readText(rel: string): Promise<string> {
    const file = await grantedPath(rel, 'read');
    let handle;
    try {
      handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      throw fsError(code, `${code}: cannot read ${rel}`);
    }
    try {
      const { size } = await handle.stat();
      if (size > MAX_TEXT_BYTES) throw new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${host.extension}: ${rel} is ${size} bytes; ctx.fs reads at most ${MAX_TEXT_BYTES}`, { extension: host.extension });
      return await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  }

  async function writeText(rel: string, text: string, append: boolean): Promise<void> {
    if (typeof text !== 'string') throw new TypeError('text must be a string');
    if (Buffer.byteLength(text) > MAX_TEXT_BYTES) throw new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${host.extension}: a write of more than ${MAX_TEXT_BYTES} bytes`, { extension: host.extension });
    const file = await grantedPath(rel, 'write');
    await mkdir(path.dirname(file), { recursive: true });
    // Re-check the parent after creating it, then refuse a link as the final component.
    await grantedPath(rel, 'write');
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (append ? constants.O_APPEND : constants.O_TRUNC);
    const handle = await open(file, flags, 0o600).catch((err: NodeJS.ErrnoException) => {
      throw fsError(err.code ?? 'EIO', `${err.code ?? 'EIO'}: cannot write ${rel}`);
    });
    try {
      await handle.writeFile(text, 'utf8');
    } finally {
      await handle.close();
    }
  }

  async function doFetch(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Json> {
    const allowed = (host.permissions.network ?? []).map((h) => h.toLowerCase());
    const check = (u: string): URL => {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        throw denied(`fetch of ${JSON.stringify(u)} (not a URL)`, 'its host under permissions.network');
      }
      if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw denied(`fetch with ${parsed.protocol}`, 'an http(s) URL');
      if (!allowed.includes(parsed.hostname.toLowerCase())) throw denied(`fetch from ${parsed.hostname}`, `"${parsed.hostname}" under permissions.network`);
      return parsed;
    };
    const fetchImpl = host.fetch ?? globalThis.fetch;
    let current = check(url);
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const res = await fetchImpl(current, {
        method: init.method ?? 'GET',
        ...(init.headers ? { headers: init.headers } : {}),
        ...(init.body !== undefined ? { body: init.body } : {}),
        redirect: 'manual',
        signal: AbortSignal.timeout(30_000),
      });
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        // A redirect is followed only to a granted host.
        current = check(new URL(location, current).toString());
        continue;
      }
      const text = await res.text();
      if (Buffer.byteLength(text) > MAX_TEXT_BYTES) throw new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${host.extension}: response from ${current.hostname} exceeds ${MAX_TEXT_BYTES} bytes`, { extension: host.extension });
      const headers: Record<string, string> = {};
      res.headers.forEach((v, k) => (headers[k] = v));
      return { status: res.status, headers, text };
    }
    throw new PlinthError('PLINTH_ERR_STAGE_FAILED', `extension ${host.extension}: more than ${MAX_REDIRECTS} redirects from ${url}`, { extension: host.extension });
  }

  return async (op: ContextOp): Promise<Json | undefined> => {
    switch (op.op) {
      case 'log':
        host.log(op.level, String(op.message).slice(0, 8192), op.fields);
        return undefined;
      case 'emit': {
        if (!isValidTopic(op.topic)) throw denied(`publishing to ${JSON.stringify(op.topic)} (not a valid topic)`, 'a dot-separated topic');
        if (!(host.permissions.events?.publish ?? []).some((p) => matchTopic(p, op.topic))) throw denied(`publishing to "${op.topic}"`, `"${op.topic}" under permissions.events.publish`);
        await host.emit(op.topic, op.payload);
        return undefined;
      }
      case 'fs.readText':
        return readText(op.path);
      case 'fs.writeText':
        await writeText(op.path, op.text, false);
        return undefined;
      case 'fs.appendText':
        await writeText(op.path, op.text, true);
        return undefined;
      case 'kv.get':
      case 'kv.set':
      case 'kv.delete': {
        if (host.permissions.kv !== true) throw denied('the key-value store', '"kv": true');
        if (typeof op.key !== 'string' || op.key.length > 1024) throw new TypeError('kv keys are strings of at most 1024 characters');
        if (op.op === 'kv.get') return host.kv.get(op.key);
        if (op.op === 'kv.delete') return host.kv.delete(op.key);
        const text = JSON.stringify(op.value);
        if (text === undefined || Buffer.byteLength(text) > MAX_KV_VALUE_BYTES) throw new PlinthError('PLINTH_ERR_RESULT_TOO_LARGE', `extension ${host.extension}: kv values are JSON of at most ${MAX_KV_VALUE_BYTES} bytes`, { extension: host.extension });
        host.kv.set(op.key, JSON.parse(text) as Json);
        return undefined;
      }
      case 'env':
        if (!(host.permissions.env ?? []).includes(op.name)) throw denied(`environment variable ${op.name}`, `"${op.name}" under permissions.env`);
        return host.env[op.name] ?? undefined;
      case 'fetch':
        return doFetch(op.url, op.init);
      default:
        throw new TypeError(`unknown ctx operation ${JSON.stringify((op as { op?: unknown }).op)}`);
    }
  };
}
