// Dependency resolution (DESIGN.md §1: "dependency resolution (semver, lockfile)"): pure logic over plain data.
// Discovery, manifest and trust hand in every installed copy of every extension; this module decides which copy of
// each id runs, which ids cannot start and why, and the order to start them in. It never throws and never hangs.
//
// Rules (quoted in README "Dependencies"):
//
// 0. Trust. When any installed copy of an id is trusted (signed by a trusted publisher, `trusted` not false),
//    every untrusted copy of that id (`trusted: false`: the policy `warn` let it through unverified) is unusable,
//    whatever its version or place: an untrusted copy never replaces or shadows a trusted one. It is listed
//    among `shadowed` (or in the id's error) with that reason. Copies from a publisher the id's data does not
//    belong to never get here: the registry refuses them before resolution (PLINTH_ERR_PUBLISHER_MISMATCH).
// 1. Host API. A copy whose `engines.plinth` range does not include the host's API version is unusable
//    (a prerelease host version such as 1.1.0-dev counts as its release line). If no usable copy of an id
//    remains, the id fails with PLINTH_ERR_HOST_VERSION_UNSUPPORTED naming the range and the host version.
//    A copy whose version is not valid semver is unusable too (PLINTH_ERR_MANIFEST_INVALID if it was the only one).
// 2. Unusable ids. Ids in `options.unusable` (manifest or trust failures) fail with the error given.
// 3. Version choice. Among an id's usable copies, the chosen one is the highest version that satisfies the range of
//    every dependent that is not itself failed; on the same version the lowest `order` (first plugin dir, then
//    folder name) wins. Prereleases follow npm: a prerelease satisfies a range only when the range names a
//    prerelease of the same major.minor.patch, and an id nobody constrains picks its highest release, falling back
//    to a prerelease only when no release is installed; `includePrerelease: true` treats prereleases as ordinary
//    versions. Optional dependencies never influence which copy is chosen.
// 4. Missing. A required dependency on an id that is not installed (and not in `unusable`) fails the dependent
//    with PLINTH_ERR_DEPENDENCY_MISSING: "report-gen 1.2.0 needs audit-log ^3.0.0, which is not installed".
// 5. Unsatisfied. A required range that no usable installed copy satisfies fails the dependent with
//    PLINTH_ERR_DEPENDENCY_UNSATISFIED: "report-gen 1.2.0 needs audit-log ^3.0.0; installed: 2.4.1 at
//    plugins/audit-log" (every installed copy, version ascending, dirs as given).
// 6. Conflict. When every range is satisfiable alone but no single copy satisfies all dependents together, the id
//    itself takes the copy that satisfies the most dependents (the highest on a tie), and each dependent that copy does not satisfy fails with
//    PLINTH_ERR_DEPENDENCY_CONFLICT listing every demand and every installed copy ("report-gen 1.2.0 needs
//    audit-log ^3.0.0, billing 2.0.0 needs audit-log ^2.0.0; installed: 2.4.1 at …, 3.1.0 at …"). Satisfied
//    dependents and unrelated extensions still start.
// 7. Cycles. Every member of a cycle of required dependencies fails with PLINTH_ERR_DEPENDENCY_CYCLE naming the
//    cycle from itself, in dependency order: "a → b → c → a" (a self-dependency is "a → a").
// 8. Failed dependencies. A required dependency that failed for any reason fails the dependent with
//    PLINTH_ERR_DEPENDENCY_FAILED naming the chain down to the root cause: "report-gen 1.2.0 cannot start: its
//    dependency audit-log failed: audit-log 2.4.1: <root reason>", transitively. The root error is the `cause`.
// 9. Optional dependencies. Not installed: fine, no edge. Installed but failed, or the chosen copy does not
//    satisfy the range, or the edge would close a cycle: the dependent still starts without it (no edge) and the
//    case is listed in `warnings`. Otherwise it is an edge like a required one.
// 10. Start order. `levels` are topological levels of the resolved extensions over required and wired optional
//    edges: level k depends only on levels < k, each level sorted by id; members of a level may start in
//    parallel; stop in reverse.
// 11. Determinism and cost. The result depends only on the set of candidates, not their order in the input. The
//    search is greedy and iterates to a fixpoint: every pass either fails one more id (permanently) or moves a
//    copy choice down (bounded), so it ends after polynomially many passes; there is no backtracking over
//    combinations, so it is never exponential (and, like npm, it may fail an extension a cleverer search could
//    have saved when several copies of several ids interact).
import semver from 'semver';
import { PlinthError, type ErrorCode } from '../errors.ts';

