// audit-log: a worker extension. It still writes only through ctx.fs, which confines it to its granted
// `audit` folder, so the same code would run unchanged as an isolate.

let file = 'audit/audit.jsonl';
let seq = 0;
let host;

async function readEntries(ctx) {
  let text = '';
  try {
    text = await ctx.fs.readText(file);
  } catch (err) {
    if (err?.code !== 'ENOENT') throw err;
  }
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

async function append(ctx, entry) {
  seq += 1;
  const line = { seq, at: new Date().toISOString(), host, ...entry };
  await ctx.fs.appendText(file, JSON.stringify(line) + '\n');
  return line;
}

export default {
  async initialize(config, ctx) {
    file = config.file ?? file;
    host = ctx.env('HOSTNAME');
    // Continue the sequence where the file left off.
    const entries = await readEntries(ctx);
    seq = entries.length > 0 ? entries[entries.length - 1].seq : 0;
  },
  healthCheck() {
    return true;
  },
  async handleEvent(event, ctx) {
    await append(ctx, { action: 'event', topic: event.topic, eventId: event.id, details: event.payload });
  },
  stages: {
    async record(input, ctx) {
      const line = await append(ctx, { action: input.action, actor: input.actor, details: input.details, runId: ctx.runId });
      return { seq: line.seq, at: line.at };
    },
    async tail(input, ctx) {
      const entries = await readEntries(ctx);
      return { entries: entries.slice(-(input.limit ?? 20)) };
    },
  },
};
