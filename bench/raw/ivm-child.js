// Baseline: isolated-vm driven from a child process "the same way" the host's sandbox process is — JSON over
// IPC in, the input copied into an isolate, the stage function applied, the JSON result copied out.
import ivm from 'isolated-vm';

const isolate = new ivm.Isolate({ memoryLimit: 64 });
const context = isolate.createContextSync();
const fn = context.evalSync('(function (json) { const input = JSON.parse(json); return JSON.stringify(input); })', { reference: true });

process.on('message', async (m) => {
  const out = await fn.apply(undefined, [JSON.stringify(m.input)], { result: { copy: true }, timeout: 1000 });
  process.send({ id: m.id, output: JSON.parse(out) });
});
process.send({ ready: true });
