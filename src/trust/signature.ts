// plinth.sig (schemas/signature.schema.json): the SHA-256 of every other file, the publisher and key id, and an
// Ed25519 signature over a canonical encoding of exactly those fields (DESIGN.md §3).
import { sign as edSign, verify as edVerify, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile, writeFile, rename, lstat } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError, type Problem } from '../errors.ts';
import { validators, toProblems } from '../schema/index.ts';
import { hashPackageFiles, SIGNATURE_FILE } from './files.ts';
import { keyIdOf } from './keys.ts';
import { assertInScope, type TrustStore } from './store.ts';

export const SIGNATURE_FORMAT = 'plinth-sig/1';

export interface SignatureFile {
  format: typeof SIGNATURE_FORMAT;
  publisher: string;
  keyId: string;
  files: Record<string, string>;
  signature: string;
}

/** The signed bytes: an array, so neither key order in the file nor JS's integer-key ordering can change them. */
export function signingPayload(sig: Omit<SignatureFile, 'signature'>): Buffer {
  const files = Object.keys(sig.files).sort().map((f) => [f, sig.files[f]]);
  return Buffer.from(JSON.stringify([sig.format, sig.publisher, sig.keyId, files]), 'utf8');
}

/** Signs the package in `dir` and writes `<dir>/plinth.sig` (atomically). */
export async function signExtension(dir: string, privateKey: KeyObject, publisher: string): Promise<SignatureFile> {
  const unsigned = { format: SIGNATURE_FORMAT, publisher, keyId: keyIdOf(createPublicKey(privateKey)), files: await hashPackageFiles(dir) } as const;
  const sig: SignatureFile = { ...unsigned, signature: edSign(null, signingPayload(unsigned), privateKey).toString('base64') };
  if (!validators.signature(sig)) {
    throw new PlinthError('PLINTH_ERR_USAGE', `cannot sign ${dir}: ${toProblems(validators.signature.errors).map((p) => `${p.path} ${p.message}`).join('; ')}`, {
      hint: 'publisher ids are lower-case letters, digits, ".", "_" or "-"',
    });
  }
  const target = path.join(dir, SIGNATURE_FILE);
  const tmp = `${target}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(sig, null, 2) + '\n');
  await rename(tmp, target);
  return sig;
}

export interface Verification {
  publisher: string;
  keyId: string;
  fileCount: number;
  /** Sorted relative path → SHA-256, as verified; the lockfile records a digest of it. */
  files: Record<string, string>;
  /** The entry of the publisher's trust-store `scopes` that lets it sign this id; absent when it has no `scopes` (any id). */
  scope?: string;
}

/**
 * Verifies the package in `dir` against the trust store. Throws a PlinthError whose code says what is wrong:
 * SIG_MISSING, SIG_MALFORMED, SIG_SYMLINK, SIG_UNTRUSTED_PUBLISHER, SIG_REVOKED_KEY, SIG_INVALID,
 * SIG_FILE_CHANGED / SIG_FILE_MISSING / SIG_FILE_ADDED (naming every file concerned), SIG_OUT_OF_SCOPE (the
 * publisher's trust-store `scopes` do not include `extension`; without an id to check, a scoped publisher's
 * signature is refused too).
 */
export async function verifyExtension(dir: string, store: TrustStore, extension?: string): Promise<Verification> {
  const who = extension ? `extension ${extension} at ${dir}` : dir;
  const ext = extension ? { extension } : {};
  const sigPath = path.join(dir, SIGNATURE_FILE);

  let text: string;
  try {
    if ((await lstat(sigPath)).isSymbolicLink()) {
      throw new PlinthError('PLINTH_ERR_SIG_SYMLINK', `${who}: ${SIGNATURE_FILE} is a symbolic link`, { ...ext, file: sigPath });
    }
    text = await readFile(sigPath, 'utf8');
  } catch (err) {
    if (err instanceof PlinthError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PlinthError('PLINTH_ERR_SIG_MISSING', `${who} is not signed (no ${SIGNATURE_FILE})`, {
        ...ext,
        file: sigPath,
        hint: 'sign it with `plinth sign <dir> --key <file> --publisher <id>`, or set trust.policy to warn/off for development',
      });
    }
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: cannot read ${SIGNATURE_FILE}: ${(err as Error).message}`, { ...ext, file: sigPath, cause: err });
  }

  let sig: SignatureFile;
  try {
    sig = JSON.parse(text) as SignatureFile;
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: ${SIGNATURE_FILE} is not valid JSON`, { ...ext, file: sigPath, cause: err, hint: 'sign the extension again' });
  }
  if (!validators.signature(sig)) {
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: ${SIGNATURE_FILE} does not match schemas/signature.schema.json`, {
      ...ext,
      file: sigPath,
      problems: toProblems(validators.signature.errors),
      hint: 'sign the extension again',
    });
  }

  // Walk first: a symlink anywhere refuses the package whatever the signature says.
  const actual = await hashPackageFiles(dir, extension);

  const publisher = store.publishers.get(sig.publisher);
  if (publisher?.revoked.has(sig.keyId)) {
    throw new PlinthError('PLINTH_ERR_SIG_REVOKED_KEY', `${who}: signed by publisher "${sig.publisher}" with key ${sig.keyId}, which the trust store revokes`, {
      ...ext,
      file: sigPath,
      hint: 'ask the publisher for a build signed with a current key',
    });
  }
  const key = publisher?.keys.get(sig.keyId);
  if (!publisher || !key) {
    const where = store.file ? `trust store ${store.file}` : 'the trust store (none configured)';
    throw new PlinthError(
      'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER',
      publisher
        ? `${who}: key ${sig.keyId} is not among the keys of publisher "${sig.publisher}" in ${where}`
        : `${who}: publisher "${sig.publisher}" is not in ${where}`,
      { ...ext, file: sigPath, hint: `add the publisher's public key under publishers["${sig.publisher}"].keys if you trust it${store.file ? '' : ' (pass --trust <file>)'}` },
    );
  }

  let valid: boolean;
  try {
    valid = edVerify(null, signingPayload(sig), key, Buffer.from(sig.signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new PlinthError('PLINTH_ERR_SIG_INVALID', `${who}: the signature in ${SIGNATURE_FILE} does not match its contents (publisher "${sig.publisher}", key ${sig.keyId})`, {
      ...ext,
      file: sigPath,
      hint: `${SIGNATURE_FILE} was edited or forged; get the extension again from its publisher`,
    });
  }

  // After the signature is known to be the publisher's, before the files: a publisher may sign only its ids.
  const scope = assertInScope(store, sig.publisher, extension, who, sigPath);

  const changed: string[] = [];
  const missing: string[] = [];
  const added: string[] = [];
  for (const [f, h] of Object.entries(sig.files)) {
    if (!(f in actual)) missing.push(f);
    else if (actual[f] !== h) changed.push(f);
  }
  for (const f of Object.keys(actual)) if (!Object.hasOwn(sig.files, f)) added.push(f);
  if (changed.length + missing.length + added.length > 0) {
    const problems: Problem[] = [
      ...changed.sort().map((f) => ({ path: f, message: 'changed since signing' })),
      ...missing.sort().map((f) => ({ path: f, message: 'listed in plinth.sig but missing' })),
      ...added.sort().map((f) => ({ path: f, message: 'not listed in plinth.sig (added after signing)' })),
    ];
    const [code, first, what] =
      changed.length > 0
        ? (['PLINTH_ERR_SIG_FILE_CHANGED', changed[0]!, 'was changed since signing'] as const)
        : missing.length > 0
          ? (['PLINTH_ERR_SIG_FILE_MISSING', missing[0]!, 'is listed in plinth.sig but missing'] as const)
          : (['PLINTH_ERR_SIG_FILE_ADDED', added[0]!, 'was added after signing'] as const);
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more file problem(s))` : '';
    throw new PlinthError(code, `${who}: ${first} ${what}${more}`, {
      ...ext,
      file: path.join(dir, first),
      problems,
      hint: 'restore the extension as published, or re-sign it if you are its publisher',
    });
  }
  return { publisher: sig.publisher, keyId: sig.keyId, fileCount: Object.keys(actual).length, files: actual, ...(scope === undefined ? {} : { scope }) };
}
