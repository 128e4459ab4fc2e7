// Who owns a run: `<pid>.<start ticks>@<host>`. The start time tells a live owner from an unrelated process that
// got the same pid after the owner died (a resume must not be refused, nor a dead run shown as running, for that).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { ownerAlive, ownerOf, processStartTicks } from '../../../src/pipeline/engine/journal.ts';

describe('run owners', { skip: !existsSync('/proc/self/stat') && 'no /proc here' }, () => {
  it('a live owner is alive; the same pid with another start time (a reused pid) is not; a dead one is not', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    await once(child, 'spawn');
    try {
      const owner = ownerOf(child.pid!);
      const ticks = processStartTicks(child.pid!);
      assert.ok(ticks && /^\d+$/.test(ticks), `start ticks ${ticks}`);
      assert.equal(owner, `${child.pid}.${ticks}@${hostname()}`);
      assert.equal(ownerAlive(owner, 'r-1'), true);
      assert.equal(ownerAlive(`${child.pid}.${Number(ticks) - 1}@${hostname()}`, 'r-1'), false, 'the pid now belongs to a later process');
      assert.equal(ownerAlive(`${child.pid}@${hostname()}`, 'r-1'), true, 'an owner journaled without a start time: only the pid is checked');
      assert.equal(ownerAlive(`${process.pid}.1@${hostname()}`, 'r-1'), false, "this process's pid, started at another time: an earlier process");
      assert.equal(ownerAlive(`${child.pid}.${ticks}@another-machine`, 'r-1'), true, "another machine's runs count as live");
      child.kill('SIGKILL');
      await once(child, 'exit');
      assert.equal(ownerAlive(owner, 'r-1'), false);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
