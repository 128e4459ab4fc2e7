// The limits an extension runs with (issue 7 §4): the host's defaults, lowered or raised by its manifest, never
// above the host's ceilings. Every limit a manifest declares — and every stage's timeoutMs — is checked; one above
// its ceiling refuses the extension with a coded error naming the manifest key and the config key to raise.
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import type { HostConfig } from '../config/index.ts';
import type { ExtensionPackage } from '../manifest/index.ts';

export type Limits = HostConfig['defaults']['limits'];

export function resolveLimits(pkg: ExtensionPackage, config: Pick<HostConfig, 'defaults' | 'ceilings' | 'file'>): Limits {
  const limits: Limits = { ...config.defaults.limits, ...pkg.manifest.limits };
  const over: string[] = [];
  for (const key of ['memoryMb', 'callTimeoutMs', 'concurrency', 'startTimeoutMs'] as const) {
    const declared = pkg.manifest.limits?.[key];
    if (declared !== undefined && declared > config.ceilings[key]) over.push(`limits.${key} ${declared} > ceilings.${key} ${config.ceilings[key]}`);
  }
  for (const [stage, decl] of Object.entries(pkg.manifest.stages)) {
    if (decl.timeoutMs !== undefined && decl.timeoutMs > config.ceilings.callTimeoutMs) over.push(`stages.${stage}.timeoutMs ${decl.timeoutMs} > ceilings.callTimeoutMs ${config.ceilings.callTimeoutMs}`);
  }
  if (over.length > 0) {
    throw new PlinthError('PLINTH_ERR_LIMIT_ABOVE_CEILING', `extension ${pkg.id} was not started: its manifest asks for more than this host allows (${over.join('; ')})`, {
      extension: pkg.id,
      file: path.join(pkg.dir, 'package.json'),
      hint: `lower it in the manifest, or raise ${[...new Set(over.map((o) => o.split(' > ')[1]!.split(' ')[0]))].join(', ')} in the host config${config.file ? ` (${config.file})` : ''}`,
    });
  }
  return limits;
}
