// The host side of an extension's ctx: every way out of a sandbox passes here and is checked against the
// manifest's permissions (DESIGN.md §4) and the host's quotas (issue 7 §4). Both runtimes use this one
// implementation, so a grant means the same thing in a worker and in an isolate. A denial is
// PLINTH_ERR_PERMISSION_DENIED naming the permission to add; a quota is PLINTH_ERR_QUOTA_EXCEEDED naming the
// host-config key; a reserved topic is PLINTH_ERR_TOPIC_RESERVED whatever the grant.
import { open, mkdir, realpath, lstat, readdir, constants } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import { isReservedTopic, isValidTopic, matchTopic } from '../events/index.ts';
import type { Permissions } from '../manifest/index.ts';
import type { Json } from '../sdk/index.ts';
import type { ContextHandler, ContextOp } from '../sandbox/index.ts';
import { KvStore } from './kv.ts';
import { boundLine, LogRate, type BoundedLine } from './log.ts';
import { NetworkPolicy, systemResolver, type Resolver } from './network.ts';
import { pinnedFetch } from './fetch.ts';
import type { FetchBreakers } from './fetch-breaker.ts';
import { DEFAULT_QUOTAS, quotaExceeded, type Quotas } from './quotas.ts';

/** Longest kv key, in characters. */
export const MAX_KV_KEY_CHARS = 1024;

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ContextHost {
  extension: string;
  /** The extension's own data directory (absolute); fs grants are paths inside it. */
  dataDir: string;
  permissions: Permissions;
  /** Publishes as the extension: the host sets the event's source, never the extension. */
  emit(topic: string, payload: Json): Promise<void>;
  /**
   * Writes one extension log line, already bounded (`quotas.log`). `line.fields` go under one key of the host's
   * line so they cannot overwrite the host's own keys; `line.truncated` says what was cut. `host: true` marks the
   * host's own notes about this extension's logging (lines dropped by the rate limit).
   */
  log(level: LogLevel, message: string, line: Omit<BoundedLine, 'message'> & { host?: Record<string, Json> }): void;
  /** Per-extension store; outlives sandbox restarts. A plain Map is taken as the store's backing. */
  kv: KvStore | Map<string, Json>;
  env: NodeJS.ProcessEnv;
  /** The quotas that apply to this extension (effectiveQuotas); the host-config defaults when omitted. */
  quotas?: Quotas;
  /** How host names are resolved for ctx.fetch (tests inject a rebinding name server). */
  resolve?: Resolver;
  /** The host's ctx.fetch breakers per extension and origin (policy.fetchBreaker); none: no breaker. */
  fetchBreakers?: FetchBreakers;
  /** Clock of the log rate limit (tests move it by hand). */
  now?: () => number;
}

/** An error the extension can handle like Node's own (`err.code === 'ENOENT'`). */
function fsError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

