// The host's trust store (schemas/trust-store.schema.json): publisher id → trusted Ed25519 keys and revoked key ids.
import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { PlinthError } from '../errors.ts';
import { validators, toProblems } from '../schema/index.ts';
import { keyIdOf, parsePublicKey } from './keys.ts';

export interface TrustedPublisher {
  keys: Map<string, KeyObject>;
  revoked: Set<string>;
  /** Which ids it may sign (exact ids, `@scope/*`, `*`); undefined: any id (no `scopes` in the store). */
  scopes: string[] | undefined;
}

export interface TrustStore {
  /** Where it was read from, for messages; undefined for an empty store. */
  file: string | undefined;
  publishers: Map<string, TrustedPublisher>;
}

interface RawTrustStore {
  publishers: Record<string, { keys: string[]; revoked?: string[]; scopes?: string[] }>;
}

export function emptyTrustStore(): TrustStore {
  return { file: undefined, publishers: new Map() };
}

export function parseTrustStore(doc: unknown, file: string): TrustStore {
  if (!validators.trustStore(doc)) {
    throw new PlinthError('PLINTH_ERR_TRUST_STORE_INVALID', `trust store ${file} does not match schemas/trust-store.schema.json`, {
      file,
      problems: toProblems(validators.trustStore.errors),
    });
  }
  const publishers = new Map<string, TrustedPublisher>();
  for (const [id, entry] of Object.entries((doc as RawTrustStore).publishers)) {
    const keys = new Map<string, KeyObject>();
    entry.keys.forEach((pem, i) => {
      let key: KeyObject;
      try {
        key = parsePublicKey(pem, `${file}#/publishers/${id}/keys/${i}`);
      } catch (err) {
        throw new PlinthError('PLINTH_ERR_TRUST_STORE_INVALID', `trust store ${file}: /publishers/${id}/keys/${i} is not an Ed25519 public key in PEM form`, {
          file,
          cause: err,
          hint: 'paste the whole content of the <prefix>.pub written by `plinth keygen`',
        });
      }
      keys.set(keyIdOf(key), key);
    });
    publishers.set(id, { keys, revoked: new Set(entry.revoked ?? []), scopes: entry.scopes ? [...entry.scopes] : undefined });
  }
  return { file, publishers };
}

/**
 * The entry of `publisher.scopes` that lets it sign `id` (`*` when it has no scopes at all), or undefined when
 * none does. Like npm scopes: `@acme/*` covers every `@acme/<name>`, never `@acme` itself or `@acme-x/…`.
 */
export function scopeAllowing(publisher: TrustedPublisher, id: string): string | undefined {
  if (publisher.scopes === undefined) return '*';
  return publisher.scopes.find((s) => s === '*' || s === id || (s.endsWith('/*') && id.startsWith(s.slice(0, -1)) && !id.slice(s.length - 1).includes('/')));
}

/**
 * Throws PLINTH_ERR_SIG_OUT_OF_SCOPE unless `publisher` (trusted in `store`) may sign `extension`; returns the
 * scope entry that allows it, or undefined when the publisher has no `scopes` (any id). Without an id to check,
 * a scoped publisher's signature is refused. `who` and `file` name the package in the error.
 */
export function assertInScope(store: TrustStore, publisherId: string, extension: string | undefined, who: string, file: string): string | undefined {
  const publisher = store.publishers.get(publisherId);
  if (!publisher || publisher.scopes === undefined) return undefined;
  const scope = extension === undefined ? undefined : scopeAllowing(publisher, extension);
  if (scope !== undefined) return scope;
  const key = `${store.file ?? 'the trust store'}#/publishers/${publisherId}/scopes`;
  const allowed = publisher.scopes.length > 0 ? publisher.scopes.join(', ') : 'no id at all (its scopes are empty)';
  throw new PlinthError('PLINTH_ERR_SIG_OUT_OF_SCOPE', `${who}: publisher "${publisherId}" may not sign ${extension === undefined ? 'a package without an id' : `"${extension}"`}: ${key} allows ${allowed}`, {
    ...(extension === undefined ? {} : { extension }),
    file,
    hint:
      extension === undefined
        ? 'give the package a "name" in its package.json'
        : `if "${publisherId}" should publish ${extension}, add "${extension}"${extension.startsWith('@') ? ` or "${extension.slice(0, extension.indexOf('/'))}/*"` : ''} to publishers["${publisherId}"].scopes; otherwise remove this copy`,
  });
}

export async function loadTrustStore(file: string): Promise<TrustStore> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_TRUST_STORE_INVALID', `cannot read trust store ${file}: ${(err as Error).message}`, {
      file,
      cause: err,
      hint: 'pass --trust <file> (or set trust.store) pointing at a JSON trust store',
    });
  }
  return parseTrustStore(doc, file);
}
