import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import semver from 'semver';
import { resolve, dependencyFailed, type Candidate, type Resolution, type ResolveOptions } from '../../src/resolve/index.ts';
import { PlinthError } from '../../src/errors.ts';

type Deps = Record<string, string | { range: string; optional: boolean }>;

let nextOrder = 0;
/** One installed copy; `dir` defaults to plugins/<id>, `order` to creation order. */
function cand(id: string, version: string, deps: Deps = {}, extra: Partial<Candidate> = {}): Candidate {
  const dependencies: Candidate['dependencies'] = {};
  for (const [dep, d] of Object.entries(deps)) dependencies[dep] = typeof d === 'string' ? { range: d, optional: false } : d;
  return { id, version, dir: `plugins/${id}`, dependencies, order: nextOrder++, ...extra };
}
const optional = (range: string) => ({ range, optional: true });
const HOST: ResolveOptions = { hostVersion: '1.0.0' };

function run(candidates: Candidate[], options: Partial<ResolveOptions> = {}): Resolution {
  return resolve(candidates, { ...HOST, ...options });
}

function failure(r: Resolution, id: string): PlinthError {
  const f = r.failed.get(id);
  assert.ok(f, `${id} should have failed; resolved: ${[...r.resolved.keys()].join(', ')}`);
  return f.error;
}

function versionOf(r: Resolution, id: string): string {
  const c = r.resolved.get(id);
  assert.ok(c, `${id} should be resolved; failed: ${[...r.failed].map(([k, v]) => `${k}: ${v.error.message}`).join(' | ')}`);
  return c.version;
}

/** Every structure of a resolution as plain data, for comparing runs. */
function snapshot(r: Resolution): unknown {
  return {
    resolved: [...r.resolved].map(([id, c]) => [id, c.version, c.dir]),
    failed: [...r.failed].map(([id, f]) => [id, f.candidate?.dir, f.error.code, f.error.message]),
    shadowed: r.shadowed.map((s) => [s.candidate.dir, s.candidate.version, s.chosen.dir, s.reason]).sort(),
    levels: r.levels,
    warnings: r.warnings.map((w) => [w.extension, w.dependency, w.message]),
  };
}

/** Deterministic PRNG (mulberry32), so the random tests are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Asserts that every resolved extension's resolved dependencies sit on an earlier level. */
function assertLevelsRespectEdges(r: Resolution): void {
  const levelOf = new Map<string, number>();
  r.levels.forEach((level, i) => level.forEach((id) => levelOf.set(id, i)));
  assert.deepEqual([...levelOf.keys()].sort(), [...r.resolved.keys()].sort(), 'every resolved id is on exactly one level');
  for (const [id, c] of r.resolved) {
    for (const [dep, d] of Object.entries(c.dependencies)) {
      if (!d.optional) assert.ok(levelOf.get(dep)! < levelOf.get(id)!, `${dep} starts before ${id}`);
    }
  }
  for (const level of r.levels) assert.deepEqual(level, [...level].sort(), 'sorted by id within a level');
}

describe('resolve: version ranges (the seed forms)', () => {
  const copies = (versions: string[]) => versions.map((v, i) => cand('audit-log', v, {}, { dir: `p${i}/audit-log` }));

  it('^2.1.0 picks the highest 2.x at or above 2.1.0', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '^2.1.0' }), ...copies(['2.0.0', '2.1.5', '2.9.0', '3.0.0'])]);
    assert.equal(versionOf(r, 'audit-log'), '2.9.0');
    assert.equal(versionOf(r, 'report-gen'), '1.2.0');
  });

  it('>=3.0.0 <4.0.0 picks the highest 3.x', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '>=3.0.0 <4.0.0' }), ...copies(['2.9.0', '3.4.0', '3.0.1', '4.0.0'])]);
    assert.equal(versionOf(r, 'audit-log'), '3.4.0');
  });

  it('~2.5.0 picks the highest 2.5.x', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '~2.5.0' }), ...copies(['2.5.1', '2.6.0', '2.5.9', '2.4.9'])]);
    assert.equal(versionOf(r, 'audit-log'), '2.5.9');
  });

  it('* picks the highest release', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '*' }), ...copies(['1.0.0', '5.2.0', '6.0.0-beta.1'])]);
    assert.equal(versionOf(r, 'audit-log'), '5.2.0');
  });
});

