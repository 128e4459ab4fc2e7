// The framed link to the isolate sandbox process, from the host's side, against a real process that breaks the
// protocol on purpose (test/fixtures/sandbox-process/broken-link.ts stands in for a compromised sandbox process):
// a malformed frame, a lying length, a result that is not JSON or longer than maxResultBytes, a reply nobody asked
// for. Each is a crash of that process: it is killed, the call fails SANDBOX_CRASHED naming the break, onExit
// says 'crashed', and the next start forks a fresh process.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { IsolateProcess } from '../../../src/sandbox/isolate/index.ts';
import type { SandboxExit } from '../../../src/sandbox/types.ts';
import { rejectsWith, waitFor } from '../../helpers.ts';
import { call, fixture, shutdownAfterAll, started } from './helpers.ts';

shutdownAfterAll();

const ENTRY = fileURLToPath(new URL('../../fixtures/sandbox-process/broken-link.ts', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('framed link: a sandbox process that breaks the protocol is a crash', () => {
  it('a well-formed reply is parsed once, from its raw JSON text', async () => {
    const proc = new IsolateProcess({ entry: ENTRY, maxResultBytes: 1000 });
    const { sandbox } = await started(await fixture('probe'), { process: proc });
    assert.deepEqual(await call(sandbox, 'echo', { mode: 'ok' }), { fine: true });
    await proc.shutdown();
  });

  for (const [mode, detail] of [
    ['huge-header', /frame envelope of 4294967295 bytes, over the cap/],
    ['envelope-not-json', /envelope that is not JSON/],
    ['result-not-json', /a result that is not JSON/],
    ['result-too-long', /a result of 2002 characters, over maxResultBytes 1000/],
    ['unknown-id', /not pending/],
    ['payload-on-notification', /raw payload on a message that is not an invoke reply/],
    ['reply-without-usage', /without absent\/cpuMs\/wallMs/],
  ] as const) {
    it(`${mode}: the process is killed, the call fails SANDBOX_CRASHED, onExit 'crashed', a fresh process next`, async () => {
      const proc = new IsolateProcess({ entry: ENTRY, maxResultBytes: 1000 });
      const { sandbox } = await started(await fixture('probe'), { process: proc });
      const exits: SandboxExit[] = [];
      sandbox.onExit((e) => exits.push(e));
      const pid = proc.pid!;
      const err = await rejectsWith(call(sandbox, 'echo', { mode }), 'PLINTH_ERR_SANDBOX_CRASHED');
      await waitFor(() => exits.length === 1, 'onExit', 10_000);
      assert.equal(exits[0]!.reason, 'crashed');
      assert.match(exits[0]!.detail, detail);
      assert.match(err.message, /broke the link protocol|link closed/);
      await waitFor(() => !alive(pid), 'the process to be gone', 10_000);
      // Restart: the supervisor's next start forks a fresh process.
      const again = await started(await fixture('probe'), { process: proc });
      assert.notEqual(proc.pid, pid);
      assert.equal(proc.spawnCount, 2);
      assert.deepEqual(await call(again.sandbox, 'echo', { mode: 'ok' }), { fine: true });
      await proc.shutdown();
    });
  }
});
