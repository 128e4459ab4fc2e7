// plinth.sig (schemas/signature.schema.json): the SHA-256 of every other file, the publisher and key id, and an
// Ed25519 signature over a canonical encoding of exactly those fields (DESIGN.md §3).
import { sign as edSign, verify as edVerify, createPublicKey, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { open, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseJsonAst, type ValueNode } from '@humanwhocodes/momoa';
import { PlinthError, type Problem } from '../errors.ts';
import { validators, toProblems } from '../schema/index.ts';
import { hashPackage, hashPackageFiles, refuseEmptyFolders, toFileHashes, SIGNATURE_FILE, type FileHashes } from './files.ts';
import { keyIdOf } from './keys.ts';
import { assertInScope, type TrustStore } from './store.ts';

export const SIGNATURE_FORMAT = 'plinth-sig/1';

export interface SignatureFile {
  format: typeof SIGNATURE_FORMAT;
  publisher: string;
  keyId: string;
  files: FileHashes;
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
  /** Relative path → SHA-256, as verified (no prototype); the lockfile records a digest of it. */
  files: FileHashes;
  /** The entry of the publisher's trust-store `scopes` that lets it sign this id; absent when it has no `scopes` (any id). */
  scope?: string;
}

/** Reads plinth.sig without following a link, refusing special files and anything over MAX_SIGNATURE_BYTES. */
async function readSignatureText(file: string, prefix: string, options: { extension?: string; file: string }): Promise<string> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new PlinthError('PLINTH_ERR_SIG_SYMLINK', `${prefix}${SIGNATURE_FILE} is a symbolic link`, options);
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new PlinthError('PLINTH_ERR_PACKAGE_SPECIAL_FILE', `${prefix}${SIGNATURE_FILE} is not a regular file`, { ...options, hint: 'a package may hold only regular files and folders: remove it, then sign again' });
    if (st.size > MAX_SIGNATURE_BYTES) {
      throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${prefix}${SIGNATURE_FILE} is ${st.size} bytes, more than a signature can be (${MAX_SIGNATURE_BYTES})`, { ...options, hint: 'sign the extension again' });
    }
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/**
 * Every member name that occurs twice in one object of a JSON text, as `/json/pointer`. JSON.parse keeps the
 * last of duplicates silently while other readers keep the first: a plinth.sig with two entries for one file
 * would mean different packages to different tools, so it is refused.
 */
function duplicateMembers(text: string): string[] {
  const out: string[] = [];
  const visit = (node: ValueNode, at: string): void => {
    if (node.type === 'Object') {
      const names = new Set<string>();
      for (const m of node.members) {
        const name = String(m.name.type === 'String' ? m.name.value : m.name.name);
        const pointer = `${at}/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;
        if (names.has(name)) out.push(pointer);
        names.add(name);
        visit(m.value, pointer);
      }
    } else if (node.type === 'Array') node.elements.forEach((e, i) => visit(e.value, `${at}/${i}`));
  };
  visit(parseJsonAst(text, { mode: 'json' }).body, '');
  return out;
}

/**
 * Verifies the package in `dir`, read in place, against the trust store (`plinth verify`). Throws a PlinthError
 * whose code says what is wrong: SIG_MISSING, SIG_MALFORMED, SIG_DUPLICATE_ENTRY, SIG_SYMLINK (and the other
 * package-shape refusals of files.ts: PACKAGE_SPECIAL_FILE, PACKAGE_UNREADABLE for an I/O error, ...), SIG_UNTRUSTED_PUBLISHER, SIG_REVOKED_KEY, SIG_INVALID,
 * SIG_FILE_CHANGED / SIG_FILE_MISSING / SIG_FILE_ADDED (naming every file concerned), SIG_OUT_OF_SCOPE (the
 * publisher's trust-store `scopes` do not include `extension`; without an id to check, a scoped publisher's
 * signature is refused too).
 */