describe('resolve: failures and their messages', () => {
  it('a missing required dependency: DEPENDENCY_MISSING', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }), cand('other', '1.0.0')]);
    const err = failure(r, 'report-gen');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_MISSING');
    assert.equal(err.message, 'report-gen 1.2.0 needs audit-log ^3.0.0, which is not installed');
    assert.equal(err.extension, 'report-gen');
    assert.equal(err.file, 'plugins/report-gen');
    assert.equal(versionOf(r, 'other'), '1.0.0', 'an unrelated extension still resolves');
  });

  it('no installed version satisfies: DEPENDENCY_UNSATISFIED with the exact "needs …; installed: … at …" shape', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }), cand('audit-log', '2.4.1')]);
    const err = failure(r, 'report-gen');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_UNSATISFIED');
    assert.equal(err.message, 'report-gen 1.2.0 needs audit-log ^3.0.0; installed: 2.4.1 at plugins/audit-log');
    assert.equal(versionOf(r, 'audit-log'), '2.4.1', 'the dependency itself still starts');
  });

  it('DEPENDENCY_UNSATISFIED lists every installed copy, version ascending, dirs as given', () => {
    const r = run([
      cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }),
      cand('audit-log', '2.9.0', {}, { dir: '/opt/a/audit-log', order: 1 }),
      cand('audit-log', '2.4.1', {}, { dir: 'b/audit-log', order: 2 }),
    ]);
    assert.equal(failure(r, 'report-gen').message, 'report-gen 1.2.0 needs audit-log ^3.0.0; installed: 2.4.1 at b/audit-log, 2.9.0 at /opt/a/audit-log');
  });

  it('an invalid range is unsatisfied, not a throw', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': 'latest-and-greatest' }), cand('audit-log', '2.4.1')]);
    const err = failure(r, 'report-gen');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_UNSATISFIED');
    assert.match(err.message, /not a valid npm range/);
  });

  it('engines.plinth excluding the host: HOST_VERSION_UNSUPPORTED naming the range and the host version; dependents fail with the chain', () => {
    const r = run([cand('audit-log', '2.4.1', {}, { hostRange: '^2.0.0' }), cand('report-gen', '1.2.0', { 'audit-log': '^2.0.0' })]);
    const err = failure(r, 'audit-log');
    assert.equal(err.code, 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
    assert.match(err.message, /^audit-log 2\.4\.1 .*\^2\.0\.0.*1\.0\.0/);
    const dep = failure(r, 'report-gen');
    assert.equal(dep.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(dep.message, `report-gen 1.2.0 cannot start: its dependency audit-log failed: ${err.message}`);
    assert.equal(dep.cause, err);
  });

  it('a copy the host excludes is skipped for a usable one, and is named as unusable when nothing satisfies', () => {
    const copies = [cand('audit-log', '3.0.0', {}, { hostRange: '>=2.0.0', dir: 'p1/audit-log' }), cand('audit-log', '2.4.1', {}, { hostRange: '^1.0.0', dir: 'p2/audit-log' })];
    const ok = run([cand('billing', '2.0.0', { 'audit-log': '>=2.0.0' }), ...copies]);
    assert.equal(versionOf(ok, 'audit-log'), '2.4.1');
    assert.ok(ok.shadowed.some((s) => s.candidate.version === '3.0.0' && /engines\.plinth/.test(s.reason)));

    const bad = run([cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }), ...copies]);
    const err = failure(bad, 'report-gen');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_UNSATISFIED');
    assert.match(err.message, /^report-gen 1\.2\.0 needs audit-log \^3\.0\.0; installed: 2\.4\.1 at p2\/audit-log, 3\.0\.0 at p1\/audit-log \(unusable: .*>=2\.0\.0.*1\.0\.0\)$/);
  });

  it('a prerelease host version counts as its release line for engines.plinth', () => {
    const r = run([cand('a', '1.0.0', {}, { hostRange: '^1.0.0' })], { hostVersion: '1.1.0-dev.3' });
    assert.equal(versionOf(r, 'a'), '1.0.0');
  });

  it('an unusable extension (manifest/trust failure) keeps its own error; dependents fail with DEPENDENCY_FAILED, not MISSING', () => {
    const sigErr = new PlinthError('PLINTH_ERR_SIG_FILE_CHANGED', 'extension audit-log at plugins/audit-log: index.js differs from plinth.sig', { extension: 'audit-log' });
    const manifestErr = new PlinthError('PLINTH_ERR_MANIFEST_INVALID', 'ledger: plinth.runtime is missing');
    const r = run([cand('audit-log', '2.4.1'), cand('report-gen', '1.2.0', { 'audit-log': '^2.0.0' }), cand('books', '1.0.0', { ledger: '^1.0.0' }), cand('free', '1.0.0')], {
      unusable: new Map([
        ['audit-log', sigErr],
        ['ledger', manifestErr],
      ]),
    });
    assert.equal(failure(r, 'audit-log'), sigErr);
    assert.equal(r.failed.get('audit-log')!.candidate?.version, '2.4.1');
    assert.equal(failure(r, 'ledger'), manifestErr);
    assert.equal(r.failed.get('ledger')!.candidate, undefined);

    const rg = failure(r, 'report-gen');
    assert.equal(rg.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(rg.message, 'report-gen 1.2.0 cannot start: its dependency audit-log failed: audit-log 2.4.1: extension audit-log at plugins/audit-log: index.js differs from plinth.sig');
    assert.match(rg.hint!, /audit-log \(PLINTH_ERR_SIG_FILE_CHANGED\)/);
    const books = failure(r, 'books');
    assert.equal(books.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(books.message, 'books 1.0.0 cannot start: its dependency ledger failed: ledger: plinth.runtime is missing');
    assert.deepEqual([...r.resolved.keys()], ['free']);
  });

  it('DEPENDENCY_FAILED is transitive and names the whole chain down to the root cause', () => {
    const root = new PlinthError('PLINTH_ERR_SIG_INVALID', 'bad signature', { extension: 'c' });
    const r = run([cand('a', '1.0.0', { b: '^1.0.0' }), cand('b', '1.0.0', { c: '^1.0.0' }), cand('c', '1.0.0'), cand('top', '3.0.0', { a: '*' })], {
      unusable: new Map([['c', root]]),
    });
    const a = failure(r, 'a');
    assert.equal(a.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(a.message, 'a 1.0.0 cannot start: its dependency b failed: b 1.0.0 cannot start: its dependency c failed: c 1.0.0: bad signature');
    const top = failure(r, 'top');
    assert.equal(top.message, `top 3.0.0 cannot start: its dependency a failed: ${a.message}`);
    assert.match(top.hint!, /root cause is c \(PLINTH_ERR_SIG_INVALID\)/);
    // The chain is walkable through `cause`.
    let e: unknown = top;
    const codes: string[] = [];
    while (e instanceof PlinthError) {
      codes.push(`${e.extension}:${e.code}`);
      e = e.cause;
    }
    assert.deepEqual(codes, ['top:PLINTH_ERR_DEPENDENCY_FAILED', 'a:PLINTH_ERR_DEPENDENCY_FAILED', 'b:PLINTH_ERR_DEPENDENCY_FAILED', 'c:PLINTH_ERR_SIG_INVALID']);
    assert.equal(r.resolved.size, 0);
  });

  it('dependencyFailed() builds the same chain for a runtime failure', () => {
    const dependent = cand('report-gen', '1.2.0', { 'audit-log': '^2.0.0' });
    const cause = new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', 'initialize() threw: boom', { extension: 'audit-log' });
    const err = dependencyFailed(dependent, 'audit-log', cause);
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(err.message, 'report-gen 1.2.0 cannot start: its dependency audit-log failed: audit-log: initialize() threw: boom');
    assert.equal(err.extension, 'report-gen');
    assert.equal(err.cause, cause);
    assert.match(err.hint!, /audit-log \(PLINTH_ERR_EXTENSION_LOAD_FAILED\)/);
    const outer = dependencyFailed(cand('top', '1.0.0'), 'report-gen', err);
    assert.equal(outer.message, `top 1.0.0 cannot start: its dependency report-gen failed: ${err.message}`);
    assert.match(outer.hint!, /root cause is audit-log \(PLINTH_ERR_EXTENSION_LOAD_FAILED\)/);
  });

  it('malformed input never throws: invalid versions, ranges and host version', () => {
    const r = run([cand('a', 'one', {}), cand('b', '1.0.0', { a: '^1.0.0' }), cand('c', '1.0.0', { b: '>>>' }, { hostRange: '^^1' })]);
    assert.equal(failure(r, 'a').code, 'PLINTH_ERR_MANIFEST_INVALID');
    assert.equal(failure(r, 'b').code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(failure(r, 'c').code, 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
    const r2 = resolve([cand('a', '1.0.0', {}, { hostRange: '^1.0.0' }), cand('b', '1.0.0')], { hostVersion: 'not-a-version' });
    assert.equal(failure(r2, 'a').code, 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
    assert.equal(versionOf(r2, 'b'), '1.0.0', 'no engines.plinth: runs on any host');
  });
});

describe('resolve: prereleases', () => {
  const copies = () => [cand('audit-log', '2.4.1', {}, { dir: 'p1/audit-log' }), cand('audit-log', '3.0.0-beta.1', {}, { dir: 'p2/audit-log' })];

  it('are neither chosen nor satisfy ranges by default', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '>=2.0.0' }), ...copies()]);
    assert.equal(versionOf(r, 'audit-log'), '2.4.1');
    const unconstrained = run(copies());
    assert.equal(versionOf(unconstrained, 'audit-log'), '2.4.1');
    assert.match(unconstrained.shadowed.find((s) => s.candidate.version === '3.0.0-beta.1')!.reason, /prerelease/);
  });

  it('are chosen when a range names a prerelease of the same version', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0-beta.0' }), ...copies()]);
    assert.equal(versionOf(r, 'audit-log'), '3.0.0-beta.1');
  });

  it('are ordinary versions with includePrerelease', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '>=2.0.0' }), ...copies()], { includePrerelease: true });
    assert.equal(versionOf(r, 'audit-log'), '3.0.0-beta.1');
    assert.equal(versionOf(run(copies(), { includePrerelease: true }), 'audit-log'), '3.0.0-beta.1');
  });

  it('a range that only a prerelease would match is unsatisfied, with a hint saying so; a lone prerelease still starts', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }), cand('audit-log', '3.0.0-beta.1')]);
    const err = failure(r, 'report-gen');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_UNSATISFIED');
    assert.equal(err.message, 'report-gen 1.2.0 needs audit-log ^3.0.0; installed: 3.0.0-beta.1 at plugins/audit-log');
    assert.match(err.hint!, /prerelease/);
    assert.equal(versionOf(r, 'audit-log'), '3.0.0-beta.1', 'the only copy installed is used when nothing forbids it');
  });
});