export {
  LOCKFILE_NAME,
  LOCKFILE_VERSION,
  fileListDigest,
  buildLockfile,
  writeLockfile,
  readLockfile,
  checkFrozen,
  type Lockfile,
  type LockedExtension,
} from './lockfile.ts';

export interface Candidate {
  /** One installed copy of an extension (several copies of one id may exist across plugin dirs). */
  id: string;
  version: string;
  dir: string;
  dependencies: Record<string, { range: string; optional: boolean }>;
  /** engines.plinth */
  hostRange?: string;
  /** Discovery order: plugin dir index, then folder name — lower wins ties. */
  order: number;
  /** False for a copy that did not pass verification (policy `warn`); see rule 0. Absent counts as trusted. */
  trusted?: boolean;
}

export interface ResolveOptions {
  /** This host's API version, e.g. '1.0.0'. */
  hostVersion: string;
  /** Default false: npm prerelease semantics (see rule 3). True: semver's includePrerelease. */
  includePrerelease?: boolean;
  /** Extensions (by id) that exist but cannot be used (manifest/trust failure), with why; dependents fail with DEPENDENCY_FAILED naming the chain. */
  unusable?: Map<string, PlinthError>;
}

/** Something a person should know that does not stop an extension from starting. */
export interface ResolutionWarning {
  /** The extension concerned (the dependent). */
  extension: string;
  /** The dependency concerned. */
  dependency: string;
  message: string;
}

export interface Resolution {
  /** id → the chosen copy, sorted by id. */
  resolved: Map<string, Candidate>;
  /** Ids that cannot start (every id of `options.unusable` included), with a self-explaining error, sorted by id. `candidate` is the copy that would have run. */
  failed: Map<string, { candidate: Candidate | undefined; error: PlinthError }>;
  /** Copies of resolved ids that were not chosen, and why (the copies of failed ids are named in their errors). */
  shadowed: Array<{ candidate: Candidate; chosen: Candidate; reason: string }>;
  /** Start order: level k's members depend only on earlier levels; each level sorted by id; stop in reverse. */
  levels: string[][];
  /** Optional dependencies that were not wired (failed, unsatisfied, or closing a cycle). */
  warnings: ResolutionWarning[];
}

/** Plain code-unit order: the same on every machine and locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function label(c: Candidate): string {
  return `${c.id} ${c.version}`;
}

/** The text of a failed dependency as it appears in a chain: always starting with the dependency's name. */
function chainText(id: string, candidate: Candidate | undefined, error: PlinthError): string {
  if (error.message.startsWith(`${id} `) || error.message.startsWith(`${id}:`)) return error.message;
  return `${candidate ? label(candidate) : id}: ${error.message}`;
}

/** The error at the bottom of a DEPENDENCY_FAILED chain, and the extension it concerns. */
function rootOf(dependencyId: string, error: PlinthError): { id: string; error: PlinthError } {
  let id = dependencyId;
  let err = error;
  for (let depth = 0; err.code === 'PLINTH_ERR_DEPENDENCY_FAILED' && err.cause instanceof PlinthError && depth < 1000; depth++) {
    err = err.cause;
    id = err.extension ?? id;
  }
  return { id: err.extension ?? id, error: err };
}

function failedError(dependent: Candidate, dependencyId: string, depCandidate: Candidate | undefined, cause: PlinthError): PlinthError {
  const root = rootOf(dependencyId, cause);
  return new PlinthError(
    'PLINTH_ERR_DEPENDENCY_FAILED',
    `${label(dependent)} cannot start: its dependency ${dependencyId} failed: ${chainText(dependencyId, depCandidate, cause)}`,
    {
      extension: dependent.id,
      file: dependent.dir,
      hint: `the root cause is ${root.id} (${root.error.code}): fix it, or make ${dependent.id}'s dependency on ${dependencyId} optional`,
      cause,
    },
  );
}

/**
 * For runtime failures (a dependency's initialize() throws): DEPENDENCY_FAILED for `dependent`, naming the chain
 * down to the root cause, with `cause` attached. Usable by the registry.
 */
