// redact-fields: runs in an isolate, so it uses only the language itself — no Node APIs.

const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
// 13–19 digits, optionally grouped by spaces or dashes; confirmed with the Luhn check to spare order numbers.
const CARD = /\b(?:\d[ -]?){12,18}\d\b/g;

function luhn(digits) {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

export function createRedactor(config = {}) {
  const fields = (config.fields ?? []).map((f) => f.split('.'));
  const mode = config.mode ?? 'mask';
  const mask = config.mask ?? '***';
  const keepLast = config.keepLast ?? 0;
  const detect = { emails: true, cardNumbers: true, ...(config.detect ?? {}) };

  const maskValue = (v) => (typeof v === 'string' && keepLast > 0 && v.length > keepLast ? mask + v.slice(-keepLast) : mask);

  function scrubString(s, count) {
    let out = s;
    if (detect.emails) out = out.replace(EMAIL, () => (count.n++, mask));
    if (detect.cardNumbers) {
      out = out.replace(CARD, (m) => {
        const digits = m.replace(/[ -]/g, '');
        if (digits.length < 13 || !luhn(digits)) return m;
        count.n++;
        return mask + digits.slice(-4);
      });
    }
    return out;
  }

  function scrub(value, count) {
    if (typeof value === 'string') return scrubString(value, count);
    if (Array.isArray(value)) return value.map((v) => scrub(v, count));
    if (value !== null && typeof value === 'object') {
      const out = {};
      for (const [k, v] of Object.entries(value)) out[k] = scrub(v, count);
      return out;
    }
    return value;
  }

  function redactPath(obj, keys, count) {
    let node = obj;
    for (let i = 0; i < keys.length - 1; i++) {
      node = node?.[keys[i]];
      if (node === null || typeof node !== 'object') return;
    }
    const last = keys[keys.length - 1];
    if (!Object.hasOwn(node, last)) return;
    count.n++;
    if (mode === 'remove') delete node[last];
    else node[last] = maskValue(node[last]);
  }

  return function redact(records) {
    const count = { n: 0 };
    const out = records.map((r) => {
      // Named fields first (so keepLast sees the original), then free-text detection on what is left.
      const copy = JSON.parse(JSON.stringify(r));
      for (const keys of fields) redactPath(copy, keys, count);
      return scrub(copy, count);
    });
    return { records: out, redactedCount: count.n };
  };
}

let redact = createRedactor();

export default {
  initialize(config) {
    redact = createRedactor(config);
  },
  healthCheck() {
    return true;
  },
  stages: {
    async redact(input, ctx) {
      const result = redact(input.records);
      if (result.redactedCount > 0) await ctx.emit('privacy.redacted', { count: result.redactedCount });
      return result;
    },
  },
};