function isInside(root: string, target: string): boolean {
  return target === root || target.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

export function createContextHandler(host: ContextHost): ContextHandler {
  const quotas = host.quotas ?? DEFAULT_QUOTAS;
  const kv = host.kv instanceof KvStore ? host.kv : new KvStore(host.kv);
  const network = new NetworkPolicy(host.permissions.network ?? []);
  const logRate = new LogRate(quotas.log, host.now);
  const exceeded = (group: keyof Quotas, key: string, what: string) => quotaExceeded(host.extension, group, key, (quotas[group] as Record<string, number>)[key]!, what);
  let fetchesInFlight = 0;
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

  // Disk used by the data directory: measured once (a walk that never follows links), then kept up to date by
  // every write, which run one at a time so each checks the quota against the true total.
  let usage: { bytes: number; entries: number } | undefined;
  let writing: Promise<unknown> = Promise.resolve();
  async function measure(): Promise<{ bytes: number; entries: number }> {
    if (usage) return usage;
    const total = { bytes: 0, entries: 0 };
    const walk = async (dir: string): Promise<void> => {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        return;
      }
      for (const name of names) {
        const full = path.join(dir, name);
        const st = await lstat(full).catch(() => undefined);
        if (!st) continue;
        total.entries++;
        if (st.isDirectory()) await walk(full);
        else total.bytes += st.size;
      }
    };
    await walk(host.dataDir);
    return (usage = total);
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
      const max = quotas.fs.maxFileBytes;
      if (size > max) throw exceeded('fs', 'maxFileBytes', `reading ${rel} (${size} bytes)`);
      // Read at most max + 1 bytes, whatever the file grew to since stat.
      const buf = Buffer.alloc(Math.min(size, max) + 1);
      let got = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got === buf.length) break;
      }
      if (got > max) throw exceeded('fs', 'maxFileBytes', `reading ${rel} (it grew past the limit)`);
      return buf.subarray(0, got).toString('utf8');
    } finally {
      await handle.close();
    }
  }

  async function writeText(rel: string, text: string, append: boolean): Promise<void> {
    if (typeof text !== 'string') throw new TypeError('text must be a string');
    const bytes = Buffer.byteLength(text);
    if (bytes > quotas.fs.maxFileBytes) throw exceeded('fs', 'maxFileBytes', `a write of ${bytes} bytes to ${rel}`);
    const file = await grantedPath(rel, 'write');
    const done = writing.then(async () => {
      const used = await measure();
      const before = await lstat(file).catch(() => undefined);
      if (before && !before.isFile()) throw fsError(before.isDirectory() ? 'EISDIR' : 'EPERM', `cannot write ${rel}: not a regular file`);
      const oldSize = before?.size ?? 0;
      const newSize = append ? oldSize + bytes : bytes;
      if (newSize > quotas.fs.maxFileBytes) throw exceeded('fs', 'maxFileBytes', `${rel} growing to ${newSize} bytes`);
      // Folders this write would create, and the file itself if new, count as entries.
      let newDirs = 0;
      for (let dir = path.dirname(file); dir.length > host.dataDir.length; dir = path.dirname(dir)) {
        if (await lstat(dir).then(() => true, () => false)) break;
        newDirs++;
      }
      const entries = used.entries + newDirs + (before ? 0 : 1);
      if (entries > quotas.fs.maxFiles) throw exceeded('fs', 'maxFiles', `creating ${rel} (${entries} files and folders)`);
      const total = used.bytes - oldSize + newSize;
      if (total > quotas.fs.maxBytes) throw exceeded('fs', 'maxBytes', `writing ${rel} (${total} bytes in its data directory)`);
      await mkdir(path.dirname(file), { recursive: true });
      used.entries += newDirs;
      // Re-check the parent after creating it, then refuse a link as the final component.
      await grantedPath(rel, 'write');
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (append ? constants.O_APPEND : constants.O_TRUNC);
      const handle = await open(file, flags, 0o600).catch((err: NodeJS.ErrnoException) => {
        throw fsError(err.code ?? 'EIO', `${err.code ?? 'EIO'}: cannot write ${rel}`);
      });
      try {
        if (!before) used.entries++;
        used.bytes -= oldSize;
        await handle.writeFile(text, 'utf8');
      } finally {
        // Whatever happened, count what is on disk now.
        used.bytes += (await handle.stat().catch(() => ({ size: newSize }))).size;
        await handle.close();
      }
    });
    writing = done.catch(() => undefined);
    await done;
  }

  function writeLog(level: LogLevel, message: unknown, fields: unknown): void {
    const rate = logRate.take();
    if (!rate.ok) {
      if (rate.first) {
        const note = quotaExceeded(host.extension, 'log', 'linesPerSecond', quotas.log.linesPerSecond, 'its logging');
        host.log('warn', `${note.message}: dropping its log lines until the rate allows (burst ${quotas.log.burst})`, { fields: undefined, host: { code: note.code, limit: 'quotas.log.linesPerSecond' } });
      }
      return;
    }
    if (rate.dropped > 0) {
      host.log('warn', `extension ${host.extension}: ${rate.dropped} log line(s) were dropped by quotas.log.linesPerSecond = ${quotas.log.linesPerSecond}`, {
        fields: undefined,
        host: { code: 'PLINTH_ERR_QUOTA_EXCEEDED', limit: 'quotas.log.linesPerSecond', dropped: rate.dropped },
      });
    }
    const line = boundLine(message, fields, quotas.log.maxLineBytes);
    host.log(level, line.message, { fields: line.fields, ...(line.truncated ? { truncated: line.truncated } : {}) });
  }

  function kvOp(op: Extract<ContextOp, { op: 'kv.get' | 'kv.set' | 'kv.delete' }>): Json | undefined {
    if (host.permissions.kv !== true) throw denied('the key-value store', '"kv": true');
    if (typeof op.key !== 'string' || op.key.length > MAX_KV_KEY_CHARS) throw new TypeError(`kv keys are strings of at most ${MAX_KV_KEY_CHARS} characters`);
    if (op.op === 'kv.get') return kv.get(op.key);
    if (op.op === 'kv.delete') return kv.delete(op.key);
    const json = JSON.stringify(op.value);
    if (json === undefined) throw new TypeError('kv values are JSON values');
    const bytes = Buffer.byteLength(json);
    if (bytes > quotas.kv.maxValueBytes) throw exceeded('kv', 'maxValueBytes', `a value of ${bytes} bytes`);
    const after = kv.sizeAfterSet(op.key, json);
    if (after.keys > quotas.kv.maxKeys) throw exceeded('kv', 'maxKeys', `key ${kv.size + 1}`);
    if (after.bytes > quotas.kv.maxBytes) throw exceeded('kv', 'maxBytes', `a store of ${after.bytes} bytes`);
    kv.set(op.key, json);
    return undefined;
  }

  async function fetchOp(url: string, init: Extract<ContextOp, { op: 'fetch' }>['init']): Promise<Json> {
    if (fetchesInFlight >= quotas.fetch.maxConcurrent) throw exceeded('fetch', 'maxConcurrent', `fetch number ${fetchesInFlight + 1} in flight`);
    fetchesInFlight++;
    try {
      return await pinnedFetch({ extension: host.extension, network, quotas: quotas.fetch, resolve: host.resolve ?? systemResolver, denied, ...(host.fetchBreakers ? { breakers: host.fetchBreakers } : {}) }, url, init);
    } finally {
      fetchesInFlight--;
    }
  }

  return async (op: ContextOp): Promise<Json | undefined> => {
    switch (op.op) {
      case 'log':
        writeLog(op.level, op.message, op.fields);
        return undefined;
      case 'emit': {
        if (!isValidTopic(op.topic)) throw denied(`publishing to ${JSON.stringify(op.topic)} (not a valid topic)`, 'a dot-separated topic');
        if (isReservedTopic(op.topic)) {
          throw new PlinthError('PLINTH_ERR_TOPIC_RESERVED', `extension ${host.extension}: "${op.topic}" is a topic only the host publishes on`, {
            extension: host.extension,
            hint: 'topics starting with extension., pipeline. or host. are the host\'s; publish under a name of your own',
          });
        }
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
      case 'kv.delete':
        return kvOp(op);
      case 'env':
        if (!(host.permissions.env ?? []).includes(op.name)) throw denied(`environment variable ${op.name}`, `"${op.name}" under permissions.env`);
        return Object.hasOwn(host.env, op.name) ? (host.env[op.name] ?? undefined) : undefined;
      case 'fetch':
        return fetchOp(op.url, op.init);
      default:
        throw new TypeError(`unknown ctx operation ${JSON.stringify((op as { op?: unknown }).op)}`);
    }
  };
}