export function dependencyFailed(dependent: Candidate, dependencyId: string, cause: PlinthError): PlinthError {
  return failedError(dependent, dependencyId, undefined, cause);
}

interface Copy {
  candidate: Candidate;
  version: semver.SemVer;
  prerelease: boolean;
}

interface Entry {
  id: string;
  /** Every installed copy, version ascending (invalid versions last), then order: for messages. */
  all: Candidate[];
  /** Usable copies, best first: version descending, then order ascending. */
  usable: Copy[];
  hasRelease: boolean;
  /** Why a copy is not usable (host range, invalid version). */
  rejected: Map<Candidate, { code: ErrorCode; reason: string }>;
}

interface Demand {
  from: Candidate;
  range: string;
}

function compareCandidates(a: Candidate, b: Candidate): number {
  return compareStrings(a.id, b.id) || a.order - b.order || compareStrings(a.dir, b.dir) || compareStrings(a.version, b.version);
}

function sortedDeps(c: Candidate): Array<[string, { range: string; optional: boolean }]> {
  return Object.entries(c.dependencies).sort(([a], [b]) => compareStrings(a, b));
}

export function resolve(candidates: Candidate[], options: ResolveOptions): Resolution {
  const includePrerelease = options.includePrerelease ?? false;
  const hostVersion = options.hostVersion;
  const unusable = options.unusable ?? new Map<string, PlinthError>();

  const rangeCache = new Map<string, semver.Range | null>();
  const rangeOf = (range: string): semver.Range | null => {
    let r = rangeCache.get(range);
    if (r === undefined) {
      try {
        r = new semver.Range(range, { includePrerelease });
      } catch {
        r = null;
      }
      rangeCache.set(range, r);
    }
    return r;
  };
  const satisfies = (v: semver.SemVer, range: string): boolean => rangeOf(range)?.test(v) ?? false;

  // ---- Group the copies by id; sort them so nothing depends on the input order. -------------------------------
  const entries = new Map<string, Entry>();
  const sorted = [...candidates].sort(compareCandidates);
  /** Rule 0: per id, its first trusted copy, if any. */
  const trustedCopy = new Map<string, Candidate>();
  for (const c of sorted) if (c.trusted !== false && !trustedCopy.has(c.id)) trustedCopy.set(c.id, c);
  for (const c of sorted) {
    let e = entries.get(c.id);
    if (!e) {
      e = { id: c.id, all: [], usable: [], hasRelease: false, rejected: new Map() };
      entries.set(c.id, e);
    }
    e.all.push(c);
    const trusted = trustedCopy.get(c.id);
    if (c.trusted === false && trusted) {
      e.rejected.set(c, {
        code: 'PLINTH_ERR_DUPLICATE_EXTENSION',
        reason: `it is not signed by a trusted publisher, and a trusted copy of ${c.id} is installed (${trusted.version} at ${trusted.dir}): an untrusted copy never replaces or shadows a trusted one`,
      });
      continue;
    }
    const version = semver.parse(c.version);
    if (!version) {
      e.rejected.set(c, { code: 'PLINTH_ERR_MANIFEST_INVALID', reason: `version ${JSON.stringify(c.version)} is not a valid semantic version` });
      continue;
    }
    if (c.hostRange !== undefined && !semver.satisfies(hostVersion, c.hostRange, { includePrerelease: true })) {
      const invalid = semver.validRange(c.hostRange) === null ? ', which is not a valid npm range' : '';
      e.rejected.set(c, {
        code: 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED',
        reason: `requires host API ${c.hostRange} (engines.plinth${invalid}), but this host's API version is ${hostVersion}`,
      });
      continue;
    }
    e.usable.push({ candidate: c, version, prerelease: version.prerelease.length > 0 });
  }
  for (const e of entries.values()) {
    e.usable.sort((a, b) => semver.rcompare(a.version, b.version) || compareCandidates(a.candidate, b.candidate));
    e.hasRelease = e.usable.some((u) => !u.prerelease);
    e.all.sort((a, b) => {
      const va = semver.parse(a.version);
      const vb = semver.parse(b.version);
      if (va && vb) return semver.compare(va, vb) || compareCandidates(a, b);
      return va ? -1 : vb ? 1 : compareCandidates(a, b);
    });
  }
  const ids = [...new Set([...entries.keys(), ...unusable.keys()])].sort(compareStrings);

  const installed = (e: Entry): string =>
    e.all
      .map((c) => {
        const rejected = e.rejected.get(c);
        return `${c.version} at ${c.dir}${rejected ? ` (unusable: ${rejected.reason})` : ''}`;
      })
      .join(', ');

  // ---- Failures: permanent once recorded. ---------------------------------------------------------------------
  const failures = new Map<string, { candidate: Candidate | undefined; error: PlinthError }>();
  const highestInstalled = (e: Entry | undefined): Candidate | undefined => (e ? (e.usable[0]?.candidate ?? e.all.findLast((c) => semver.valid(c.version) !== null) ?? e.all[0]) : undefined);

  for (const id of ids) {
    const e = entries.get(id);
    const given = unusable.get(id);
    if (given) {
      failures.set(id, { candidate: highestInstalled(e), error: given });
      continue;
    }
    if (e && e.usable.length === 0) {
      // Name the highest copy; mention the others so nobody hunts for a copy that would have worked.
      const hostRejected = e.all.filter((c) => e.rejected.get(c)?.code === 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED');
      const main = hostRejected.at(-1) ?? e.all.findLast((c) => e.rejected.get(c)?.code !== 'PLINTH_ERR_DUPLICATE_EXTENSION') ?? e.all.at(-1)!;
      const why = e.rejected.get(main)!;
      const others = e.all.filter((c) => c !== main).map((c) => `${c.version} at ${c.dir}: ${e.rejected.get(c)?.reason ?? 'unusable'}`);
      failures.set(id, {
        candidate: main,
        error: new PlinthError(why.code, `${label(main)} ${why.reason}${others.length > 0 ? `; other copies: ${others.join('; ')}` : ''}`, {
          extension: id,
          file: main.dir,
          hint:
            why.code === 'PLINTH_ERR_HOST_VERSION_UNSUPPORTED'
              ? `install a version of ${id} whose engines.plinth includes ${hostVersion}`
              : `fix the "version" field in ${id}'s package.json`,
        }),
      });
    }
  }

  // ---- Version choice: greedy, monotone descent per id to a fixpoint (rule 3, 11). -----------------------------
  const choice = new Map<string, number>();
  const active = (): string[] => ids.filter((id) => !failures.has(id) && entries.has(id));
  const chosen = (id: string): Copy | undefined => entries.get(id)?.usable[choice.get(id) ?? 0];

  const requiredDemands = (activeIds: string[]): Map<string, Demand[]> => {
    const out = new Map<string, Demand[]>();
    for (const id of activeIds) {
      const c = chosen(id)!.candidate;
      for (const [dep, d] of sortedDeps(c)) {
        if (d.optional || !entries.has(dep) || failures.has(dep)) continue;
        let list = out.get(dep);
        if (!list) out.set(dep, (list = []));
        list.push({ from: c, range: d.range });
      }
    }
    return out;
  };
  const acceptable = (e: Entry, copy: Copy, demands: Demand[] | undefined): boolean => {
    if (!demands || demands.length === 0) return includePrerelease || !copy.prerelease || !e.hasRelease;
    return demands.every((d) => satisfies(copy.version, d.range));
  };
  /** The copy an id takes when nobody constrains it, or in a conflict: its highest release (rule 3, 6). */
  const preferredIndex = (e: Entry): number => Math.max(0, e.usable.findIndex((u) => includePrerelease || !u.prerelease || !e.hasRelease));

  const settle = (activeIds: string[]): Map<string, Demand[]> => {
    for (const id of activeIds) choice.set(id, 0);
    const jumps = new Map<string, number>();
    for (;;) {
      let changed = true;
      while (changed) {
        changed = false;
        const demands = requiredDemands(activeIds);
        for (const id of activeIds) {
          const e = entries.get(id)!;
          const cur = choice.get(id)!;
          if (acceptable(e, e.usable[cur]!, demands.get(id))) continue;
          for (let i = cur + 1; i < e.usable.length; i++) {
            if (acceptable(e, e.usable[i]!, demands.get(id))) {
              choice.set(id, i);
              changed = true;
              break;
            }
          }
        }
      }
      // A choice pushed down by a demand that later went away may have skipped a copy that fits now: allow a
      // bounded number of jumps back up, so the descent stays finite.
      const demands = requiredDemands(activeIds);
      let jumped = false;
      for (const id of activeIds) {
        const e = entries.get(id)!;
        const cur = choice.get(id)!;
        if (acceptable(e, e.usable[cur]!, demands.get(id)) || (jumps.get(id) ?? 0) >= e.usable.length) continue;
        const better = e.usable.findIndex((u) => acceptable(e, u, demands.get(id)));
        if (better >= 0 && better < cur) {
          choice.set(id, better);
          jumps.set(id, (jumps.get(id) ?? 0) + 1);
          jumped = true;
        }
      }
      if (!jumped) return demands;
    }
  };

  const fail = (id: string, candidate: Candidate | undefined, error: PlinthError): void => {
    if (!failures.has(id)) failures.set(id, { candidate, error });
  };

  /** Rules 4, 5, 8 for the current choices; returns whether anything failed. */
  const hardFailures = (activeIds: string[]): boolean => {
    const fresh: Array<[string, Candidate, PlinthError]> = [];
    for (const id of activeIds) {
      const c = chosen(id)!.candidate;
      for (const [dep, d] of sortedDeps(c)) {
        if (d.optional) continue;
        const depFailure = failures.get(dep);
        if (depFailure) {
          fresh.push([id, c, failedError(c, dep, depFailure.candidate, depFailure.error)]);
          break;
        }
        const e = entries.get(dep);
        if (!e) {
          fresh.push([
            id,
            c,
            new PlinthError('PLINTH_ERR_DEPENDENCY_MISSING', `${label(c)} needs ${dep} ${d.range}, which is not installed`, {
              extension: id,
              file: c.dir,
              hint: `install ${dep} (a version matching ${d.range}) in a plugin directory, or mark the dependency optional`,
            }),
          ]);
          break;
        }
        if (!e.usable.some((u) => satisfies(u.version, d.range))) {
          fresh.push([id, c, unsatisfiedError(c, dep, d.range, e)]);
          break;
        }
      }
    }
    for (const [id, c, err] of fresh) fail(id, c, err);
    // Propagate DEPENDENCY_FAILED transitively now rather than one level per pass.
    let more = fresh.length > 0;
    while (more) {
      more = false;
      for (const id of activeIds) {
        if (failures.has(id)) continue;
        const c = chosen(id)!.candidate;
        for (const [dep, d] of sortedDeps(c)) {
          const depFailure = failures.get(dep);
          if (d.optional || !depFailure) continue;
          fail(id, c, failedError(c, dep, depFailure.candidate, depFailure.error));
          more = true;
          break;
        }
      }
    }
    return fresh.length > 0;
  };

  const unsatisfiedError = (c: Candidate, dep: string, range: string, e: Entry): PlinthError => {
    const invalid = rangeOf(range) === null;
    // A prerelease that is inside the range with includePrerelease, or whose release would be: say why it does not count.
    const nearMiss = invalid
      ? undefined
      : e.usable.find(
          (u) =>
            u.prerelease &&
            (semver.satisfies(u.version, range, { includePrerelease: true }) || semver.satisfies(`${u.version.major}.${u.version.minor}.${u.version.patch}`, range)),
        );
    return new PlinthError('PLINTH_ERR_DEPENDENCY_UNSATISFIED', `${label(c)} needs ${dep} ${range}${invalid ? ' (not a valid npm range)' : ''}; installed: ${installed(e)}`, {
      extension: c.id,
      file: c.dir,
      hint: invalid
        ? `write the range for ${dep} in ${c.id}'s package.json as an npm range such as "^2.1.0"`
        : nearMiss
          ? `${dep} ${nearMiss.candidate.version} is a prerelease: a range matches prereleases only when it names one of the same version (e.g. "^${nearMiss.candidate.version}"), or allow prereleases on the host`
          : `install a version of ${dep} matching ${range}, or change ${c.id}'s dependency range`,
    });
  };

  /** Rule 7 over required edges among the active ids; returns whether anything failed. */
  const cycles = (activeIds: string[]): boolean => {
    const adj = new Map<string, string[]>();
    for (const id of activeIds) {
      adj.set(id, sortedDeps(chosen(id)!.candidate).filter(([dep, d]) => !d.optional && entries.has(dep) && !failures.has(dep)).map(([dep]) => dep));
    }
    const members = stronglyConnected(activeIds, adj).filter((scc) => scc.length > 1 || adj.get(scc[0]!)!.includes(scc[0]!));
    for (const scc of members) {
      const inScc = new Set(scc);
      for (const id of scc) {
        const path = shortestCycle(id, adj, inScc);
        const c = chosen(id)!.candidate;
        fail(
          id,
          c,
          new PlinthError('PLINTH_ERR_DEPENDENCY_CYCLE', `${label(c)} cannot start: dependency cycle ${path.join(' → ')}`, {
            extension: id,
            file: c.dir,
            hint: 'remove one of these dependencies, or mark one of them optional',
          }),
        );
      }
    }
    return members.length > 0;
  };

  /**
   * Rule 6 for the first id (by id) whose current copy misses a required demand; returns whether anything failed.
   * One id per pass: failing its dependents changes the demands on every other id, so the rest wait for a fresh
   * settle instead of being judged on stale demands.
   */
  const conflicts = (activeIds: string[], demands: Map<string, Demand[]>): boolean => {
    for (const id of activeIds) {
      const e = entries.get(id)!;
      const list = demands.get(id) ?? [];
      const current = chosen(id)!;
      if (list.every((d) => satisfies(current.version, d.range))) continue;
      // The copy that satisfies the most dependents; on a tie the highest (usable is sorted highest first).
      const eligible = e.usable.filter((u) => includePrerelease || !u.prerelease || !e.hasRelease);
      let pick = e.usable[preferredIndex(e)]!;
      let best = -1;
      for (const u of eligible.length > 0 ? eligible : e.usable) {
        const n = list.filter((d) => satisfies(u.version, d.range)).length;
        if (n > best) {
          best = n;
          pick = u;
        }
      }
      let losers = list.filter((d) => !satisfies(pick.version, d.range));
      if (losers.length === 0) {
        // Only reachable if the jump budget ran out; failing against the current choice still makes progress.
        pick = current;
        losers = list.filter((d) => !satisfies(pick.version, d.range));
      }
      const all = list.map((d) => `${label(d.from)} needs ${id} ${d.range}`).join(', ');
      for (const d of losers) {
        fail(
          d.from.id,
          d.from,
          new PlinthError(
            'PLINTH_ERR_DEPENDENCY_CONFLICT',
            `${label(d.from)} cannot start: no installed ${id} satisfies every extension that needs it: ${all}; installed: ${installed(e)}; ${label(pick.candidate)} was chosen`,
            {
              extension: d.from.id,
              file: d.from.dir,
              hint: `install a version of ${id} that satisfies all of these ranges, or change ${d.from.id}'s range for ${id} (${d.range})`,
            },
          ),
        );
      }
      return true;
    }
    return false;
  };

  // Each pass either records at least one permanent failure or ends the loop: at most ids.length + 1 passes.
  let demands = new Map<string, Demand[]>();
  for (let pass = 0; pass <= ids.length; pass++) {
    const activeIds = active();
    demands = settle(activeIds);
    if (hardFailures(activeIds)) continue;
    if (cycles(activeIds)) continue;
    if (conflicts(activeIds, demands)) continue;
    break;
  }

  // ---- Results. -------------------------------------------------------------------------------------------------
  const resolved = new Map<string, Candidate>();
  for (const id of active()) resolved.set(id, chosen(id)!.candidate);
  const failed = new Map<string, { candidate: Candidate | undefined; error: PlinthError }>();
  for (const id of [...failures.keys()].sort(compareStrings)) failed.set(id, failures.get(id)!);

  const shadowed: Resolution['shadowed'] = [];
  for (const id of ids) {
    const e = entries.get(id);
    const winner = resolved.get(id);
    if (!e || !winner) continue;
    const winnerVersion = chosen(id)!.version;
    for (const c of e.all) {
      if (c === winner) continue;
      const copy = e.usable.find((u) => u.candidate === c);
      let reason: string;
      const rejected = e.rejected.get(c);
      if (rejected || !copy) reason = rejected?.reason ?? 'not usable';
      else if (semver.eq(copy.version, winnerVersion)) reason = `same version as ${winner.dir}, which comes first in discovery order`;
      else if (semver.lt(copy.version, winnerVersion)) reason = `${winner.version} at ${winner.dir} is a higher version that satisfies every dependent`;
      else {
        const refused = (demands.get(id) ?? []).find((d) => resolved.has(d.from.id) && !satisfies(copy.version, d.range));
        reason = refused
          ? `does not satisfy ${label(refused.from)}'s range ${refused.range}`
          : copy.prerelease && !includePrerelease
            ? 'prerelease versions are chosen only when a range names one'
            : 'not chosen';
      }
      shadowed.push({ candidate: c, chosen: winner, reason });
    }
  }

  // Edges: required ones, then optional ones in sorted order unless unsatisfied, failed or closing a cycle.
  const warnings: ResolutionWarning[] = [];
  const edges = new Map<string, string[]>();
  for (const [id, c] of resolved) edges.set(id, sortedDeps(c).filter(([, d]) => !d.optional).map(([dep]) => dep));
  for (const [id, c] of resolved) {
    for (const [dep, d] of sortedDeps(c)) {
      if (!d.optional) continue;
      const depFailure = failed.get(dep);
      const target = resolved.get(dep);
      if (depFailure) {
        warnings.push({ extension: id, dependency: dep, message: `${label(c)} starts without its optional dependency ${dep}, which failed: ${chainText(dep, depFailure.candidate, depFailure.error)}` });
      } else if (target && !satisfies(semver.parse(target.version)!, d.range)) {
        warnings.push({ extension: id, dependency: dep, message: `${label(c)} starts without its optional dependency ${dep} ${d.range}: the chosen ${target.version} at ${target.dir} does not satisfy it` });
      } else if (target && (dep === id || reaches(dep, id, edges))) {
        warnings.push({ extension: id, dependency: dep, message: `${label(c)} starts without ordering after its optional dependency ${dep}: that edge would close a dependency cycle` });
      } else if (target) {
        edges.get(id)!.push(dep);
      }
    }
  }

  return { resolved, failed, shadowed, levels: topologicalLevels(edges), warnings };
}

/** Tarjan's strongly connected components, iterative (no recursion depth limit), in deterministic order. */
function stronglyConnected(nodes: string[], adj: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let counter = 0;
  for (const start of nodes) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; next: number }> = [{ node: start, next: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work.at(-1)!;
      const succ = adj.get(frame.node) ?? [];
      if (frame.next < succ.length) {
        const w = succ[frame.next++]!;
        if (!adj.has(w)) continue;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      const parent = work.at(-1);
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) === index.get(frame.node)) {
        const scc: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          scc.push(w);
        } while (w !== frame.node);
        out.push(scc.sort(compareStrings));
      }
    }
  }
  return out;
}

