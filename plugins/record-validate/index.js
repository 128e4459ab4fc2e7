// record-validate: runs in an isolate; plain language only.

function typeOk(type, v) {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return Number.isInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    default:
      return true;
  }
}

/** Returns every rule a record breaks, as { field, message }. */
export function checkRecord(record, rules, rejectUnknownFields = false) {
  const errors = [];
  for (const [field, rule] of Object.entries(rules)) {
    const v = record[field];
    if (v === undefined || v === null || v === '') {
      if (rule.required) errors.push({ field, message: 'is required' });
      continue;
    }
    if (rule.type && !typeOk(rule.type, v)) {
      errors.push({ field, message: `must be ${rule.type === 'integer' ? 'an integer' : `a ${rule.type}`}` });
      continue;
    }
    if (typeof v === 'number') {
      if (rule.min !== undefined && v < rule.min) errors.push({ field, message: `must be at least ${rule.min}` });
      if (rule.max !== undefined && v > rule.max) errors.push({ field, message: `must be at most ${rule.max}` });
    }
    if (typeof v === 'string') {
      if (rule.minLength !== undefined && v.length < rule.minLength) errors.push({ field, message: `must have at least ${rule.minLength} characters` });
      if (rule.maxLength !== undefined && v.length > rule.maxLength) errors.push({ field, message: `must have at most ${rule.maxLength} characters` });
      if (rule.pattern !== undefined && !new RegExp(rule.pattern, 'u').test(v)) errors.push({ field, message: `must match ${rule.pattern}` });
    }
    if (rule.enum && !rule.enum.some((e) => e === v)) errors.push({ field, message: `must be one of ${rule.enum.map((e) => JSON.stringify(e)).join(', ')}` });
  }
  if (rejectUnknownFields) {
    for (const field of Object.keys(record)) if (!Object.hasOwn(rules, field)) errors.push({ field, message: 'is not a known field' });
  }
  return errors;
}

export function validateRecords(records, config = {}) {
  const rules = config.rules ?? {};
  const valid = [];
  const invalid = [];
  records.forEach((record, index) => {
    const errors = checkRecord(record, rules, config.rejectUnknownFields ?? false);
    if (errors.length === 0) valid.push(record);
    else invalid.push({ index, record, errors });
  });
  return { valid, invalid, validCount: valid.length, invalidCount: invalid.length };
}

let settings = {};

export default {
  initialize(config) {
    settings = config;
  },
  healthCheck() {
    return true;
  },
  stages: {
    async validate(input, ctx) {
      const result = validateRecords(input.records, settings);
      // Running totals survive restarts of the isolate through the extension's key-value store.
      const totals = (await ctx.kv.get('totals')) ?? { valid: 0, invalid: 0 };
      await ctx.kv.set('totals', { valid: totals.valid + result.validCount, invalid: totals.invalid + result.invalidCount });
      if (result.invalidCount > 0) await ctx.emit('quality.rejected', { count: result.invalidCount });
      return result;
    },
  },
};
