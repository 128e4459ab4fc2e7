// policy-check: runs in an isolate, so it uses only the language itself — no Node APIs.

function read(record, path) {
  let node = record;
  for (const key of path.split('.')) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** Every rule a record breaks, as { rule, message }. */
export function violations(record, rules) {
  const out = [];
  for (const rule of rules) {
    const value = read(record, rule.field);
    if (value === undefined) {
      if (rule.required) out.push({ rule: rule.id, message: `${rule.field} is missing` });
      continue;
    }
    if (rule.oneOf && !rule.oneOf.some((v) => same(v, value))) out.push({ rule: rule.id, message: `${rule.field} is ${JSON.stringify(value)}, not one of ${JSON.stringify(rule.oneOf)}` });
    if (rule.notOneOf && rule.notOneOf.some((v) => same(v, value))) out.push({ rule: rule.id, message: `${rule.field} may not be ${JSON.stringify(value)}` });
    if (rule.min !== undefined && !(typeof value === 'number' && value >= rule.min)) out.push({ rule: rule.id, message: `${rule.field} is below ${rule.min}` });
    if (rule.max !== undefined && !(typeof value === 'number' && value <= rule.max)) out.push({ rule: rule.id, message: `${rule.field} is above ${rule.max}` });
  }
  return out;
}

export function evaluatePolicy(records, rules = [], maxDeniedRatio = 1) {
  const allowed = [];
  const denied = [];
  records.forEach((record, index) => {
    const v = violations(record, rules);
    if (v.length === 0) allowed.push(record);
    else denied.push({ index, record, violations: v });
  });
  if (records.length > 0 && denied.length / records.length > maxDeniedRatio) {
    throw new Error(`policy denied ${denied.length} of ${records.length} records, more than maxDeniedRatio ${maxDeniedRatio}`);
  }
  return { allowed, denied, allowedCount: allowed.length, deniedCount: denied.length };
}

export default {
  stages: {
    evaluate(input) {
      return evaluatePolicy(input.records, input.rules, input.maxDeniedRatio);
    },
  },
};