describe('resolve: several copies of one id', () => {
  it('picks the highest copy that satisfies every dependent, and says why the others were not', () => {
    const r = run([
      cand('audit-log', '3.1.0', {}, { dir: 'p1/audit-log' }),
      cand('audit-log', '2.4.1', {}, { dir: 'p2/audit-log' }),
      cand('audit-log', '2.2.0', {}, { dir: 'p3/audit-log' }),
      cand('billing', '2.0.0', { 'audit-log': '^2.0.0' }),
      cand('report-gen', '1.2.0', { 'audit-log': '>=2.1.0' }),
    ]);
    assert.equal(r.resolved.get('audit-log')!.dir, 'p2/audit-log');
    assert.equal(r.failed.size, 0);
    const why = new Map(r.shadowed.map((s) => [s.candidate.dir, s.reason]));
    assert.match(why.get('p1/audit-log')!, /does not satisfy billing 2\.0\.0's range \^2\.0\.0/);
    assert.match(why.get('p3/audit-log')!, /2\.4\.1 at p2\/audit-log is a higher version/);
    assert.ok(r.shadowed.every((s) => s.chosen.dir === 'p2/audit-log'));
  });

  it('the same version twice: the first plugin dir (lowest order) wins, whatever the input order', () => {
    const first = cand('audit-log', '2.4.1', {}, { dir: 'first/audit-log', order: 0 });
    const second = cand('audit-log', '2.4.1', {}, { dir: 'second/audit-log', order: 7 });
    for (const input of [
      [first, second],
      [second, first],
    ]) {
      const r = run(input);
      assert.equal(r.resolved.get('audit-log'), first);
      assert.deepEqual(
        r.shadowed.map((s) => [s.candidate.dir, s.chosen.dir]),
        [['second/audit-log', 'first/audit-log']],
      );
      assert.match(r.shadowed[0]!.reason, /same version as first\/audit-log/);
    }
  });

  it('dependents nobody can satisfy together: DEPENDENCY_CONFLICT listing each demand; the highest copy runs with the dependents it satisfies', () => {
    const r = run([
      cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }),
      cand('billing', '2.0.0', { 'audit-log': '^2.0.0' }),
      cand('invoices', '1.0.0', { billing: '^2.0.0' }),
      cand('audit-log', '3.1.0', {}, { dir: 'p1/audit-log', order: 0 }),
      cand('audit-log', '2.4.1', {}, { dir: 'p2/audit-log', order: 10 }),
      cand('unrelated', '1.0.0'),
    ]);
    assert.equal(r.resolved.get('audit-log')!.version, '3.1.0');
    assert.equal(versionOf(r, 'report-gen'), '1.2.0');
    assert.equal(versionOf(r, 'unrelated'), '1.0.0');
    const err = failure(r, 'billing');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_CONFLICT');
    assert.equal(err.extension, 'billing');
    assert.ok(err.message.startsWith('billing 2.0.0 cannot start'), err.message);
    assert.ok(err.message.includes('billing 2.0.0 needs audit-log ^2.0.0, report-gen 1.2.0 needs audit-log ^3.0.0; installed: 2.4.1 at p2/audit-log, 3.1.0 at p1/audit-log'), err.message);
    assert.ok(err.message.endsWith('audit-log 3.1.0 was chosen'), err.message);
    assert.equal(failure(r, 'invoices').code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.deepEqual(r.levels, [['audit-log', 'unrelated'], ['report-gen']]);
  });

  it('in a conflict the copy that satisfies the most dependents runs, not a higher one nobody asked for', () => {
    const r = run([
      cand('x', '1.0.0', { lib: '^1.0.0' }),
      cand('y', '1.0.0', { lib: '^2.0.0' }),
      cand('z', '1.0.0', { lib: '^2.0.0' }),
      cand('lib', '1.0.0', {}, { dir: 'p/lib1' }),
      cand('lib', '2.0.0', {}, { dir: 'p/lib2' }),
      cand('lib', '3.0.0', {}, { dir: 'p/lib3' }),
    ]);
    assert.equal(versionOf(r, 'lib'), '2.0.0');
    assert.equal(versionOf(r, 'y'), '1.0.0');
    assert.equal(versionOf(r, 'z'), '1.0.0');
    assert.equal(failure(r, 'x').code, 'PLINTH_ERR_DEPENDENCY_CONFLICT');
    assert.ok(failure(r, 'x').message.endsWith('lib 2.0.0 was chosen'), failure(r, 'x').message);
  });

  it('ranges that overlap are no conflict: the highest version inside every range is chosen', () => {
    const r = run([
      cand('report-gen', '1.2.0', { 'audit-log': '>=2.0.0' }),
      cand('billing', '2.0.0', { 'audit-log': '~2.4.0' }),
      cand('audit-log', '3.1.0', {}, { dir: 'p1/audit-log' }),
      cand('audit-log', '2.5.0', {}, { dir: 'p2/audit-log' }),
      cand('audit-log', '2.4.1', {}, { dir: 'p3/audit-log' }),
    ]);
    assert.equal(r.failed.size, 0);
    assert.equal(versionOf(r, 'audit-log'), '2.4.1');
  });

  it('a dependent that failed for another reason no longer holds its dependency back', () => {
    const r = run([
      cand('billing', '2.0.0', { 'audit-log': '^2.0.0', ledger: '^1.0.0' }),
      cand('audit-log', '3.1.0', {}, { dir: 'p1/audit-log' }),
      cand('audit-log', '2.4.1', {}, { dir: 'p2/audit-log' }),
    ]);
    assert.equal(failure(r, 'billing').code, 'PLINTH_ERR_DEPENDENCY_MISSING');
    assert.equal(versionOf(r, 'audit-log'), '3.1.0');
  });

  it("the chosen copy of a dependent decides which ranges count (report-gen 1.2.0's, not 1.1.0's)", () => {
    const r = run([
      cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0' }, { dir: 'p1/report-gen' }),
      cand('report-gen', '1.1.0', { 'audit-log': '^2.0.0' }, { dir: 'p2/report-gen' }),
      cand('audit-log', '3.1.0', {}, { dir: 'p1/audit-log' }),
      cand('audit-log', '2.4.1', {}, { dir: 'p2/audit-log' }),
    ]);
    assert.equal(versionOf(r, 'report-gen'), '1.2.0');
    assert.equal(versionOf(r, 'audit-log'), '3.1.0');
  });

  it('a dependent pins an older copy of an intermediate, whose own range then pins the leaf', () => {
    // app needs mid ^1 → mid 1.0.0 (not 2.0.0) → leaf ^1 (not mid 2.0.0's ^2).
    const r = run([
      cand('app', '1.0.0', { mid: '^1.0.0' }),
      cand('mid', '2.0.0', { leaf: '^2.0.0' }, { dir: 'p1/mid' }),
      cand('mid', '1.0.0', { leaf: '^1.0.0' }, { dir: 'p2/mid' }),
      cand('leaf', '2.0.0', {}, { dir: 'p1/leaf' }),
      cand('leaf', '1.5.0', {}, { dir: 'p2/leaf' }),
    ]);
    assert.equal(r.failed.size, 0);
    assert.equal(versionOf(r, 'mid'), '1.0.0');
    assert.equal(versionOf(r, 'leaf'), '1.5.0');
    assert.deepEqual(r.levels, [['leaf'], ['mid'], ['app']]);
  });
});

