// Issue 7 §3: an untrusted extension's schemas cannot stall the host. Real fixture folders, real signatures, a
// real host with a worker and isolates. Each hostile schema is either refused at load with a coded error naming
// the limit, or validated within the work budget (extensionSchemas.maxValidationCost); meanwhile a trusted
// extension keeps answering and the host's event loop is never held for long.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import { readPackageJson, validateExtensionPackage, type ExtensionPackage } from '../../src/manifest/index.ts';
import { DEFAULT_SCHEMA_LIMITS } from '../../src/schema/index.ts';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import type { Json } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, rejectsWith, tempDir, writeTrustStore } from '../helpers.ts';

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'security-schemas');
const fixture = (name: string) => path.join(FIXTURES, name);
const load = async (name: string, limits = DEFAULT_SCHEMA_LIMITS): Promise<ExtensionPackage> =>
  validateExtensionPackage(fixture(name), await readPackageJson(fixture(name)), { schemaLimits: limits });

// A real collector, without a command-line flag for the whole suite: the flag is read when `gc` is looked up.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

after(() => IsolateProcess.shutdownAll());

describe('extension schemas compile in a scope of their own', () => {
  it('a schema with an $id compiles again on every scan: 1200 recompiles neither fail nor keep their scopes', async () => {
    const raw = await readPackageJson(fixture('trusted-echo'));
    const alive: Array<WeakRef<object>> = [];
    let heapAt100 = 0;
    for (let i = 1; i <= 1200; i++) {
      // A fresh parse each time, as every scan reads package.json again.
      const pkg = await validateExtensionPackage(fixture('trusted-echo'), structuredClone(raw));
      assert.equal(pkg.schemas.stages.echo!.input({ text: 'hi' }), true);
      alive.push(new WeakRef(pkg.schemas));
      if (i === 100) {
        gc();
        heapAt100 = process.memoryUsage().heapUsed;
      }
    }
    // Let the last package's promise chain settle, then collect.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const retained = alive.filter((ref) => ref.deref() !== undefined).length;
    const growth = process.memoryUsage().heapUsed - heapAt100;
    assert.ok(retained <= 2, `scopes of dropped packages are collected (still alive: ${retained} of 1200)`);
    // 1100 more scopes, each with its own ajv and compiled code: a leak would be tens of MB (the shared cache was +70 MB / 20 000).
    assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1048576).toFixed(1)} MB over 1100 recompiles`);
  });

  it("an unsigned package declaring a signed package's $id affects neither package, in either load order", async () => {
    for (const order of [['trusted-echo', 'hostile-id'], ['hostile-id', 'trusted-echo']]) {
      const pkgs = Object.fromEntries(await Promise.all(order.map(async (name) => [name, await load(name)] as const)));
      const trusted = pkgs['trusted-echo']!.schemas.stages.echo!;
      const hostile = pkgs['hostile-id']!.schemas.stages.echo!;
      assert.equal(trusted.input({ text: 'hello' }), true);
      assert.equal(trusted.input(5), false, 'the trusted schema is still its own');
      assert.equal(trusted.output({ text: 'hello' }), true, 'its $ref to its own $id resolves to its own schema');
      assert.equal(hostile.input(5), true);
      assert.equal(hostile.input({ text: 'hello' }), false);
    }
  });
});

describe('hostile schemas refused at load, each problem naming its path and the limit', () => {
  it('lookaround, backreferences, a too-long pattern, format "url" and a too-deep schema: PLINTH_ERR_STAGE_SCHEMA_INVALID', async () => {
    const err = await rejectsWith(load('hostile-refused'), 'PLINTH_ERR_STAGE_SCHEMA_INVALID');
    assert.equal(err.extension, 'hostile-refused');
    const byPath = new Map(err.problems.map((p) => [p.path, p.message]));
    assert.match(byPath.get('/plinth/stages/lookahead/input/pattern') ?? '', /linear-time regex engine/);
    assert.match(byPath.get('/plinth/stages/backreference/input/pattern') ?? '', /linear-time regex engine/);
    assert.match(byPath.get('/plinth/stages/lookbehind_keys/input/patternProperties/(?<!x)y') ?? '', /linear-time regex engine/);
    assert.match(byPath.get('/plinth/stages/long_pattern/input/pattern') ?? '', /limit is 1000 \(extensionSchemas\.maxPatternLength\)/);
    assert.match(byPath.get('/plinth/stages/url_format/input/format') ?? '', /"url" is not available/);
    const deep = err.problems.find((p) => p.path.startsWith('/plinth/stages/too_deep/input/'));
    assert.match(deep?.message ?? '', /deeper than 64 levels \(limit extensionSchemas\.maxDepth\)/);
    assert.equal(err.problems.length, 6, JSON.stringify(err.problems));
  });

  it('a schema larger than extensionSchemas.maxNodes is refused; raising the limit lets it load', async () => {
    const err = await rejectsWith(load('hostile-huge'), 'PLINTH_ERR_STAGE_SCHEMA_INVALID');
    assert.deepEqual(err.problems.map((p) => p.path), ['/plinth/stages/big/input']);
    assert.match(err.problems[0]!.message, /limit is 2000 \(extensionSchemas\.maxNodes\)/);
    const pkg = await load('hostile-huge', { ...DEFAULT_SCHEMA_LIMITS, maxNodes: 10_000 });
    assert.equal(pkg.schemas.stages.big!.input(5999), true);
    assert.equal(pkg.schemas.stages.big!.input(6000), false);
  });

  it('the limits have defaults in the host config and can be set there', async () => {
    const root = await tempDir();
    assert.deepEqual((await loadHostConfig({ cwd: root, env: {}, noFile: true })).extensionSchemas, DEFAULT_SCHEMA_LIMITS);
    await writeFile(path.join(root, 'plinth.config.yaml'), 'extensionSchemas: { maxNodes: 10000, maxValidationCost: 1000000 }\n');
    const config = await loadHostConfig({ cwd: root, env: {} });
    assert.deepEqual(config.extensionSchemas, { ...DEFAULT_SCHEMA_LIMITS, maxNodes: 10_000, maxValidationCost: 1_000_000 });
    await writeFile(path.join(root, 'plinth.config.yaml'), 'extensionSchemas: { maxValidationCost: 10 }\n');
    const bad = await rejectsWith(loadHostConfig({ cwd: root, env: {} }), 'PLINTH_ERR_CONFIG_INVALID');
    assert.deepEqual(bad.problems.map((p) => p.path), ['/extensionSchemas/maxValidationCost']);
  });
});

describe('hostile schemas in a running host', () => {
  const publisher = makePublisher('tests');
  let host: Host;

  before(async () => {
    const root = await tempDir();
    const plugins = path.join(root, 'plugins');
    await mkdir(plugins);
    for (const name of ['trusted-echo', 'hostile-id', 'hostile-cost', 'hostile-huge']) await cp(fixture(name), path.join(plugins, name), { recursive: true });
    await signExtension(path.join(plugins, 'trusted-echo'), publisher.privateKey, publisher.id);
    await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
    await writeFile(path.join(root, 'plinth.config.yaml'), 'plugins: [plugins]\ntrust: { store: trust.json, policy: warn }\ndataDir: data\n');
    host = new Host(await loadHostConfig({ cwd: root, env: {} }), { logger: pino({ level: 'silent' }) });
    await host.start();
  });
  after(() => host.stop());

  it('the unsigned copy of an $id neither breaks the signed extension nor fails itself; the oversized one alone is refused', () => {
    const states = Object.fromEntries(host.list().map((e) => [e.id, [e.state, e.reason?.code]]));
    assert.deepEqual(states, {
      'hostile-cost': ['active', undefined],
      'hostile-huge': ['failed', 'PLINTH_ERR_STAGE_SCHEMA_INVALID'],
      'hostile-id': ['active', undefined],
      'trusted-echo': ['active', undefined],
    });
  });

  it('each costly validation finishes within the budget or is refused with PLINTH_ERR_SCHEMA_VALIDATION_LIMIT, while a trusted call keeps answering', { timeout: 120_000 }, async (t) => {
    const attacks: Array<[stage: string, input: Json, expect: string]> = [
      ['redos_input', 'a'.repeat(50_000) + '!', 'PLINTH_ERR_STAGE_INPUT_INVALID'], // catastrophic backtracking on RegExp; linear on RE2
      ['redos_output', null, 'PLINTH_ERR_STAGE_OUTPUT_INVALID'],
      ['unique_output', null, 'ok'], // 30 000 distinct objects: 4.5e8 pair comparisons before, one pass now
      ['fanout_input', 'x', 'PLINTH_ERR_SCHEMA_VALIDATION_LIMIT'], // $ref doubling 40 times: 2^40 evaluations
      ['recursive_output', null, 'PLINTH_ERR_SCHEMA_VALIDATION_LIMIT'], // two recursive paths per level, 40 levels
      ['wide_output', null, 'PLINTH_ERR_SCHEMA_VALIDATION_LIMIT'], // 500 anyOf branches, each scanning 1M characters
      ['keys_output', null, 'PLINTH_ERR_SCHEMA_VALIDATION_LIMIT'], // 100 000 keys against 100 patterns
    ];
    const delay = monitorEventLoopDelay({ resolution: 10 });
    const outcomes: string[] = [];
    // A well-behaved extension called over and over while the attacks run: every answer must come back.
    let stop = false;
    let trustedAnswers = 0;
    const trusted = (async () => {
      while (!stop) {
        assert.deepEqual(await host.call('trusted-echo', 'echo', { text: 'still here' }), { text: 'still here' });
        trustedAnswers++;
      }
    })();
    delay.enable();
    for (const [stage, input, expected] of attacks) {
      const before = trustedAnswers;
      const outcome = await host.call('hostile-cost', stage, input).then(
        () => 'ok',
        (err: { code?: string }) => String(err.code),
      );
      outcomes.push(`${stage}: ${outcome}`);
      assert.equal(outcome, expected, stage);
      // The trusted extension is served between two attacks: wait (bounded) for its next answer.
      const end = Date.now() + 10_000;
      while (trustedAnswers === before && Date.now() < end) await new Promise((resolve) => setImmediate(resolve));
      assert.ok(trustedAnswers > before, `the trusted extension answered after ${stage}`);
    }
    delay.disable();
    stop = true;
    await trusted;
    const maxMs = delay.max / 1e6;
    // The budget (5e7 units) is about 0.25 s of work on an idle core; 2 s is generous for a loaded CI machine.
    // Before the fix one of these validations held the loop for seconds (uniqueItems) or for ever (RegExp, $ref).
    t.diagnostic(`event loop held at most ${maxMs.toFixed(0)} ms; trusted answers during the attacks: ${trustedAnswers}`);
    assert.ok(maxMs < 2000, `event loop held at most ${maxMs.toFixed(0)} ms (outcomes: ${outcomes.join(', ')})`);
  });

  it('the trusted extension whose $id the unsigned one copied validates with its own schema', async () => {
    await rejectsWith(host.call('trusted-echo', 'echo', 5), 'PLINTH_ERR_STAGE_INPUT_INVALID');
    assert.deepEqual(await host.call('hostile-id', 'echo', 5), 5);
    await rejectsWith(host.call('hostile-id', 'echo', { text: 'x' }), 'PLINTH_ERR_STAGE_INPUT_INVALID');
  });
});