export async function verifyExtension(dir: string, store: TrustStore, extension?: string): Promise<Verification> {
  // Walk first: a symlink anywhere refuses the package whatever the signature says.
  const { files, emptyFolders } = await hashPackage(dir, extension);
  return verifyFiles({ dir, files, emptyFolders, store, ...(extension ? { extension } : {}) });
}

export interface FilesToVerify {
  /** Where plinth.sig is read (a snapshot, or the package itself). */
  dir: string;
  /** The hashes of the bytes that will run: every file but plinth.sig. */
  files: FileHashes;
  /** Empty folders of the package: refused once the file list matches (a deleted file is reported as missing). */
  emptyFolders?: readonly string[];
  store: TrustStore;
  extension?: string;
  /** The folder messages name (the plugin folder the user knows); defaults to `dir`. */
  reportDir?: string;
}

/**
 * Checks `files` — hashes already taken, e.g. while copying into a snapshot — against the plinth.sig found in
 * `dir` and the trust store. Same errors as verifyExtension; messages and `file` name `reportDir`.
 */
export async function verifyFiles(input: FilesToVerify): Promise<Verification> {
  const { sig, scope } = await checkSignatureFile(input);
  return { ...compareFiles(input, sig), ...(scope === undefined ? {} : { scope }) };
}

/** A plinth.sig larger than this is refused unread: 16 MiB lists well over 100 000 files. */
export const MAX_SIGNATURE_BYTES = 16 * 1024 * 1024;

/**
 * Everything about plinth.sig in `dir` but the file hashes: present, a regular file, strict JSON without
 * duplicate members, the schema, a trusted and unrevoked key, a valid signature. Under policy `required` the
 * registry runs this on the plugin folder first, so an unsigned or untrusted package is refused before it is
 * copied anywhere; the authoritative check is verifyFiles on the snapshot.
 */
export async function checkSignatureFile(input: Omit<FilesToVerify, 'files' | 'emptyFolders'>): Promise<{ sig: SignatureFile; scope: string | undefined }> {
  const { dir, extension } = input;
  const shownDir = input.reportDir ?? dir;
  const who = extension ? `extension ${extension} at ${shownDir}` : shownDir;
  const ext = extension ? { extension } : {};
  const sigPath = path.join(dir, SIGNATURE_FILE);
  const shownSig = path.join(shownDir, SIGNATURE_FILE);

  let text: string;
  try {
    text = await readSignatureText(sigPath, `${who}: `, { ...ext, file: shownSig });
  } catch (err) {
    if (err instanceof PlinthError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new PlinthError('PLINTH_ERR_SIG_MISSING', `${who} is not signed (no ${SIGNATURE_FILE})`, {
        ...ext,
        file: shownSig,
        hint: 'sign it with `plinth sign <dir> --key <file> --publisher <id>`, or set trust.policy to warn/off for development',
      });
    }
    throw new PlinthError('PLINTH_ERR_PACKAGE_UNREADABLE', `${who}: cannot read ${SIGNATURE_FILE}: ${(err as NodeJS.ErrnoException).code ?? 'error'} ${(err as Error).message}`, {
      ...ext,
      file: shownSig,
      cause: err,
      hint: 'make the package readable by the user the host runs as (check permissions and the disk), then retry',
    });
  }
  return checkSignatureText(text, { ...input, reportDir: shownDir });
}

/**
 * checkSignatureFile's checks on plinth.sig's text as given (a remote runner sends it with runner.register, so
 * there is no file to read): strict JSON without duplicates, the schema, a trusted unrevoked key, a valid
 * signature, the publisher's scope for `extension`. Messages name `reportDir`/plinth.sig.
 */
