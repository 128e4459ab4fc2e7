// Baseline: a bare worker_threads echo over a MessageChannel, pipelined (no pool, no framing).
import { parentPort } from 'node:worker_threads';

parentPort.once('message', ({ port }) => {
  port.on('message', (m) => port.postMessage(m));
});
