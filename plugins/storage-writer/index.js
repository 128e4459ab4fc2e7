// storage-writer: runs in an isolate; it writes only through ctx.fs, which confines it to its granted
// `warehouse` folder in the host's data directory. The dataset name is checked by its input schema (no "/" or "..").

export function toJsonLines(records) {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length > 0 ? '\n' : '');
}

/** UTF-8 byte length (isolates have no TextEncoder). */
export function utf8Length(text) {
  let n = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

export default {
  stages: {
    async write(input, ctx) {
      const path = `warehouse/${input.dataset}.jsonl`;
      const text = toJsonLines(input.records);
      await ctx.fs.writeText(path, text);
      await ctx.fs.writeText(`warehouse/${input.dataset}.meta.json`, JSON.stringify({ dataset: input.dataset, records: input.records.length, writtenAt: new Date().toISOString(), metadata: input.metadata ?? {} }, null, 2) + '\n');
      return { path, written: input.records.length, bytes: utf8Length(text) };
    },
    async discard(input, ctx) {
      const path = `warehouse/${input.dataset}.jsonl`;
      await ctx.fs.writeText(path, '');
      await ctx.fs.writeText(`warehouse/${input.dataset}.meta.json`, JSON.stringify({ dataset: input.dataset, discarded: true, reason: input.reason ?? null, discardedAt: new Date().toISOString() }, null, 2) + '\n');
      return { path, discarded: true };
    },
  },
};
