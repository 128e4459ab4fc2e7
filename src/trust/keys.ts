// Ed25519 keys with node:crypto only. A key id is the first 32 hex digits of the SHA-256 of the public key's
// DER (SPKI) encoding: stable, short enough to read, and what trust stores revoke by.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, writeFile, access } from 'node:fs/promises';
import { PlinthError } from '../errors.ts';

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 32);
}

export interface GeneratedKeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
  keyId: string;
}

export function generateKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyId: keyIdOf(publicKey),
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Writes `<prefix>.key` (mode 0600) and `<prefix>.pub`; refuses to overwrite either unless `force`. */
export async function writeKeyPair(prefix: string, options: { force?: boolean } = {}): Promise<GeneratedKeyPair & { keyFile: string; publicKeyFile: string }> {
  const keyFile = `${prefix}.key`;
  const publicKeyFile = `${prefix}.pub`;
  if (!options.force) {
    for (const f of [keyFile, publicKeyFile]) {
      if (await exists(f)) {
        throw new PlinthError('PLINTH_ERR_FILE_EXISTS', `${f} already exists; not overwriting a key`, { file: f, hint: 'choose another --out prefix, or pass --force to replace it' });
      }
    }
  }
  const pair = generateKeyPair();
  // 0600 at creation, so the private key is never readable by others even for a moment.
  await writeFile(keyFile, pair.privateKeyPem, { mode: 0o600, flag: options.force ? 'w' : 'wx' });
  await writeFile(publicKeyFile, pair.publicKeyPem, { mode: 0o644, flag: options.force ? 'w' : 'wx' });
  return { ...pair, keyFile, publicKeyFile };
}

function assertEd25519(key: KeyObject, file: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new PlinthError('PLINTH_ERR_KEY_INVALID', `${file} holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`, { file, hint: 'make a key pair with `plinth keygen --out <prefix>`' });
  }
  return key;
}

export async function readPrivateKey(file: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_KEY_INVALID', `cannot read key file ${file}: ${(err as Error).message}`, { file, cause: err, hint: 'pass the <prefix>.key written by `plinth keygen`' });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_KEY_INVALID', `${file} is not a PEM private key`, { file, cause: err, hint: 'pass the <prefix>.key written by `plinth keygen` (not the .pub)' });
  }
  return assertEd25519(key, file);
}

/** Parses a PEM public key; `where` names it in errors (a file or a trust-store path). */
export function parsePublicKey(pem: string, where: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_KEY_INVALID', `${where} is not a PEM public key`, { file: where, cause: err });
  }
  return assertEd25519(key, where);
}
