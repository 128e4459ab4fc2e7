// What an untrusted extension may be granted is the operator's choice (issue 7 §5). An extension that no trusted
// publisher signed gets, without approval, only what `policy.untrusted` allows (default: no env, no network;
// fs, kv and events under their own quotas); everything else its manifest asks must be approved by name in
// `extensions.<id>.allow`. Otherwise it is refused at start, with one problem per permission that needs approval.
// Approving grants nothing the manifest did not ask for. Trusted extensions get what their manifest asks.
import { PlinthError, type Problem } from '../errors.ts';
import { HOST_SOURCE } from '../events/index.ts';
import type { PermissionCeiling } from '../config/index.ts';
import type { Permissions } from '../manifest/index.ts';
import { parseNetworkGrant, type NetworkGrant } from './network.ts';

/** Does the approved grant `a` cover the requested grant `r` (same host name, or a range containing r's)? */
function covers(a: NetworkGrant, r: NetworkGrant): boolean {
  if (a.port !== '*' && a.port !== r.port) return false;
  if (a.name !== undefined || r.name !== undefined) return a.name === r.name;
  const [base, bits] = a.range!;
  const [rBase, rBits] = r.range!;
  return base.kind() === rBase.kind() && rBits >= bits && rBase.match(base, bits);
}

export interface ApprovalInput {
  id: string;
  permissions: Permissions;
  /** Signed by a publisher in the trust store. */
  trusted: boolean;
  ceiling: PermissionCeiling;
  allow: Partial<PermissionCeiling> | undefined;
  /** The host config file, for the error. */
  configFile?: string | undefined;
}

/** PERMISSION_NOT_APPROVED naming every permission an untrusted extension asks beyond ceiling and approvals, or undefined. */
export function checkApprovals({ id, permissions, trusted, ceiling, allow, configFile }: ApprovalInput): PlinthError | undefined {
  if (trusted) return undefined;
  const problems: Problem[] = [];
  const need: { env: string[]; network: string[]; fs?: true; kv?: true; events?: true } = { env: [], network: [] };
  const envOk = new Set([...ceiling.env, ...(allow?.env ?? [])]);
  (permissions.env ?? []).forEach((name, i) => {
    if (envOk.has(name)) return;
    need.env.push(name);
    problems.push({ path: `/plinth/permissions/env/${i}`, message: `environment variable ${name} needs approval` });
  });
  const netOk = [...ceiling.network, ...(allow?.network ?? [])].map(parseNetworkGrant).filter((g): g is NetworkGrant => g !== undefined);
  (permissions.network ?? []).forEach((text, i) => {
    const asked = parseNetworkGrant(text);
    if (asked && netOk.some((a) => covers(a, asked))) return;
    need.network.push(text);
    problems.push({ path: `/plinth/permissions/network/${i}`, message: `network access to ${text} needs approval` });
  });
  const flag = (key: 'fs' | 'kv' | 'events', asked: boolean, what: string, at: string) => {
    if (!asked || ceiling[key] || allow?.[key] === true) return;
    need[key] = true;
    problems.push({ path: at, message: `${what} needs approval` });
  };
  flag('fs', (permissions.fs?.read?.length ?? 0) + (permissions.fs?.write?.length ?? 0) > 0, 'files in its data directory', '/plinth/permissions/fs');
  flag('kv', permissions.kv === true, 'the key-value store', '/plinth/permissions/kv');
  flag('events', (permissions.events?.publish?.length ?? 0) > 0, 'publishing events', '/plinth/permissions/events/publish');
  if (problems.length === 0) return undefined;
  const allowDoc = JSON.stringify({
    ...(need.env.length > 0 ? { env: need.env } : {}),
    ...(need.network.length > 0 ? { network: need.network } : {}),
    ...(need.fs ? { fs: true } : {}),
    ...(need.kv ? { kv: true } : {}),
    ...(need.events ? { events: true } : {}),
  });
  return new PlinthError('PLINTH_ERR_PERMISSION_NOT_APPROVED', `extension ${id} is not signed by a trusted publisher and asks for ${problems.length} permission(s) the host policy does not allow untrusted extensions: ${problems.map((p) => p.message.replace(/ needs approval$/, '')).join(', ')}`, {
    extension: id,
    ...(configFile ? { file: configFile } : {}),
    problems,
    hint: `approve them in the host config under extensions.${JSON.stringify(id)}.allow: ${allowDoc} (or widen policy.untrusted), or sign the extension with a key in the trust store`,
  });
}

/** EXTENSION_ID_RESERVED for an id the host itself uses as an event source, or undefined. */
export function checkExtensionId(id: string): PlinthError | undefined {
  if (id !== HOST_SOURCE) return undefined;
  return new PlinthError('PLINTH_ERR_EXTENSION_ID_RESERVED', `extension id "${id}" is reserved: events the host publishes carry source "${HOST_SOURCE}", and an extension of that name could forge them`, {
    extension: id,
    hint: 'rename the package (its "name" in package.json)',
  });
}

/** MANIFEST_INVALID for network grants the schema's pattern lets through but that are not grants (`0x7f.1`, `host:0`). */
export function checkNetworkGrants(id: string, permissions: Permissions, file: string): PlinthError | undefined {
  const problems: Problem[] = [];
  (permissions.network ?? []).forEach((text, i) => {
    if (parseNetworkGrant(text) === undefined) problems.push({ path: `/plinth/permissions/network/${i}`, message: `${JSON.stringify(text)} is not a network grant`, hint: 'use host, host:port, host:*, an IP address ([v6] in brackets) or a CIDR range, optionally with :port' });
  });
  if (problems.length === 0) return undefined;
  return new PlinthError('PLINTH_ERR_MANIFEST_INVALID', `extension ${id}: ${problems.length} network grant(s) cannot be understood`, { extension: id, file, problems });
}
