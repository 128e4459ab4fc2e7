// csv-ingest: RFC 4180 CSV parsing. A plain default export of the extension shape: no SDK needed at run time.

/** Splits CSV text into rows of cells. Quoted cells may hold delimiters, newlines and "" for a quote. */
export function parseCsv(text, delimiter = ',') {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  let i = 0;
  // A byte-order mark is not data.
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  for (; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else quoted = false;
      } else cell += ch;
    } else if (ch === '"' && cell === '') quoted = true;
    else if (ch === delimiter) {
      row.push(cell);
      cell = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (quoted) throw new Error('CSV ends inside a quoted cell: a closing " is missing');
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

function inferValue(cell) {
  if (cell === '') return null;
  if (cell === 'true') return true;
  if (cell === 'false') return false;
  if (/^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/.test(cell)) {
    const n = Number(cell);
    if (Number.isFinite(n) && (Number.isSafeInteger(n) || !/^-?\d+$/.test(cell))) return n;
  }
  return cell;
}

/** Rows to records: keyed by the header row (or col1, col2, …), values typed when asked. */
export function toRecords(rows, { header = true, inferTypes = true, trim = false } = {}) {
  const clean = (c) => (trim ? c.trim() : c);
  const body = header ? rows.slice(1) : rows;
  const width = Math.max(0, ...rows.map((r) => r.length));
  const columns = header && rows.length > 0 ? rows[0].map(clean) : Array.from({ length: width }, (_, i) => `col${i + 1}`);
  const seen = new Set();
  for (const c of columns) {
    if (seen.has(c)) throw new Error(`CSV header names column "${c}" twice; column names must be unique`);
    seen.add(c);
  }
  const records = body
    .filter((r) => !(r.length === 1 && r[0] === ''))
    .map((r, n) => {
      if (r.length > columns.length) throw new Error(`CSV row ${n + (header ? 2 : 1)} has ${r.length} cells but there are ${columns.length} columns`);
      const rec = {};
      columns.forEach((c, i) => {
        const raw = clean(r[i] ?? '');
        rec[c] = inferTypes ? inferValue(raw) : raw;
      });
      return rec;
    });
  return { records, columns, rowCount: records.length };
}

let settings = { delimiter: ',', header: true, inferTypes: true, trim: false };

export default {
  initialize(config) {
    settings = { ...settings, ...config };
  },
  healthCheck() {
    return true;
  },
  stages: {
    parse(input) {
      return toRecords(parseCsv(input.text, input.delimiter ?? settings.delimiter), settings);
    },
    async read_file(input, ctx) {
      const text = await ctx.fs.readText(input.path);
      const result = toRecords(parseCsv(text, settings.delimiter), settings);
      await ctx.emit('csv.parsed', { path: input.path, rowCount: result.rowCount });
      return result;
    },
  },
};