describe('resolve: optional dependencies', () => {
  it('missing: fine, no edge, no warning', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': optional('^2.0.0') })]);
    assert.equal(versionOf(r, 'report-gen'), '1.2.0');
    assert.deepEqual(r.warnings, []);
  });

  it('present but unsatisfied: the dependent starts without the edge, with a warning', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': optional('^3.0.0') }), cand('audit-log', '2.4.1')]);
    assert.equal(r.failed.size, 0);
    assert.deepEqual(r.levels, [['audit-log', 'report-gen']]);
    assert.equal(r.warnings.length, 1);
    assert.equal(r.warnings[0]!.extension, 'report-gen');
    assert.equal(r.warnings[0]!.dependency, 'audit-log');
    assert.match(r.warnings[0]!.message, /\^3\.0\.0.*2\.4\.1 at plugins\/audit-log/);
  });

  it('present but failed: the dependent starts, with a warning carrying the reason', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': optional('^2.0.0') }), cand('audit-log', '2.4.1', { ledger: '^1.0.0' })]);
    assert.equal(failure(r, 'audit-log').code, 'PLINTH_ERR_DEPENDENCY_MISSING');
    assert.equal(versionOf(r, 'report-gen'), '1.2.0');
    assert.match(r.warnings[0]!.message, /audit-log 2\.4\.1 needs ledger \^1\.0\.0, which is not installed/);
  });

  it('present and satisfied: an ordinary edge for the start order', () => {
    const r = run([cand('report-gen', '1.2.0', { 'audit-log': optional('^2.0.0') }), cand('audit-log', '2.4.1')]);
    assert.deepEqual(r.levels, [['audit-log'], ['report-gen']]);
    assert.deepEqual(r.warnings, []);
  });

  it('an optional edge that would close a cycle is dropped with a warning; nobody fails', () => {
    const r = run([cand('a', '1.0.0', { b: '^1.0.0' }), cand('b', '1.0.0', { a: optional('^1.0.0') })]);
    assert.equal(r.failed.size, 0);
    assert.deepEqual(r.levels, [['b'], ['a']]);
    assert.equal(r.warnings.length, 1);
    assert.equal(r.warnings[0]!.extension, 'b');
    assert.match(r.warnings[0]!.message, /cycle/);
  });
});