/** The shortest cycle from `start` back to itself inside one component: [start, …, start]. */
function shortestCycle(start: string, adj: Map<string, string[]>, within: Set<string>): string[] {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head]!;
    for (const next of adj.get(node) ?? []) {
      if (!within.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let n: string | undefined = node; n !== undefined && n !== start; n = parent.get(n)) path.push(n);
        return [start, ...path.slice(1).reverse(), start];
      }
      if (!parent.has(next)) {
        parent.set(next, node);
        queue.push(next);
      }
    }
  }
  return [start, start];
}

/** Whether `to` is reachable from `from` along `edges`. */
function reaches(from: string, to: string, edges: Map<string, string[]>): boolean {
  const seen = new Set<string>([from]);
  const stack = [from];
  while (stack.length > 0) {
    const node = stack.pop()!;
    for (const next of edges.get(node) ?? []) {
      if (next === to) return true;
      if (!seen.has(next)) {
        seen.add(next);
        stack.push(next);
      }
    }
  }
  return false;
}

/** Level of a node = 1 + the highest level among its dependencies (0 without any); the graph is acyclic here. */
function topologicalLevels(edges: Map<string, string[]>): string[][] {
  const dependents = new Map<string, string[]>();
  const remaining = new Map<string, number>();
  for (const [id, deps] of edges) {
    const unique = [...new Set(deps)].filter((d) => edges.has(d));
    remaining.set(id, unique.length);
    for (const d of unique) {
      let list = dependents.get(d);
      if (!list) dependents.set(d, (list = []));
      list.push(id);
    }
  }
  const levels: string[][] = [];
  let current = [...remaining].filter(([, n]) => n === 0).map(([id]) => id);
  while (current.length > 0) {
    current.sort(compareStrings);
    levels.push(current);
    const next: string[] = [];
    for (const id of current) {
      for (const dep of dependents.get(id) ?? []) {
        const n = remaining.get(dep)! - 1;
        remaining.set(dep, n);
        if (n === 0) next.push(dep);
      }
    }
    current = next;
  }
  return levels;
}
