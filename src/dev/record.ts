// `plinth dev --record`: every stage call the host serves (from pipelines, routes, the control channel, `plinth
// call --remote`) is appended to `<extension>/.plinth/recordings/<stage>.jsonl`, one JSON line per call:
//   {"v":1,"time":"…","extension":"greeter","version":"1.0.0","stage":"greet","input":{…},"output":{…}}
// (or "error":{"code","message"} instead of "output"). Inputs are attacker-influenced, so the host bounds them:
// `recordings.maxPerStage` lines per stage and `recordings.maxEntryBytes` per line, each refusal a coded warning.
// `plinth replay` reads these files back (replay.ts).
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PlinthError } from '../errors.ts';
import type { Json } from '../sdk/index.ts';
import type { StageCallRecord } from '../host/index.ts';
import { DEV_FOLDER } from './check.ts';

export const RECORDINGS_FOLDER = 'recordings';
export const RECORDING_VERSION = 1;

export interface RecordingLimits {
  maxPerStage: number;
  maxEntryBytes: number;
}

/** One recorded call, as stored. */
export interface RecordedCall {
  v: number;
  time: string;
  extension: string;
  version: string;
  stage: string;
  input: Json;
  output?: Json;
  error?: { code: string; message: string };
}

export function recordingsDir(extensionDir: string): string {
  return path.join(extensionDir, DEV_FOLDER, RECORDINGS_FOLDER);
}

/**
 * The file of a stage's recordings. A stage name comes from the manifest (the author's, or an attacker's): every
 * byte outside `[A-Za-z0-9_-]` is percent-encoded, so it can never leave the folder or collide with another.
 */
export function recordingFile(extensionDir: string, stage: string): string {
  const safe = [...new TextEncoder().encode(stage)].map((b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`)).join('');
  return path.join(recordingsDir(extensionDir), `${safe.slice(0, 200)}.jsonl`);
}

export interface RecorderOptions {
  dir: string;
  limits: RecordingLimits;
  /** Told of each refusal (a coded warning) and of each call recorded. */
  warn: (err: PlinthError) => void;
  onRecorded?: (call: RecordedCall, file: string) => void;
}

/** Appends the calls of one extension folder's stages to their files, in the order they ended. */
export class Recorder {
  readonly #o: RecorderOptions;
  /** Lines per stage file (counted from the file at its first use, so the cap holds across sessions). */
  readonly #counts = new Map<string, Promise<number>>();
  readonly #full = new Set<string>();
  #queue: Promise<void> = Promise.resolve();

  constructor(options: RecorderOptions) {
    this.#o = options;
  }

  /** Records one call (asynchronously, in order); never throws. */
  record(call: StageCallRecord): void {
    const entry: RecordedCall = {
      v: RECORDING_VERSION,
      time: new Date().toISOString(),
      extension: call.extension,
      version: call.version,
      stage: call.stage,
      input: call.input,
      ...(call.error ? { error: { code: call.error.code, message: call.error.message } } : { output: call.output ?? null }),
    };
    let line: string;
    try {
      line = JSON.stringify(entry) + '\n';
    } catch (err) {
      this.#o.warn(new PlinthError('PLINTH_ERR_RECORDING_TOO_LARGE', `stage ${call.stage}: the call could not be recorded: ${String(err)}`, { extension: call.extension }));
      return;
    }
    const { maxEntryBytes, maxPerStage } = this.#o.limits;
    const bytes = Buffer.byteLength(line);
    if (bytes > maxEntryBytes) {
      this.#o.warn(
        new PlinthError('PLINTH_ERR_RECORDING_TOO_LARGE', `stage ${call.stage}: a call of ${bytes} bytes was not recorded (recordings.maxEntryBytes is ${maxEntryBytes})`, {
          extension: call.extension,
          hint: 'raise recordings.maxEntryBytes in the host config to record larger calls',
        }),
      );
      return;
    }
    const file = recordingFile(this.#o.dir, call.stage);
    this.#queue = this.#queue.then(async () => {
      if (this.#full.has(file)) return;
      let count = this.#counts.get(file);
      if (!count) this.#counts.set(file, (count = countLines(file)));
      const n = await count;
      if (n >= maxPerStage) {
        this.#full.add(file);
        this.#o.warn(
          new PlinthError('PLINTH_ERR_RECORDING_LIMIT', `stage ${call.stage}: ${n} calls are recorded in ${file}, the most recordings.maxPerStage (${maxPerStage}) allows; later calls are not recorded`, {
            extension: call.extension,
            file,
            hint: 'delete or trim the file, or raise recordings.maxPerStage in the host config',
          }),
        );
        return;
      }
      await mkdir(path.dirname(file), { recursive: true });
      await appendFile(file, line);
      this.#counts.set(file, Promise.resolve(n + 1));
      this.#o.onRecorded?.(entry, file);
    }).catch((err: unknown) => this.#o.warn(new PlinthError('PLINTH_ERR_RECORDING_INVALID', `stage ${call.stage}: cannot write ${file}: ${String(err)}`, { extension: call.extension, file })));
  }

  /** Resolves once every call recorded so far is written. */
  flush(): Promise<void> {
    return this.#queue;
  }
}

async function countLines(file: string): Promise<number> {
  try {
    const text = await readFile(file, 'utf8');
    let n = 0;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
    return n;
  } catch {
    return 0;
  }
}
