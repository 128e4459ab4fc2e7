// Durations in host config: `250ms`, `30s`, `5m`, `2h`, `1d` (schemas/host-config.schema.json $defs/duration).

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
export const DURATION_PATTERN = /^([0-9]{1,9})(ms|s|m|h|d)$/;

/** Milliseconds of a duration such as `5m`; undefined for text that is not one. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_PATTERN.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]!]! : undefined;
}
