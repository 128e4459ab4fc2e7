// `plinth run <file>`, `plinth resume <id>`, `plinth runs ls|show` (issue 11 "CLI"). `run` and `resume` start an
// embedded host and show live progress on stderr — one line per stage (state, attempt, duration) redrawn in place
// on a terminal with log-update, plain lines when stderr is not a terminal or CI=true — then print the run id, the
// final state and the outputs of the final stages on stdout (`--json`: the run record in the envelope).
// Exit codes: 0 the run succeeded; 1 it failed, was compensated or cancelled (or the host could not start); 2 usage
// or configuration error; 3 the pipeline was refused before anything ran (as `plinth validate`); 130/143
// cancelled by Ctrl-C / SIGTERM.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogUpdate } from 'log-update';
import { parse as parseYaml } from 'yaml';
import { loadHostConfig, type ConfigFlags } from '../../config/index.ts';
import { startHost, type Host } from '../../host/index.ts';
import { PlinthError } from '../../errors.ts';
import type { Json } from '../../sdk/index.ts';
import { openStore, storeFile } from '../../store/index.ts';
import { RunJournal, listRuns, readRun, type RunProgress, type RunRecord, type RunState, type StageRecord } from '../../pipeline/index.ts';
import { EXIT, table, usageError, type Io, type Outcome } from '../output.ts';
import { createLogger, jsonLogs } from '../log.ts';
import { checkPluginDirs } from '../plugins.ts';

export interface RunFlags extends ConfigFlags {
  var?: string[];
  varsFile?: string;
  json?: boolean;
  verbose?: boolean;
  logFormat?: string;
}

/** `--var k=v`: the value as JSON when it parses (numbers, booleans, objects), else the text as it is. */
export function parseVar(raw: string): [string, Json] {
  const at = raw.indexOf('=');
  if (at <= 0) throw usageError(`--var ${JSON.stringify(raw)} is not name=value`, 'e.g. --var region=eu --var limit=10');
  const name = raw.slice(0, at);
  const text = raw.slice(at + 1);
  try {
    return [name, JSON.parse(text) as Json];
  } catch {
    return [name, text];
  }
}

