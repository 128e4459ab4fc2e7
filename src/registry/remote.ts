// What a runner's runner.register is checked against before anything of it is used (issue 13): the host's
// `sandbox.remote` policy, then its plinth.sig exactly as a dropped-in copy's (src/trust: strict JSON, trusted and
// unrevoked key, valid signature, the publisher's scope for the id) with the manifest it sent standing for
// package.json (its bytes must hash to the signed entry), then the manifest itself (schemas compiled with the
// host's bounds). The runner's other files are its own business: its process is outside every sandbox. What the
// signature proves is who offers the id and that the manifest — stages, schemas, permissions — is theirs.
import { createHash } from 'node:crypto';
import { PlinthError } from '../errors.ts';
import type { HostConfig, RemotePolicy } from '../config/index.ts';
import { checkSignatureText, type TrustStore, type TrustPolicy } from '../trust/index.ts';
import { isExtensionPackage, validateExtensionPackage, type ExtensionPackage } from '../manifest/index.ts';
import type { RegisterParams } from '../sandbox/index.ts';
import { UNSIGNED_PUBLISHER } from '../datadir/index.ts';
import type { TrustStatus } from './index.ts';

export interface VerifiedRunner {
  pkg: ExtensionPackage;
  trust: TrustStatus;
  /** The verified publisher, `unsigned` for an untrusted one, undefined when nothing was checked (policy off). */
  publisher: string | undefined;
  /** Digest of the manifest: the runners of one pool must offer the same one. */
  digest: string;
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

/** Where a runner's extension is shown to come from (listings, messages): it has no folder on this host. */
export function runnerSource(id: string): string {
  return `remote:${id}`;
}

/**
 * The texts a parsed package.json may have been signed as, when the runner sent only the object: the way npm,
 * editors and `plinth new` write it. Any of them parses back to exactly this object, so a match proves it.
 */
function serialisations(manifest: unknown): string[] {
  const out: string[] = [];
  for (const indent of [2, 4, '\t', 0] as const) {
    const text = indent === 0 ? JSON.stringify(manifest) : JSON.stringify(manifest, null, indent);
    out.push(text + '\n', text, text.replace(/\n/g, '\r\n') + '\r\n');
  }
  return out;
}

/** The policy a runner is verified under: `trusted` is `required` whatever trust.policy says. */
export function runnerTrustPolicy(remote: RemotePolicy, policy: TrustPolicy): TrustPolicy {
  return remote === 'trusted' ? 'required' : policy;
}

export async function verifyRunner(params: RegisterParams, config: HostConfig, store: TrustStore): Promise<VerifiedRunner> {
  const remote = config.sandbox.remote;
  if (remote === 'off') {
    throw new PlinthError('PLINTH_ERR_REMOTE_DISABLED', 'this host accepts no remote runners (sandbox.remote: off)', {
      hint: `set sandbox.remote to "trusted" (signed runners only) or "any" in ${config.file ?? 'the host config'} (docs/remote.md)`,
    });
  }
  let manifest: unknown = params.manifest;
  if (params.manifestText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(params.manifestText);
    } catch (err) {
      throw new PlinthError('PLINTH_ERR_RUNNER_REFUSED', `runner.register: manifestText is not JSON (${(err as Error).message.slice(0, 200)})`, { hint: 'send package.json as it is on disk' });
    }
    if (JSON.stringify(parsed) !== JSON.stringify(manifest)) {
      throw new PlinthError('PLINTH_ERR_RUNNER_REFUSED', 'runner.register: manifest and manifestText are not the same package.json', { hint: 'send package.json parsed as manifest and as it is on disk as manifestText' });
    }
    manifest = parsed;
  }
  if (!isExtensionPackage(manifest)) {
    throw new PlinthError('PLINTH_ERR_RUNNER_REFUSED', 'runner.register: the manifest is not an extension package.json (it has no "plinth" block)', { hint: 'send the package.json of the extension folder, with its "plinth" block' });
  }
  const name = (manifest as { name?: unknown }).name;
  const id = typeof name === 'string' ? name : undefined;
  const source = runnerSource(id ?? '(unnamed)');
  const policy = runnerTrustPolicy(remote, config.trust.policy);

  let trust: TrustStatus = { status: 'unchecked' };
  if (policy !== 'off') {
    try {
      if (params.signature === undefined) {
        throw new PlinthError('PLINTH_ERR_SIG_MISSING', `extension ${id ?? '(unnamed)'} from a runner is not signed (runner.register came without its plinth.sig)`, {
          ...(id ? { extension: id } : {}),
          hint: `sign the package (\`plinth sign <dir> --key <file> --publisher <id>\`) and let the runner send plinth.sig${remote === 'trusted' ? ', or set sandbox.remote: any with trust.policy warn for development' : ''}`,
        });
      }
      const text = typeof params.signature === 'string' ? params.signature : JSON.stringify(params.signature);
      const { sig, scope } = checkSignatureText(text, { dir: source, store, ...(id ? { extension: id } : {}) });
      const signed = Object.hasOwn(sig.files, 'package.json') ? sig.files['package.json'] : undefined;
      const texts = params.manifestText !== undefined ? [params.manifestText] : serialisations(manifest);
      if (signed === undefined || !texts.some((t) => sha256(t) === signed)) {
        throw new PlinthError('PLINTH_ERR_SIG_FILE_CHANGED', `extension ${id ?? '(unnamed)'} at ${source}: the package.json the runner sent is not the one plinth.sig signs${signed === undefined ? ' (plinth.sig lists no package.json)' : ''}`, {
          ...(id ? { extension: id } : {}),
          file: `${source}/package.json`,
          problems: [{ path: 'package.json', message: 'changed since signing' }],
          hint: 'send the signed package.json unchanged (runExtension sends the file as it is), or re-sign the package',
        });
      }
      trust = { status: 'trusted', publisher: sig.publisher, keyId: sig.keyId, ...(scope === undefined ? {} : { scope }) };
    } catch (err) {
      if (policy === 'required' || !(err instanceof PlinthError)) throw err;
      trust = { status: 'untrusted', error: err };
    }
  }

  // The manifest's runtime is what it is for a dropped-in copy; registered, it runs remote.
  const raw = structuredClone(manifest) as { plinth: Record<string, unknown> };
  raw.plinth.runtime = 'remote';
  const pkg = await validateExtensionPackage(source, raw, { sourceDir: source, remote: true, schemaLimits: config.extensionSchemas });
  const publisher = trust.status === 'trusted' ? trust.publisher : trust.status === 'untrusted' ? UNSIGNED_PUBLISHER : undefined;
  return { pkg, trust, publisher, digest: sha256(JSON.stringify(manifest)) };
}
