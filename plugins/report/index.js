// report: runs in an isolate, so it uses only the language itself — no Node APIs.

// Table cells: one line, pipes escaped, so a hostile value cannot break the table's shape.
function cell(value) {
  const text = value === undefined || value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value);
  return text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
}

/** @param {{ title: string, records: object[], columns?: string[], maxRows?: number, facts?: object }} input */
export function renderReport({ title, records, columns, maxRows = 20, facts = {} }) {
  const cols = columns ?? (records.length > 0 ? Object.keys(records[0]) : []);
  const lines = [`# ${cell(title)}`, ''];
  const factEntries = Object.entries(facts);
  if (factEntries.length > 0) {
    for (const [k, v] of factEntries) lines.push(`- **${cell(k)}**: ${cell(v)}`);
    lines.push('');
  }
  const shown = records.slice(0, maxRows);
  if (cols.length > 0 && shown.length > 0) {
    lines.push(`| ${cols.map(cell).join(' | ')} |`, `| ${cols.map(() => '---').join(' | ')} |`);
    for (const r of shown) lines.push(`| ${cols.map((c) => cell(r[c])).join(' | ')} |`);
  } else {
    lines.push('_no records_');
  }
  const truncated = records.length > shown.length;
  if (truncated) lines.push('', `_${records.length - shown.length} more rows not shown_`);
  return { markdown: lines.join('\n') + '\n', rowCount: records.length, truncated };
}

export default {
  stages: {
    render(input) {
      return renderReport(input);
    },
  },
};