async function readVariables(flags: RunFlags): Promise<Record<string, Json>> {
  const vars: Record<string, Json> = Object.create(null) as Record<string, Json>;
  if (flags.varsFile !== undefined) {
    let doc: unknown;
    try {
      doc = parseYaml(await readFile(flags.varsFile, 'utf8'));
    } catch (err) {
      throw usageError(`cannot read --vars-file ${flags.varsFile}: ${(err as Error).message}`, 'a YAML or JSON mapping of variable names to values');
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw usageError(`--vars-file ${flags.varsFile} must hold a mapping of variable names to values`);
    Object.assign(vars, doc);
  }
  for (const raw of flags.var ?? []) {
    const [k, v] = parseVar(raw);
    vars[k] = v;
  }
  return { ...vars };
}

const SYMBOL: Record<string, string> = {
  pending: '·',
  running: '▶',
  succeeded: '✔',
  failed: '✖',
  skipped: '↷',
  cancelled: '■',
  compensating: '↺',
  compensated: '↺',
};

function seconds(ms: number | undefined): string {
  if (ms === undefined) return '';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** What the person at the terminal sees while a run goes. */
class ProgressView {
  readonly #io: Io;
  readonly #live: ReturnType<typeof createLogUpdate> | undefined;
  readonly #stages = new Map<string, { state: string; attempt?: number; durationMs?: number; startedAt?: number; note?: string }>();
  #header = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(io: Io, interactive: boolean) {
    this.#io = io;
    if (interactive) {
      this.#live = createLogUpdate(process.stderr);
      this.#timer = setInterval(() => this.#draw(), 200);
      this.#timer.unref();
    }
  }

  begin(run: RunRecord, resumed: boolean): void {
    this.#header = `${resumed ? 'resuming' : 'running'} ${run.pipeline} ${run.version} · run ${run.id}`;
    for (const s of run.stages) this.#stages.set(s.id, { state: s.state, ...(s.attempts.length ? { attempt: s.attempts.length } : {}), ...(s.durationMs !== undefined ? { durationMs: s.durationMs } : {}) });
    if (this.#live) this.#draw();
    else this.#io.err(this.#header);
  }

  change(p: RunProgress & { retryInMs?: number }): void {
    if (p.stage === undefined) {
      if (!this.#live && p.state !== 'running' && p.state !== 'pending') this.#io.err(`run ${p.state}${p.error ? `: ${p.error.code}` : ''}`);
      return;
    }
    const prev = this.#stages.get(p.stage);
    const note = p.retryInMs !== undefined && p.error ? `${p.error.code}, retry in ${seconds(p.retryInMs)}` : p.error ? `${p.error.code}: ${p.error.message}` : undefined;
    this.#stages.set(p.stage, {
      state: p.state,
      ...(p.attempt !== undefined ? { attempt: p.attempt } : {}),
      ...(p.durationMs !== undefined ? { durationMs: p.durationMs } : {}),
      ...(p.state === 'running' ? { startedAt: prev?.state === 'running' && prev.startedAt ? prev.startedAt : Date.now() } : {}),
      ...(note ? { note } : {}),
    });
    if (this.#live) this.#draw();
    else this.#io.err(this.#line(p.stage, this.#stages.get(p.stage)!).trim());
  }

  #line(id: string, s: { state: string; attempt?: number; durationMs?: number; startedAt?: number; note?: string }): string {
    const width = Math.max(...[...this.#stages.keys()].map((k) => k.length), 5);
    // A running stage's time so far is worth showing only where the line is redrawn.
    const took = s.durationMs ?? (this.#live && s.state === 'running' && s.startedAt ? Date.now() - s.startedAt : undefined);
    return `  ${SYMBOL[s.state] ?? ' '} ${id.padEnd(width)}  ${s.state.padEnd(12)} ${s.attempt !== undefined ? `attempt ${s.attempt}`.padEnd(10) : ''.padEnd(10)} ${seconds(took).padStart(8)}${s.note ? `  ${s.note}` : ''}`;
  }

  #draw(): void {
    this.#live?.([this.#header, ...[...this.#stages].map(([id, s]) => this.#line(id, s))].join('\n'));
  }

  note(text: string): void {
    if (this.#live) this.#live.persist(text);
    else this.#io.err(text);
  }

  end(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#live) {
      this.#draw();
      this.#live.done();
    }
  }
}

function interactive(): boolean {
  return process.stderr.isTTY === true && !/^(1|true)$/i.test(process.env.CI ?? '');
}

/** The stages nothing else needs (the DAG's ends) that produced an output: what `run` prints as the result. */
function finalOutputs(run: RunRecord, needed: ReadonlySet<string>): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const s of run.stages) if (!needed.has(s.id) && s.output !== undefined) out[s.id] = s.output;
  return out;
}

function exitFor(run: RunRecord, signal: NodeJS.Signals | undefined): number {
  if (run.state === 'succeeded') return EXIT.ok;
  if (signal && run.state === 'cancelled') return signal === 'SIGTERM' ? 143 : 130;
  return EXIT.failed;
}

async function hostFor(flags: RunFlags): Promise<Host> {
  const config = await loadHostConfig({ flags });
  await checkPluginDirs(config.plugins);
  const logger = createLogger({ level: flags.verbose ? config.log.level : 'warn', json: jsonLogs(flags) });
  return startHost(config, { logger });
}

/**
 * Drives one run to its end with progress; Ctrl-C once cancels it (running stages cancelled, compensations run),
 * twice stops it at once.
 */
/** Progress from before the run id is known (the first stages start while `start` returns), replayed once it is. */
function listen(host: Host): { unsubscribe: () => void; follow: (runId: string, to: (p: RunProgress) => void) => void } {
  let early: RunProgress[] | undefined = [];
  let target: { runId: string; to: (p: RunProgress) => void } | undefined;
  const unsubscribe = host.pipelines.onProgress((p) => {
    if (early) early.push(p);
    else if (target && p.runId === target.runId) target.to(p);
  });
  return {
    unsubscribe,
    follow: (runId, to) => {
      target = { runId, to };
      for (const p of early ?? []) if (p.runId === runId) to(p);
      early = undefined;
    },
  };
}

async function follow(io: Io, host: Host, runId: string, flags: RunFlags, resumed: boolean, needed: ReadonlySet<string>, progress: ReturnType<typeof listen>): Promise<Outcome> {
  const view = flags.json && !interactive() ? undefined : new ProgressView(io, interactive());
  const current = host.pipelines.get(runId);
  if (current) view?.begin(current, resumed);
  progress.follow(runId, (p) => view?.change(p));
  const unsubscribe = progress.unsubscribe;
  let signal: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals) => {
    if (signal === undefined) {
      signal = s;
      view?.note(`${s}: cancelling run ${runId} — running stages are cancelled and compensations run (${s === 'SIGINT' ? 'Ctrl-C' : s} again stops at once)`);
      void host.pipelines.cancel(runId);
    } else {
      view?.note(`${s} again: stopping at once, no compensation`);
      void host.pipelines.cancel(runId, { force: true });
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const run = await host.pipelines.wait(runId);
    view?.end();
    if (!flags.json) {
      const outputs = finalOutputs(run, needed);
      io.out(`run ${run.id} ${run.state}${run.error ? `: ${run.error.code}: ${run.error.message}` : ''}`);
      if (Object.keys(outputs).length > 0) io.out(JSON.stringify(outputs, null, 2));
      if (run.state !== 'succeeded') io.out(`details: plinth runs show ${run.id}`);
    }
    return { code: exitFor(run, signal), data: run };
  } finally {
    unsubscribe();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

function neededOf(host: Host, runId: string): Set<string> {
  // Which stage ids are needed by another: taken from the journaled definition through the run's stages' order.
  const found = host.store.runs.get(runId);
  const needed = new Set<string>();
  if (!found) return needed;
  const def = JSON.parse(found.run.definition) as { stages: Array<{ needs: string[] }> };
  for (const s of def.stages) for (const n of s.needs) needed.add(n);
  return needed;
}

export async function run(io: Io, file: string, flags: RunFlags): Promise<Outcome> {
  const variables = await readVariables(flags);
  if (!existsSync(file)) throw usageError(`no pipeline file ${file}`, 'give the path of a pipeline YAML/JSON file, e.g. pipelines/quick-start.yaml');
  const host = await hostFor(flags);
  const progress = listen(host);
  try {
    const { runId } = await host.pipelines.start({ file: path.resolve(file) }, { variables, trigger: { type: 'manual', detail: { by: 'plinth run' } } });
    return await follow(io, host, runId, flags, false, neededOf(host, runId), progress);
  } finally {
    progress.unsubscribe();
    await host.stop();
  }
}

export async function resume(io: Io, runId: string, flags: RunFlags): Promise<Outcome> {
  const host = await hostFor(flags);
  const progress = listen(host);
  try {
    await host.pipelines.resume(runId);
    return await follow(io, host, runId, flags, true, neededOf(host, runId), progress);
  } finally {
    progress.unsubscribe();
    await host.stop();
  }
}

export interface RunsFlags extends ConfigFlags {
  json?: boolean;
  pipeline?: string;
  state?: string;
  limit?: string;
}

const RUN_STATES: readonly RunState[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled', 'compensating', 'compensated', 'interrupted'];

/** Reads the data dir's journal without a host (like `plinth dlq`). */
async function withJournal<T>(flags: RunsFlags, fn: (journal: RunJournal | undefined) => T): Promise<T> {
  const config = await loadHostConfig({ flags });
  if (!existsSync(storeFile(config.dataDir))) return fn(undefined);
  const store = openStore(config.dataDir);
  try {
    return fn(new RunJournal(() => store.runs));
  } finally {
    store.close();
  }
}

function duration(r: { startedAt?: string; endedAt?: string }): number | undefined {
  return r.startedAt && r.endedAt ? Date.parse(r.endedAt) - Date.parse(r.startedAt) : undefined;
}

export function runsLs(io: Io, flags: RunsFlags): Promise<Outcome> {
  if (flags.state !== undefined && !RUN_STATES.includes(flags.state as RunState)) throw usageError(`--state ${JSON.stringify(flags.state)} is not a run state`, `one of ${RUN_STATES.join(', ')}`);
  if (flags.limit !== undefined && !/^\d+$/.test(flags.limit)) throw usageError(`--limit ${JSON.stringify(flags.limit)} is not a count`);
  return withJournal(flags, (journal) => {
    const runs = journal
      ? listRuns(journal, { ...(flags.pipeline ? { pipeline: flags.pipeline } : {}), ...(flags.state ? { state: flags.state as RunState } : {}), limit: flags.limit ? Number(flags.limit) : 50 })
      : [];
    if (!flags.json) {
      if (runs.length === 0) io.out('no runs');
      else {
        io.out(
          table(
            ['ID', 'PIPELINE', 'STATE', 'STAGES', 'CREATED', 'DURATION', 'ERROR'],
            runs.map((r) => [r.id, `${r.pipeline} ${r.version}`, r.state, `${r.stages.filter((s) => s.state === 'succeeded' || s.state === 'compensated').length}/${r.stages.length}`, r.createdAt, seconds(duration(r)), r.error?.code ?? '']),
          ),
        );
      }
    }
    return { code: EXIT.ok, data: { runs } };
  });
}

function stageRow(s: StageRecord): string[] {
  const last = s.attempts.at(-1)?.error;
  const error = s.error ?? last;
  const comp = s.compensation ? ` (compensation ${s.compensation.state}${s.compensation.error ? `: ${s.compensation.error.code}` : ''})` : '';
  return [s.id, s.state, String(s.attempts.length), seconds(s.durationMs), error ? `${error.code}: ${error.message}${comp}` : comp.trim()];
}

export function runsShow(io: Io, id: string, flags: RunsFlags): Promise<Outcome> {
  return withJournal(flags, (journal) => {
    const run = journal ? readRun(journal, id) : undefined;
    if (!run) throw new PlinthError('PLINTH_ERR_RUN_NOT_FOUND', `no pipeline run ${id} in the journal`, { hint: '`plinth runs ls` lists the runs of this data dir' });
    if (!flags.json) {
      io.out(`run ${run.id}: ${run.pipeline} ${run.version} ${run.state}`);
      io.out(`  trigger ${run.trigger.type}, created ${run.createdAt}${run.startedAt ? `, started ${run.startedAt}` : ''}${run.endedAt ? `, ended ${run.endedAt} (${seconds(duration(run))})` : ''}`);
      if (run.file) io.out(`  file ${run.file}`);
      if (run.error) io.out(`  error ${run.error.code}: ${run.error.message}${run.error.hint ? ` (${run.error.hint})` : ''}`);
      io.out('');
      io.out(table(['STAGE', 'STATE', 'ATTEMPTS', 'DURATION', 'ERROR'], run.stages.map(stageRow)));
      const retried = run.stages.filter((s) => s.attempts.length > 1);
      for (const s of retried) {
        io.out(`\n${s.id}: ${s.attempts.length} attempts`);
        for (const a of s.attempts) io.out(`  #${a.attempt} ${a.startedAt}${a.endedAt ? ` → ${a.endedAt}` : ''}${a.error ? `  ${a.error.code}: ${a.error.message}` : ''}`);
      }
      if (run.state === 'interrupted') io.out(`\ninterrupted: \`plinth resume ${run.id}\` goes on from the journal`);
    }
    return { code: EXIT.ok, data: run };
  });
}
