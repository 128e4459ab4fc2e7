// The extension author's loop (issue 13): `plinth dev` (session.ts: watch, check, reload keeping the last good
// version, logs), `--record` (record.ts) and `plinth replay` (replay.ts), with problems shown at file:line:column.
export { DevSession, loadRunner, locateError, type DevSessionOptions, type ServingEvent, type RejectedEvent } from './session.ts';
export { checkExtension, TypeChecker, DEV_FOLDER, type CheckResult } from './check.ts';
export { codeFrame, where, type DevProblem } from './frame.ts';
export { DevPrinter, useColor } from './log.ts';
export { Recorder, recordingFile, recordingsDir, type RecordedCall, type RecordingLimits } from './record.ts';
export { diffJson, sameJson, shortJson, type JsonChange } from './diff.ts';
export { replay, type ReplayResult, type ReplayEntry } from './replay.ts';
