// `plinth replay <dir> [--stage s]`: every recorded call (record.ts) runs again against the extension's current
// code, in a real sandbox of an embedded host (dev trust policy, a fresh temp data dir so kv and files start
// empty and a replay changes nothing of the dev session's data), and its output is compared with the recorded
// one. The recordings are attacker-influenced input: each line is bounded by `recordings.maxEntryBytes` and must
// have the recorded shape, else it is skipped as PLINTH_ERR_RECORDING_INVALID naming file:line.
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { HostConfig } from '../config/index.ts';
import { Host } from '../host/index.ts';
import type { Json } from '../sdk/index.ts';
import { removeTree } from '../snapshot/index.ts';
import { checkExtension } from './check.ts';
import { diffJson, sameJson, type JsonChange } from './diff.ts';
import type { DevProblem } from './frame.ts';
import { recordingFile, recordingsDir, type RecordedCall } from './record.ts';
import { devPluginDir } from './session.ts';

/** One recorded call replayed. `status`: `same` output (or the same error code), `changed`, or it `failed` now / `fixed` now. */
export interface ReplayEntry {
  file: string;
  line: number;
  stage: string;
  time: string;
  status: 'same' | 'changed' | 'failed' | 'fixed' | 'still-failing';
  recorded: { output?: Json; error?: { code: string; message: string } };
  now: { output?: Json; error?: { code: string; message: string } };
  changes: JsonChange[];
  more: number;
}

export interface ReplayResult {
  extension: string;
  version: string;
  entries: ReplayEntry[];
  /** Lines that are not recorded calls (PLINTH_ERR_RECORDING_INVALID), and why the extension could not start. */
  problems: DevProblem[];
  counts: { same: number; changed: number; invalid: number };
}

export interface ReplayOptions {
  dir: string;
  config: HostConfig;
  logger: Logger;
  /** Only this stage's recordings. */
  stage?: string;
}

function isRecorded(v: unknown): v is RecordedCall {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const r = v as Record<string, unknown>;
  const err = r.error as Record<string, unknown> | undefined;
  return typeof r.stage === 'string' && Object.hasOwn(r, 'input') && (Object.hasOwn(r, 'output') || (typeof err === 'object' && err !== null && typeof err.code === 'string'));
}

/**
 * The lines of a file, each at most `maxBytes` (a longer one is reported as `tooLong` and never held in memory
 * whole), at most `maxLines` of them.
 */
async function* boundedLines(file: string, maxBytes: number): AsyncGenerator<{ n: number; text?: string; tooLong?: boolean }> {
  const input = createReadStream(file, { highWaterMark: 64 * 1024 });
  let parts: Buffer[] = [];
  let size = 0;
  let skipping = false;
  let n = 0;
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let from = 0;
      for (let nl = chunk.indexOf(10, from); ; nl = chunk.indexOf(10, from)) {
        const end = nl === -1 ? chunk.length : nl;
        if (!skipping) {
          size += end - from;
          if (size > maxBytes) {
            skipping = true;
            parts = [];
          } else parts.push(chunk.subarray(from, end));
        }
        if (nl === -1) break;
        n++;
        yield skipping ? { n, tooLong: true } : { n, text: Buffer.concat(parts).toString('utf8') };
        parts = [];
        size = 0;
        skipping = false;
        from = nl + 1;
      }
    }
    if (skipping || size > 0) yield skipping ? { n: n + 1, tooLong: true } : { n: n + 1, text: Buffer.concat(parts).toString('utf8') };
  } finally {
    input.destroy();
  }
}

/** The recorded calls of one file, each line bounded; bad lines become problems naming file:line. */
async function readRecordings(file: string, limits: { maxEntryBytes: number; maxPerStage: number }, problems: DevProblem[]): Promise<Array<{ line: number; call: RecordedCall }>> {
  const out: Array<{ line: number; call: RecordedCall }> = [];
  const invalid = (line: number, why: string) =>
    problems.push({ code: 'PLINTH_ERR_RECORDING_INVALID', message: `not a recorded call: ${why}`, file, line, column: 1, hint: 'delete the line (or the file) and record again with plinth dev --record' });
  for await (const { n, text, tooLong } of boundedLines(file, limits.maxEntryBytes)) {
    if (tooLong) {
      invalid(n, `the line is longer than recordings.maxEntryBytes (${limits.maxEntryBytes} bytes)`);
      continue;
    }
    if (text === undefined || text.trim() === '') continue;
    if (out.length >= limits.maxPerStage) {
      problems.push({ code: 'PLINTH_ERR_RECORDING_LIMIT', message: `more than recordings.maxPerStage (${limits.maxPerStage}) recorded calls: the rest of the file is not replayed`, file, line: n, column: 1, hint: 'trim the file, or raise recordings.maxPerStage in the host config' });
      break;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      invalid(n, `not JSON (${(err as Error).message})`);
      continue;
    }
    if (!isRecorded(value)) {
      invalid(n, 'it needs "stage", "input", and "output" or "error"');
      continue;
    }
    out.push({ line: n, call: value });
  }
  return out;
}

