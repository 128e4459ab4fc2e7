// analytics: runs in an isolate, so it uses only the language itself — no Node APIs.

export function summarize(records, numericFields, groupBy) {
  const names = numericFields ?? [...new Set(records.flatMap((r) => Object.keys(r).filter((k) => typeof r[k] === 'number' && Number.isFinite(r[k]))))].sort();
  const fields = {};
  for (const name of names) {
    const values = records.map((r) => r[name]).filter((v) => typeof v === 'number' && Number.isFinite(v));
    if (values.length === 0) continue;
    const sum = values.reduce((a, b) => a + b, 0);
    fields[name] = { count: values.length, sum, min: Math.min(...values), max: Math.max(...values), mean: sum / values.length };
  }
  const groups = {};
  if (groupBy) {
    for (const r of records) {
      const key = r[groupBy] === undefined ? '(none)' : typeof r[groupBy] === 'string' ? r[groupBy] : JSON.stringify(r[groupBy]);
      // Own keys only: a group named "__proto__" is a group.
      Object.defineProperty(groups, key, { value: (Object.hasOwn(groups, key) ? groups[key] : 0) + 1, enumerable: true, writable: true, configurable: true });
    }
  }
  return { count: records.length, fields, groups };
}

export default {
  stages: {
    summarize(input) {
      return summarize(input.records, input.numericFields, input.groupBy);
    },
  },
};
