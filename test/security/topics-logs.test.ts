// Issue 7 §4 (ctx.log bounds) and §6: topics the host publishes on are reserved whatever an extension's grant,
// an event's `source` is set by the host (an extension named `host` cannot exist to forge it), an extension's
// log fields are nested under one key so a line always names the extension that wrote it, and a line's size and
// an extension's line rate are bounded with what was dropped said.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PlinthError } from '../../src/errors.ts';
import { ops, securityHost, type SecurityHost } from './helpers.ts';

describe('reserved topics and event sources', () => {
  let h: SecurityHost;
  before(async () => {
    h = await securityHost([
      { fixture: 'hostile', id: 'forger', signed: true, permissions: { events: { publish: ['#'] } } },
      { fixture: 'hostile', id: 'host', signed: true, permissions: { events: { publish: ['#'] } } },
    ]);
  });
  after(() => h.stop());

  it('no extension publishes on extension.*, pipeline.* or host.* (any case), even granted "#"', async () => {
    const seen = h.events.length;
    const topics = ['extension.bystander.failed', 'pipeline.nightly.completed', 'host.stopping', 'Extension.bystander.failed', 'HOST.x'];
    const results = await ops(h.host, 'forger', topics.map((topic) => ({ call: 'emit', args: [topic, { forged: true }] })));
    assert.deepEqual(results.map((r) => r.code), Array(topics.length).fill('PLINTH_ERR_TOPIC_RESERVED'));
    assert.deepEqual(h.events.slice(seen).filter((e) => (e.payload as { forged?: boolean } | null)?.forged), [], 'no forged event reached a subscriber');
    await h.bystanderAnswers();
  });

  it('an event an extension may publish carries the source the host sets: its id', async () => {
    const [r] = await ops(h.host, 'forger', [{ call: 'emit', args: ['orders.created', { source: 'host', id: 1 }] }]);
    assert.equal(r?.ok, true);
    const event = h.events.find((e) => e.topic === 'orders.created');
    assert.equal(event?.source, 'forger', 'a payload field named source changes nothing');
  });

  it('an extension named "host" is refused: it could forge the source of the host\'s own events', () => {
    const entry = h.host.list().find((e) => e.id === 'host');
    assert.equal(entry?.state, 'failed');
    assert.equal(PlinthError.fromJSON(entry?.reason).code, 'PLINTH_ERR_EXTENSION_ID_RESERVED');
    assert.ok(
      h.events.filter((e) => e.source === 'host').every((e) => e.topic.startsWith('extension.')),
      'every event with source "host" is the host\'s own',
    );
  });
});

describe('extension log lines', () => {
  let h: SecurityHost;
  before(async () => {
    h = await securityHost(
      [
        { fixture: 'hostile', id: 'liar', runtime: 'worker', signed: true },
        { fixture: 'hostile', id: 'liar-isolate' },
        { fixture: 'hostile', id: 'flooder' },
      ],
      { config: 'quotas: { log: { maxLineBytes: 1024, linesPerSecond: 1, burst: 5 } }\n' },
    );
  });
  after(() => h.stop());

  const forged = { extension: 'bystander', level: 60, msg: 'forged', time: 0, from: 'host', pid: 1 };

  for (const id of ['liar', 'liar-isolate']) {
    it(`fields are nested under "fields": they cannot overwrite the host's keys (${id === 'liar' ? 'worker' : 'isolate'})`, async () => {
      await h.host.call(id, 'flood_log', { n: 1, message: 'hello', fields: forged }, { timeoutMs: 5000 });
      const line = h.logs.find((l) => l.extension === id && l.msg === 'hello');
      assert.ok(line, `a line names ${id}`);
      assert.equal(line.level, 30, 'info, as the extension called it');
      assert.equal(line.from, 'extension');
      assert.deepEqual(line.fields, forged);
      assert.equal(h.logs.filter((l) => l.extension === 'bystander' && (l.msg === 'hello' || l.msg === 'forged')).length, 0, 'nothing was written in the name of the bystander');
    });
  }

  it('a line is cut at quotas.log.maxLineBytes and says what was dropped', async () => {
    const fields = { blob: 'b'.repeat(5000) };
    await h.host.call('liar', 'flood_log', { n: 1, message: 'm'.repeat(3000), fields }, { timeoutMs: 5000 });
    const line = h.logs.find((l) => l.extension === 'liar' && typeof l.msg === 'string' && l.msg.startsWith('mmm'));
    assert.ok(line);
    assert.equal(line.fields, undefined, 'fields larger than the line allows are dropped');
    assert.deepEqual(line.truncated, { message: 3000, fields: Buffer.byteLength(JSON.stringify(fields)) });
    assert.ok(Buffer.byteLength(line.msg as string) <= 1024);
  });

  it('past its burst, an extension\'s lines are dropped at quotas.log.linesPerSecond, and the host says so once', async () => {
    const started = Date.now();
    await h.host.call('flooder', 'flood_log', { n: 500, fields: { i: 1 } }, { timeoutMs: 10000 });
    const seconds = (Date.now() - started) / 1000;
    const written = h.logs.filter((l) => l.extension === 'flooder' && l.from === 'extension');
    assert.ok(written.length >= 5 && written.length <= 5 + Math.ceil(seconds) + 1, `${written.length} lines written in ${seconds} s`);
    const warnings = h.logs.filter((l) => l.extension === 'flooder' && l.from === 'host');
    assert.equal(warnings.length, 1, 'one warning for the run of dropped lines');
    assert.equal(warnings[0]?.code, 'PLINTH_ERR_QUOTA_EXCEEDED');
    assert.equal(warnings[0]?.limit, 'quotas.log.linesPerSecond');
    await h.bystanderAnswers();
  });
});
