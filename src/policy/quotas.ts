// Host quotas per extension (issue 7 §4): every bound has a default in the host config (`quotas.*`), the operator
// may set another for one extension (`extensions.<id>.quotas.*`), and the extension's manifest may ask for less
// (`limits.*`), never more — the smaller value applies. Exceeding one is PLINTH_ERR_QUOTA_EXCEEDED naming the
// limit and the host-config key that raises it.
import hostConfigSchema from '../../schemas/host-config.schema.json' with { type: 'json' };
import { PlinthError } from '../errors.ts';
import type { Quotas, QuotaOverrides } from '../config/index.ts';

export type { Quotas, QuotaOverrides } from '../config/index.ts';

type SchemaNode = { properties?: Record<string, SchemaNode>; default?: unknown };

/** The defaults the host-config schema declares: one source for the config loader and for a bare handler. */
export const DEFAULT_QUOTAS: Quotas = (() => {
  const groups = (hostConfigSchema as unknown as SchemaNode).properties?.quotas?.properties ?? {};
  const out: Record<string, Record<string, number>> = {};
  for (const [group, node] of Object.entries(groups)) {
    out[group] = {};
    for (const [key, leaf] of Object.entries(node.properties ?? {})) out[group][key] = leaf.default as number;
  }
  return out as unknown as Quotas;
})();

/** The quotas that apply to one extension: host (or the operator's per-extension value), lowered by its manifest. */
export function effectiveQuotas(host: Quotas, operator: QuotaOverrides | undefined, manifest: QuotaOverrides | undefined): Quotas {
  const out = structuredClone(host) as unknown as Record<string, Record<string, number>>;
  for (const [group, values] of Object.entries(out)) {
    for (const key of Object.keys(values)) {
      const op = (operator as Record<string, Record<string, number> | undefined> | undefined)?.[group]?.[key];
      if (typeof op === 'number') values[key] = op;
      const asked = (manifest as Record<string, Record<string, number> | undefined> | undefined)?.[group]?.[key];
      if (typeof asked === 'number' && asked < values[key]!) values[key] = asked;
    }
  }
  return out as unknown as Quotas;
}

/** PLINTH_ERR_QUOTA_EXCEEDED for `quotas.<group>.<key>` of `extension`: what happened, the limit, the key to raise. */
export function quotaExceeded(extension: string, group: keyof Quotas, key: string, limit: number, what: string): PlinthError {
  return new PlinthError('PLINTH_ERR_QUOTA_EXCEEDED', `extension ${extension}: ${what} exceeds its quota quotas.${group}.${key} = ${limit}`, {
    extension,
    hint: `raise quotas.${group}.${key} in the host config (or extensions.${extension}.quotas.${group}.${key} for this extension alone); its manifest limits.${group}.${key} can only lower it`,
  });
}