describe('resolve: cycles', () => {
  it('two members: each fails naming the cycle from itself, in order', () => {
    const r = run([cand('a', '1.0.0', { b: '^1.0.0' }), cand('b', '1.0.0', { a: '^1.0.0' }), cand('c', '1.0.0')]);
    assert.equal(failure(r, 'a').code, 'PLINTH_ERR_DEPENDENCY_CYCLE');
    assert.equal(failure(r, 'a').message, 'a 1.0.0 cannot start: dependency cycle a → b → a');
    assert.equal(failure(r, 'b').message, 'b 1.0.0 cannot start: dependency cycle b → a → b');
    assert.deepEqual(r.levels, [['c']]);
  });

  it('three members, in dependency order; dependents of a member fail with DEPENDENCY_FAILED', () => {
    const r = run([
      cand('c', '1.0.0', { a: '*' }),
      cand('b', '1.0.0', { c: '*' }),
      cand('a', '1.0.0', { b: '*' }),
      cand('user', '1.0.0', { b: '*' }),
      cand('lib', '1.0.0'),
      cand('app', '1.0.0', { lib: '*' }),
    ]);
    assert.match(failure(r, 'a').message, /a → b → c → a$/);
    assert.match(failure(r, 'b').message, /b → c → a → b$/);
    assert.match(failure(r, 'c').message, /c → a → b → c$/);
    for (const id of ['a', 'b', 'c']) assert.equal(failure(r, id).code, 'PLINTH_ERR_DEPENDENCY_CYCLE');
    const user = failure(r, 'user');
    assert.equal(user.code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(user.message, 'user 1.0.0 cannot start: its dependency b failed: b 1.0.0 cannot start: dependency cycle b → c → a → b');
    assert.deepEqual(r.levels, [['lib'], ['app']]);
  });

  it('a self-dependency is a cycle of one', () => {
    const r = run([cand('a', '1.0.0', { a: '^1.0.0' })]);
    const err = failure(r, 'a');
    assert.equal(err.code, 'PLINTH_ERR_DEPENDENCY_CYCLE');
    assert.match(err.message, /a → a$/);
  });

  it('a tail into a cycle fails with DEPENDENCY_FAILED, not as a member', () => {
    const r = run([cand('x', '1.0.0', { a: '*' }), cand('a', '1.0.0', { b: '*' }), cand('b', '1.0.0', { a: '*' })]);
    assert.equal(failure(r, 'x').code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(failure(r, 'a').code, 'PLINTH_ERR_DEPENDENCY_CYCLE');
  });
});

describe('resolve: start order', () => {
  it('a diamond: the shared dependency first, the two sides together, the top last', () => {
    const r = run([cand('top', '1.0.0', { left: '*', right: '*' }), cand('left', '1.0.0', { base: '*' }), cand('right', '1.0.0', { base: '*' }), cand('base', '1.0.0')]);
    assert.deepEqual(r.levels, [['base'], ['left', 'right'], ['top']]);
  });

  it('independent groups share levels, sorted by id; a level is the longest path below it', () => {
    const r = run([
      cand('x', '1.0.0', { y: '*' }),
      cand('y', '1.0.0'),
      cand('q', '1.0.0', { p: '*' }),
      cand('p', '1.0.0'),
      cand('solo', '1.0.0'),
      cand('deep', '1.0.0', { x: '*', p: '*' }),
    ]);
    assert.deepEqual(r.levels, [['p', 'solo', 'y'], ['q', 'x'], ['deep']]);
    assertLevelsRespectEdges(r);
  });

  it('empty input: nothing resolved, nothing failed', () => {
    const r = run([]);
    assert.deepEqual(snapshot(r), { resolved: [], failed: [], shadowed: [], levels: [], warnings: [] });
  });
});

describe('resolve: determinism and scale', () => {
  /** A mixed scenario: copies, a conflict, a cycle, a missing dependency, prereleases, optional edges. */
  function mixed(): Candidate[] {
    nextOrder = 0;
    return [
      cand('audit-log', '3.1.0', {}, { dir: 'p1/audit-log' }),
      cand('audit-log', '2.4.1', {}, { dir: 'p2/audit-log' }),
      cand('audit-log', '2.4.1', {}, { dir: 'p3/audit-log' }),
      cand('audit-log', '4.0.0-rc.1', {}, { dir: 'p4/audit-log' }),
      cand('report-gen', '1.2.0', { 'audit-log': '^3.0.0', csv: optional('^1.0.0') }),
      cand('billing', '2.0.0', { 'audit-log': '^2.0.0' }),
      cand('invoices', '1.0.0', { billing: '*', ledger: '^1.0.0' }),
      cand('csv', '1.0.0'),
      cand('a', '1.0.0', { b: '*' }),
      cand('b', '1.0.0', { a: '*' }),
      cand('c', '1.0.0', { a: '*', csv: '^1.0.0' }),
      cand('old', '1.0.0', {}, { hostRange: '^0.9.0' }),
      cand('needs-old', '1.0.0', { old: '*' }),
    ];
  }

  it('shuffling the input gives the same result', () => {
    const base = mixed();
    const expected = snapshot(run(base));
    const random = prng(42);
    for (let i = 0; i < 25; i++) assert.deepEqual(snapshot(run(shuffled(base, random))), expected, `shuffle ${i}`);
    // And the expected result is the one the rules give.
    const r = run(base);
    assert.equal(r.resolved.get('audit-log')!.version, '3.1.0');
    assert.equal(failure(r, 'billing').code, 'PLINTH_ERR_DEPENDENCY_CONFLICT');
    assert.equal(failure(r, 'invoices').code, 'PLINTH_ERR_DEPENDENCY_MISSING');
    assert.equal(failure(r, 'a').code, 'PLINTH_ERR_DEPENDENCY_CYCLE');
    assert.equal(failure(r, 'c').code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.equal(failure(r, 'old').code, 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
    assert.equal(failure(r, 'needs-old').code, 'PLINTH_ERR_DEPENDENCY_FAILED');
    assert.deepEqual(r.levels, [['audit-log', 'csv'], ['report-gen']]);
  });

  it('a 500-extension random DAG with duplicate copies resolves completely, quickly, and the same way every time', () => {
    const random = prng(7);
    const n = 500;
    const list: Candidate[] = [];
    for (let i = 0; i < n; i++) {
      const id = `ext-${String(i).padStart(3, '0')}`;
      const deps: Deps = {};
      const count = Math.floor(random() * 5);
      for (let k = 0; k < count && i > 0; k++) {
        const j = Math.floor(random() * i);
        deps[`ext-${String(j).padStart(3, '0')}`] = random() < 0.2 ? optional('^1.0.0') : random() < 0.5 ? '^1.0.0' : '>=1.0.0 <3.0.0';
      }
      list.push(cand(id, '1.2.0', deps, { dir: `p1/${id}` }));
      if (random() < 0.2) list.push(cand(id, '1.0.0', deps, { dir: `p2/${id}` }));
      if (random() < 0.1) list.push(cand(id, '2.0.0', deps, { dir: `p3/${id}`, hostRange: '^5.0.0' }));
    }
    const started = performance.now();
    const r = run(list);
    const ms = performance.now() - started;
    assert.equal(r.failed.size, 0, [...r.failed.values()].map((f) => f.error.message).slice(0, 3).join('\n'));
    assert.equal(r.resolved.size, n);
    for (const c of r.resolved.values()) assert.equal(c.version, '1.2.0');
    assertLevelsRespectEdges(r);
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.deepEqual(snapshot(run(shuffled(list, prng(9)))), snapshot(r));
  });

  it('a 500-extension graph full of failures, conflicts and cycles still terminates without throwing', () => {
    const random = prng(1234);
    const n = 500;
    const list: Candidate[] = [];
    const id = (i: number) => `x${i}`;
    const ranges = ['^1.0.0', '^2.0.0', '~1.1.0', '*', '>=2.0.0 <3.0.0', '^3.0.0'];
    for (let i = 0; i < n; i++) {
      const copies = 1 + Math.floor(random() * 3);
      for (let k = 0; k < copies; k++) {
        const deps: Deps = {};
        for (let d = Math.floor(random() * 4); d > 0; d--) {
          deps[id(Math.floor(random() * (n + 20)))] = random() < 0.15 ? optional(ranges[Math.floor(random() * ranges.length)]!) : ranges[Math.floor(random() * ranges.length)]!;
        }
        list.push(cand(id(i), `${1 + Math.floor(random() * 2)}.${Math.floor(random() * 3)}.0`, deps, { dir: `p${k}/${id(i)}` }));
      }
    }
    const started = performance.now();
    const r = run(list, { unusable: new Map([[id(3), new PlinthError('PLINTH_ERR_SIG_MISSING', 'unsigned')]]) });
    const ms = performance.now() - started;
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.equal(r.resolved.size + r.failed.size, new Set(list.map((c) => c.id)).size);
    assertLevelsRespectEdges(r);
    // Every resolved extension's required dependencies are resolved, and their chosen copies satisfy the ranges.
    for (const [rid, c] of r.resolved) {
      for (const [dep, d] of Object.entries(c.dependencies)) {
        if (d.optional) continue;
        assert.ok(r.resolved.has(dep), `${rid} needs ${dep}`);
        assert.ok(semver.satisfies(r.resolved.get(dep)!.version, d.range), `${rid} needs ${dep} ${d.range}, got ${r.resolved.get(dep)!.version}`);
      }
    }
    assert.deepEqual(snapshot(run(shuffled(list, prng(5)), { unusable: new Map([[id(3), new PlinthError('PLINTH_ERR_SIG_MISSING', 'unsigned')]]) })), snapshot(r));
  });
});

describe('rule 0: a trusted copy is never replaced or shadowed by an untrusted one (issue 7 §2)', () => {
  it('an untrusted higher version loses to a trusted lower one, and is listed with the reason', () => {
    const trusted = cand('vault', '1.0.0', {}, { dir: 'plugins/z-vault' });
    const untrusted = cand('vault', '9.0.0', {}, { dir: 'plugins/a-vault', trusted: false, order: -1 });
    const r = run([untrusted, trusted]);
    assert.equal(r.resolved.get('vault'), trusted);
    const s = r.shadowed.find((x) => x.candidate === untrusted)!;
    assert.match(s.reason, /not signed by a trusted publisher.*1\.0\.0 at plugins\/z-vault/);
  });

  it('a dependent whose range only the untrusted copy satisfies fails; the untrusted copy does not run', () => {
    const r = run([cand('vault', '1.0.0'), cand('vault', '2.0.0', {}, { trusted: false }), cand('app', '1.0.0', { vault: '^2.0.0' })]);
    assert.equal(versionOf(r, 'vault'), '1.0.0');
    assert.equal(failure(r, 'app').code, 'PLINTH_ERR_DEPENDENCY_UNSATISFIED');
  });

  it('when the only trusted copy is unusable the id fails with its reason; the untrusted copy still does not run', () => {
    const r = run([cand('vault', '1.0.0', {}, { hostRange: '^9.0.0' }), cand('vault', '2.0.0', {}, { trusted: false })]);
    const err = failure(r, 'vault');
    assert.equal(err.code, 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
    assert.match(err.message, /2\.0\.0 at plugins\/vault: it is not signed by a trusted publisher/);
  });

  it('untrusted copies compete normally when no trusted copy is installed; the result does not depend on input order', () => {
    const a = [cand('vault', '1.0.0', {}, { trusted: false }), cand('vault', '2.0.0', {}, { trusted: false }), cand('other', '1.0.0'), cand('other', '3.0.0', {}, { trusted: false })];
    const r = run(a);
    assert.equal(versionOf(r, 'vault'), '2.0.0');
    assert.equal(versionOf(r, 'other'), '1.0.0');
    assert.deepEqual(snapshot(run([...a].reverse())), snapshot(r));
  });
});
