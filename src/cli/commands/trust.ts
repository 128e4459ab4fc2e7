// `plinth keygen`, `plinth sign`, `plinth verify` (DESIGN.md §3).
import path from 'node:path';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { PlinthError, isPlinthError } from '../../errors.ts';
import { isExtensionPackage, readPackageJson, validateExtensionPackage } from '../../manifest/index.ts';
import { writeKeyPair, readPrivateKey, signExtension, verifyExtension, loadTrustStore } from '../../trust/index.ts';
import { EXIT, usageError, type Io, type Outcome } from '../output.ts';

export async function keygen(io: Io, opts: { out: string; force?: boolean; json?: boolean }): Promise<Outcome> {
  const pair = await writeKeyPair(path.resolve(opts.out), { force: opts.force ?? false });
  const data = { keyId: pair.keyId, privateKey: pair.keyFile, publicKey: pair.publicKeyFile, publicKeyPem: pair.publicKeyPem };
  if (!opts.json) {
    io.out(
      [
        `private key: ${pair.keyFile} (mode 0600, keep it secret)`,
        `public key:  ${pair.publicKeyFile}`,
        `key id:      ${pair.keyId}`,
        '',
        'To trust it, add the public key to a trust store:',
        JSON.stringify({ publishers: { '<publisher-id>': { keys: [pair.publicKeyPem] } } }, null, 2),
      ].join('\n'),
    );
  }
  return { code: EXIT.ok, data };
}

async function packageName(dir: string): Promise<string | undefined> {
  try {
    const pkg = (await readPackageJson(dir)) as { name?: unknown } | undefined;
    return typeof pkg?.name === 'string' ? pkg.name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Refuses to sign what no host would load: the folder must hold a package.json with a valid plinth block (the
 * same validation discovery runs). `--force` signs anyway, for the rare case (a fixture of a broken package).
 */
async function checkSignable(dir: string): Promise<void> {
  let pkg: unknown;
  try {
    pkg = await readPackageJson(dir);
  } catch (err) {
    throw refusal(err);
  }
  if (pkg === undefined) {
    throw new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `${dir} has no package.json, so it is not an extension`, { file: path.join(dir, 'package.json'), hint: 'sign the extension folder itself (the one with package.json), or pass --force' });
  }
  if (!isExtensionPackage(pkg)) {
    throw new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `${path.join(dir, 'package.json')} has no "plinth" block, so no host would load it as an extension`, {
      file: path.join(dir, 'package.json'),
      hint: 'add a "plinth" block (schemas/extension-manifest.schema.json), or pass --force',
    });
  }
  try {
    await validateExtensionPackage(dir, pkg);
  } catch (err) {
    throw refusal(err);
  }
}

function refusal(err: unknown): unknown {
  if (!isPlinthError(err)) return err;
  return new PlinthError(err.code, `not signed: ${err.message}`, {
    ...(err.extension ? { extension: err.extension } : {}),
    ...(err.file ? { file: err.file } : {}),
    problems: err.problems,
    hint: `${err.hint ? `${err.hint}; ` : ''}fix it and sign again (--force signs anyway)`,
  });
}

export async function sign(io: Io, dirArg: string, opts: { key?: string; publisher?: string; force?: boolean; json?: boolean }): Promise<Outcome> {
  if (!opts.key) throw usageError('missing --key <file>', 'pass the private key written by `plinth keygen --out <prefix>` (<prefix>.key)');
  if (!opts.publisher) throw usageError('missing --publisher <id>', 'pass the publisher id the trust store lists your public key under');
  const dir = path.resolve(dirArg);
  if (!opts.force) await checkSignable(dir);
  const key = await readPrivateKey(path.resolve(opts.key));
  const sig = await signExtension(dir, key, opts.publisher);
  const count = Object.keys(sig.files).length;
  if (!opts.json) io.out(`signed ${(await packageName(dir)) ?? dir}: ${count} file(s), publisher ${sig.publisher}, key ${sig.keyId} → ${path.join(dir, 'plinth.sig')}`);
  return { code: EXIT.ok, data: { dir, extension: (await packageName(dir)) ?? null, publisher: sig.publisher, keyId: sig.keyId, files: count, signature: path.join(dir, 'plinth.sig') } };
}

export async function verify(io: Io, dirArg: string, flags: ConfigFlags & { json?: boolean }): Promise<Outcome> {
  const config = await loadHostConfig({ flags });
  if (!config.trust.store) throw usageError('no trust store given', 'pass --trust <trust.json>, set PLINTH_TRUST_STORE, or set trust.store in plinth.config.yaml');
  const store = await loadTrustStore(config.trust.store);
  const dir = path.resolve(dirArg);
  const id = await packageName(dir);
  const v = await verifyExtension(dir, store, id);
  const scopes = store.publishers.get(v.publisher)?.scopes;
  if (!flags.json) io.out(`verified ${id ?? dir}: ${v.fileCount} file(s) signed by ${v.publisher} (key ${v.keyId}); ${scopes === undefined ? `${v.publisher} may sign any id (no scopes in the trust store)` : `within ${v.publisher}'s scope ${v.scope} (scopes: ${scopes.join(', ')})`}`);
  return { code: EXIT.ok, data: { dir, extension: id ?? null, publisher: v.publisher, keyId: v.keyId, files: v.fileCount, ...(scopes === undefined ? {} : { scope: v.scope, scopes }) } };
}
