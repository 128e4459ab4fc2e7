// A host in its own process, for the SIGKILL tests (test/integration/events.test.ts): started over the config in
// argv[2], it attaches two in-process durable subscribers, publishes 50 events, waits until a known state is in
// the store, prints `ready`, and idles until it is killed.
//   inproc   acknowledges events 1..19 and never returns from event 20 (so 20..50 stay pending: same topic, in order)
//   failing  fails every odd event once, with maxAttempts 1 (25 dead letters)
//   recorder-worker (extension) records each event and never returns from event 10 (RECORDER_BLOCK=1)
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';

const root = process.argv[2]!;
const config = await loadHostConfig({ cwd: root, env: {} });
const host = new Host(config, { logger: pino({ level: 'silent' }), env: { RECORDER_BLOCK: '1' } });
let inprocAcked = 0;
host.bus.subscribe('work.#', async (e) => {
  if ((e.payload as { n: number }).n >= 20) await new Promise(() => {});
  inprocAcked++;
}, { name: 'inproc', maxInFlight: 1 });
host.bus.subscribe('work.#', (e) => {
  if ((e.payload as { n: number }).n % 2 === 1) throw new Error(`odd event ${(e.payload as { n: number }).n}`);
}, { name: 'failing', retry: { maxAttempts: 1 } });
await host.start();
for (let n = 1; n <= 50; n++) {
  const event = await host.bus.publish('work.items', { n, block: n === 10 }, 'child');
  process.stdout.write(`published ${n} ${event.id}\n`);
}
const recorded = async () => ((await host.call('recorder-worker', 'seen', {})) as { entries: unknown[] }).entries.length;
for (;;) {
  if (inprocAcked === 19 && host.bus.listDeadLetters().length === 25 && (await recorded()) >= 10) break;
  await new Promise((r) => setTimeout(r, 20));
}
process.stdout.write('ready\n');
setInterval(() => {}, 1 << 30);
