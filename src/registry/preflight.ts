// What must hold before an extension's sandbox is made — checked the same way when the host starts it and when
// `plinth ls` lists it, so that `ls` never calls `verified` what `call` or `serve` would refuse (issue 9):
// disabled, runtime, trust, a reserved id, network grants, the operator's approvals, the config.
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import type { HostConfig } from '../config/index.ts';
import type { ExtensionPackage } from '../manifest/index.ts';
import type { Json } from '../sdk/index.ts';
import { toProblems } from '../schema/index.ts';
import { checkApprovals, checkExtensionId, checkNetworkGrants } from '../policy/index.ts';
import type { TrustStatus } from './index.ts';

export type StartCheck =
  /** Startable, with its config from the host configuration (validated against its configSchema, defaults filled). */
  | { status: 'ok'; config: Record<string, Json> }
  /** `extensions.<id>.enabled: false` in the host config. */
  | { status: 'disabled' }
  | { status: 'refused'; error: PlinthError };

/**
 * `remote`: a runner's registration (runtime remote, its code outside the host: no runtime check applies).
 * `devFolders`: plugin folders that `plinth dev` was pointed at by the author on their own machine; an untrusted copy
 * there may run as a worker (its signature breaks on every save). Never set from the host config: only `plinth dev`
 * passes it, for the one folder it serves.
 */
export function checkStartable(pkg: ExtensionPackage, trust: TrustStatus, config: HostConfig, options: { remote?: boolean; devFolders?: ReadonlySet<string> | undefined } = {}): StartCheck {
  const settings = config.extensions[pkg.id];
  if (settings?.enabled === false) return { status: 'disabled' };
  const manifestFile = path.join(pkg.sourceDir, 'package.json');
  if (options.remote === true) {
    // runtime checks do not apply: its code runs in the runner's own process
  } else if (pkg.manifest.runtime === 'remote') {
    return {
      status: 'refused',
      error: new PlinthError('PLINTH_ERR_RUNTIME_UNSUPPORTED', `extension ${pkg.id} asks for the "remote" runtime, which is not run from a plugin folder: a remote extension joins when its runner registers over the control channel`, {
        extension: pkg.id,
        file: manifestFile,
        hint: 'start its runner (runExtension from plinth/sdk) against a running `plinth serve` (docs/remote.md), or set "runtime": "worker" or "isolate" to run it from the folder',
      }),
    };
  } else if (pkg.manifest.runtime !== 'worker' && pkg.manifest.runtime !== 'isolate') {
    return {
      status: 'refused',
      error: new PlinthError('PLINTH_ERR_RUNTIME_UNSUPPORTED', `extension ${pkg.id} asks for the "${String(pkg.manifest.runtime)}" runtime, which this host does not run yet`, {
        extension: pkg.id,
        file: manifestFile,
        hint: 'set "runtime": "worker" or "isolate" in its plinth block',
      }),
    };
  }
  if (trust.status !== 'trusted' && pkg.manifest.runtime === 'worker' && options.remote !== true && !options.devFolders?.has(pkg.sourceDir)) {
    return {
      status: 'refused',
      error: new PlinthError('PLINTH_ERR_RUNTIME_NOT_ALLOWED', `extension ${pkg.id} is not signed by a trusted publisher, so it may run only as "isolate", not "worker"`, {
        extension: pkg.id,
        file: manifestFile,
        hint: 'sign it with a key in the trust store, or set "runtime": "isolate"',
      }),
    };
  }
  const unfit = checkExtensionId(pkg.id) ?? checkNetworkGrants(pkg.id, pkg.manifest.permissions, manifestFile);
  if (unfit) return { status: 'refused', error: unfit };
  // The operator's ceiling on what untrusted extensions may be granted (policy.untrusted, extensions.<id>.allow).
  const notApproved = checkApprovals({
    id: pkg.id,
    permissions: pkg.manifest.permissions,
    trusted: trust.status === 'trusted',
    ceiling: config.policy.untrusted,
    allow: settings?.allow,
    configFile: config.file,
  });
  if (notApproved) return { status: 'refused', error: notApproved };
  const extConfig = structuredClone(settings?.config ?? {}) as Record<string, Json>;
  let configValid: boolean;
  try {
    configValid = pkg.schemas.config ? pkg.schemas.config(extConfig) : true;
  } catch (err) {
    if (err instanceof PlinthError) return { status: 'refused', error: err }; // SCHEMA_VALIDATION_LIMIT: its configSchema costs too much to check
    throw err;
  }
  if (pkg.schemas.config && !configValid) {
    return {
      status: 'refused',
      error: new PlinthError('PLINTH_ERR_EXTENSION_CONFIG_INVALID', `extension ${pkg.id}: its config does not match its configSchema`, {
        extension: pkg.id,
        ...(config.file ? { file: config.file } : {}),
        problems: toProblems(pkg.schemas.config.errors).map((p) => ({ ...p, path: `/extensions/${pkg.id}/config${p.path}` })),
        hint: `fix extensions.${pkg.id}.config in ${config.file ?? 'the host configuration'} to match the configSchema in its package.json`,
      }),
    };
  }
  return { status: 'ok', config: extConfig };
}
