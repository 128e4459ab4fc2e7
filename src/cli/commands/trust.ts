// `plinth keygen`, `plinth sign`, `plinth verify` (DESIGN.md §3).
import path from 'node:path';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { readPackageJson } from '../../manifest/index.ts';
import { writeKeyPair, readPrivateKey, signExtension, verifyExtension, loadTrustStore } from '../../trust/index.ts';
import { EXIT, printJson, usageError, type Io } from '../output.ts';

export async function keygen(io: Io, opts: { out: string; force?: boolean; json?: boolean }): Promise<number> {
  const pair = await writeKeyPair(path.resolve(opts.out), { force: opts.force ?? false });
  if (opts.json) {
    printJson(io, { keyId: pair.keyId, privateKey: pair.keyFile, publicKey: pair.publicKeyFile, publicKeyPem: pair.publicKeyPem });
  } else {
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
  return EXIT.ok;
}

async function packageName(dir: string): Promise<string | undefined> {
  try {
    const pkg = (await readPackageJson(dir)) as { name?: unknown } | undefined;
    return typeof pkg?.name === 'string' ? pkg.name : undefined;
  } catch {
    return undefined;
  }
}

export async function sign(io: Io, dirArg: string, opts: { key?: string; publisher?: string; json?: boolean }): Promise<number> {
  if (!opts.key) throw usageError('missing --key <file>', 'pass the private key written by `plinth keygen --out <prefix>` (<prefix>.key)');
  if (!opts.publisher) throw usageError('missing --publisher <id>', 'pass the publisher id the trust store lists your public key under');
  const dir = path.resolve(dirArg);
  const key = await readPrivateKey(path.resolve(opts.key));
  const sig = await signExtension(dir, key, opts.publisher);
  const count = Object.keys(sig.files).length;
  if (opts.json) printJson(io, { ok: true, dir, publisher: sig.publisher, keyId: sig.keyId, files: count });
  else io.out(`signed ${(await packageName(dir)) ?? dir}: ${count} file(s), publisher ${sig.publisher}, key ${sig.keyId} → ${path.join(dir, 'plinth.sig')}`);
  return EXIT.ok;
}

export async function verify(io: Io, dirArg: string, flags: ConfigFlags & { json?: boolean }): Promise<number> {
  const config = await loadHostConfig({ flags });
  if (!config.trust.store) throw usageError('no trust store given', 'pass --trust <trust.json>, set PLINTH_TRUST_STORE, or set trust.store in plinth.config.yaml');
  const store = await loadTrustStore(config.trust.store);
  const dir = path.resolve(dirArg);
  const id = await packageName(dir);
  const v = await verifyExtension(dir, store, id);
  const scopes = store.publishers.get(v.publisher)?.scopes;
  if (flags.json) printJson(io, { ok: true, dir, extension: id ?? null, publisher: v.publisher, keyId: v.keyId, files: v.fileCount, ...(scopes === undefined ? {} : { scope: v.scope, scopes }) });
  else io.out(`verified ${id ?? dir}: ${v.fileCount} file(s) signed by ${v.publisher} (key ${v.keyId}); ${scopes === undefined ? `${v.publisher} may sign any id (no scopes in the trust store)` : `within ${v.publisher}'s scope ${v.scope} (scopes: ${scopes.join(', ')})`}`);
  return EXIT.ok;
}