/** Runs the recordings against the current code; see the file comment. */
export async function replay(options: ReplayOptions): Promise<ReplayResult> {
  const { config, logger } = options;
  const dir = path.resolve(options.dir);
  const check = await checkExtension(dir, { schemaLimits: config.extensionSchemas, maxFiles: config.packages.maxFiles });
  if (!check.pkg || check.problems.length > 0) {
    throw Object.assign(new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `${dir}: the extension has ${check.problems.length} problem(s); fix them before replaying`, { file: check.problems[0]?.file ?? dir }), { devProblems: check.problems });
  }
  const pkg = check.pkg;
  const folder = recordingsDir(dir);
  let files: string[];
  if (options.stage !== undefined) files = [recordingFile(dir, options.stage)];
  else {
    try {
      files = (await readdir(folder)).filter((f) => f.endsWith('.jsonl')).sort().map((f) => path.join(folder, f));
    } catch {
      files = [];
    }
  }
  const problems: DevProblem[] = [];
  const calls: Array<{ file: string; line: number; call: RecordedCall }> = [];
  for (const file of files) {
    let list: Array<{ line: number; call: RecordedCall }>;
    try {
      list = await readRecordings(file, config.recordings, problems);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const c of list) if (options.stage === undefined || c.call.stage === options.stage) calls.push({ file, ...c });
  }
  const result: ReplayResult = { extension: pkg.id, version: pkg.version, entries: [], problems, counts: { same: 0, changed: 0, invalid: problems.length } };
  if (calls.length === 0) return result;

  const { pluginDir, linked, link } = await devPluginDir(dir);
  await link();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'plinth-replay-'));
  const host = new Host({ ...config, plugins: [pluginDir], dataDir }, { logger, devFolders: new Set([linked]) });
  try {
    await host.start();
    if (!host.get(pkg.id)) {
      const entry = host.list().find((e) => e.id === pkg.id);
      throw new PlinthError('PLINTH_ERR_EXTENSION_LOAD_FAILED', `${pkg.id} ${pkg.version} did not start: ${typeof entry?.reason?.message === 'string' ? entry.reason.message : 'see the log'}`, { extension: pkg.id, file: dir });
    }
    for (const { file, line, call } of calls) {
      const now: ReplayEntry['now'] = {};
      try {
        now.output = await host.call(pkg.id, call.stage, call.input);
      } catch (err) {
        now.error = isPlinthError(err) ? { code: err.code, message: err.message } : { code: 'PLINTH_ERR_INTERNAL', message: String(err) };
      }
      const recorded: ReplayEntry['recorded'] = call.error ? { error: call.error } : { output: call.output ?? null };
      let status: ReplayEntry['status'];
      let diff: { changes: JsonChange[]; more: number } = { changes: [], more: 0 };
      if (recorded.error && now.error) status = recorded.error.code === now.error.code ? 'same' : 'still-failing';
      else if (recorded.error) status = 'fixed';
      else if (now.error) status = 'failed';
      else if (sameJson(recorded.output, now.output)) status = 'same';
      else {
        status = 'changed';
        diff = diffJson(recorded.output, now.output);
      }
      if (status === 'same') result.counts.same++;
      else result.counts.changed++;
      result.entries.push({ file, line, stage: call.stage, time: typeof call.time === 'string' ? call.time : '', status, recorded, now, changes: diff.changes, more: diff.more });
    }
  } finally {
    await host.stop();
    await rm(pluginDir, { recursive: true, force: true });
    await removeTree(dataDir).catch(() => undefined);
  }
  return result;
}
