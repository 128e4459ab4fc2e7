// `plinth ls`: every extension of the plugin directories with id, version, runtime and state.
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { scanExtensions, loadTrustStoreFor, type ExtensionRecord } from '../../registry/index.ts';
import { EXIT, shownPath, table, type Io, type Outcome } from '../output.ts';
import { checkPluginDirs } from '../plugins.ts';

function trustText(r: ExtensionRecord): string {
  switch (r.trust?.status) {
    case 'trusted':
      return `signed by ${r.trust.publisher}${r.trust.scope === undefined ? '' : ` (scope ${r.trust.scope})`}`;
    case 'untrusted':
      return `UNTRUSTED (${r.trust.error.code})`;
    case 'unchecked':
      return 'not checked (policy off)';
    default:
      return r.error ? r.error.code : '';
  }
}

export function recordJson(r: ExtensionRecord): Record<string, unknown> {
  return {
    id: r.id,
    version: r.version ?? null,
    runtime: r.runtime ?? null,
    state: r.state,
    path: r.dir,
    trust: r.trust === undefined ? null : r.trust.status === 'untrusted' ? { status: 'untrusted', reason: r.trust.error.toJSON() } : r.trust,
    ...(r.error ? { reason: r.error.toJSON() } : {}),
  };
}

export async function ls(io: Io, flags: ConfigFlags & { json?: boolean }): Promise<Outcome> {
  const config = await loadHostConfig({ flags });
  await checkPluginDirs(config.plugins);
  const store = await loadTrustStoreFor(config.trust.store, config.trust.policy);
  const { extensions, directoryErrors } = await scanExtensions(config.plugins, store, config.trust.policy, { dataDir: config.dataDir, extensions: config.extensions, file: config.file });
  const failed = extensions.some((r) => r.state === 'failed') || directoryErrors.length > 0;
  if (!flags.json) {
    for (const e of directoryErrors) io.err(`warning: ${e.describe()}`);
    if (extensions.length === 0) {
      io.out(`no extensions found in ${config.plugins.join(', ')} (an extension is a folder with a package.json that has a "plinth" block)`);
    } else {
      io.out(table(['ID', 'VERSION', 'RUNTIME', 'STATE', 'TRUST', 'PATH'], extensions.map((r) => [r.id, r.version ?? '-', r.runtime ?? '-', r.state, trustText(r), shownPath(r.dir)])));
      for (const r of extensions.filter((e) => e.error)) io.out(`\n${r.id}: ${r.error!.describe()}`);
      for (const r of extensions) if (r.trust?.status === 'untrusted') io.err(`warning: ${r.id} loads untrusted (policy warn): ${r.trust.error.describe()}`);
    }
  }
  // Like `npm ls`: a problem anywhere makes the exit status non-zero, for scripts.
  return { code: failed ? EXIT.failed : EXIT.ok, data: { extensions: extensions.map(recordJson), directoryErrors: directoryErrors.map((e) => e.toJSON()) } };
}