export function checkSignatureText(text: string, input: { dir: string; store: TrustStore; extension?: string; reportDir?: string }): { sig: SignatureFile; scope: string | undefined } {
  const { store, extension } = input;
  const shownDir = input.reportDir ?? input.dir;
  const who = extension ? `extension ${extension} at ${shownDir}` : shownDir;
  const ext = extension ? { extension } : {};
  const shownSig = path.join(shownDir, SIGNATURE_FILE);
  if (Buffer.byteLength(text, 'utf8') > MAX_SIGNATURE_BYTES) {
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: ${SIGNATURE_FILE} is more than a signature can be (${MAX_SIGNATURE_BYTES} bytes)`, { ...ext, file: shownSig, hint: 'sign the extension again' });
  }

  let sig: SignatureFile;
  try {
    sig = JSON.parse(text) as SignatureFile;
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: ${SIGNATURE_FILE} is not valid JSON`, { ...ext, file: shownSig, cause: err, hint: 'sign the extension again' });
  }
  let duplicates: string[];
  try {
    duplicates = duplicateMembers(text);
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: ${SIGNATURE_FILE} is not strict JSON`, { ...ext, file: shownSig, cause: err, hint: 'sign the extension again' });
  }
  if (duplicates.length > 0) {
    throw new PlinthError('PLINTH_ERR_SIG_DUPLICATE_ENTRY', `${who}: ${SIGNATURE_FILE} names ${duplicates[0]} more than once${duplicates.length > 1 ? ` (and ${duplicates.length - 1} more duplicate(s))` : ''}`, {
      ...ext,
      file: shownSig,
      problems: duplicates.map((p) => ({ path: p, message: 'appears more than once in its object' })),
      hint: 'a signature lists each file once: sign the extension again with `plinth sign`',
    });
  }
  if (!validators.signature(sig)) {
    throw new PlinthError('PLINTH_ERR_SIG_MALFORMED', `${who}: ${SIGNATURE_FILE} does not match schemas/signature.schema.json`, {
      ...ext,
      file: shownSig,
      problems: toProblems(validators.signature.errors),
      hint: 'sign the extension again',
    });
  }

  const publisher = store.publishers.get(sig.publisher);
  if (publisher?.revoked.has(sig.keyId)) {
    throw new PlinthError('PLINTH_ERR_SIG_REVOKED_KEY', `${who}: signed by publisher "${sig.publisher}" with key ${sig.keyId}, which the trust store revokes`, {
      ...ext,
      file: shownSig,
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
      { ...ext, file: shownSig, hint: `add the publisher's public key under publishers["${sig.publisher}"].keys if you trust it${store.file ? '' : ' (pass --trust <file>)'}` },
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
      file: shownSig,
      hint: `${SIGNATURE_FILE} was edited or forged; get the extension again from its publisher`,
    });
  }

  // After the signature is known to be the publisher's, before the files: a publisher may sign only its ids.
  const scope = assertInScope(store, sig.publisher, extension, who, shownSig);
  return { sig, scope };
}

function compareFiles(input: FilesToVerify, sig: SignatureFile): Verification {
  const { extension } = input;
  const actual = input.files;
  const shownDir = input.reportDir ?? input.dir;
  const who = extension ? `extension ${extension} at ${shownDir}` : shownDir;
  const ext = extension ? { extension } : {};
  // Own keys only, on both sides: `__proto__`, `constructor` and friends are file names like any other.
  const signed = toFileHashes(sig.files);
  const changed: string[] = [];
  const missing: string[] = [];
  const added: string[] = [];
  for (const f of Object.keys(signed)) {
    if (!Object.hasOwn(actual, f)) missing.push(f);
    else if (actual[f] !== signed[f]) changed.push(f);
  }
  for (const f of Object.keys(actual)) if (!Object.hasOwn(signed, f)) added.push(f);
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
      file: path.join(shownDir, ...first.split('/')),
      problems,
      hint: 'restore the extension as published, or re-sign it if you are its publisher',
    });
  }
  refuseEmptyFolders(input.emptyFolders ?? [], extension, shownDir);
  return { publisher: sig.publisher, keyId: sig.keyId, fileCount: Object.keys(actual).length, files: toFileHashes(actual) };
}
