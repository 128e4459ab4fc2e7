// The far end of the Peer tests: a real child process speaking JSON-RPC over its IPC channel.
import { Peer, parentTransport } from '../../../src/sandbox/link/index.ts';
import { PlinthError } from '../../../src/errors.ts';

const peer = new Peer(parentTransport());
let notes = 0;
peer.handle('echo', (params) => params);
peer.handle('add', (params) => {
  const { a, b } = params as { a: number; b: number };
  return a + b;
});
peer.handle('fail', () => {
  throw new PlinthError('PLINTH_ERR_PERMISSION_DENIED', 'not granted', { extension: 'x', hint: 'grant it' });
});
peer.handle('throw', () => {
  throw new RangeError('plain error');
});
peer.handle('note', () => void notes++);
peer.handle('notes', () => notes);
peer.handle('never', () => new Promise(() => {}));
// Asks the parent back, over the same link, and answers with what it said.
peer.handle('ask', async () => peer.request('parent.hello', { from: 'child' }));
peer.handle('exit', () => process.exit(7));
peer.onClose(() => process.exit(0));
peer.notify('ready', { pid: process.pid });
