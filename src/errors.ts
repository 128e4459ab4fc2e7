// One table of coded errors (STYLE.md "Errors people can act on"). Every error names what it concerns
// (extension, file, option path) and what to do; tests assert `code`, never message text.
// docs/errors.md documents every code; test/errors.test.ts keeps the two in step.

export const ERROR_CODES = {
  PLINTH_ERR_CONFIG_INVALID: 'The host configuration (file, PLINTH_* variable or flag) does not match schemas/host-config.schema.json.',
  PLINTH_ERR_CONFIG_UNREADABLE: 'The host configuration file cannot be read or parsed as YAML/JSON.',
  PLINTH_ERR_PLUGIN_DIR_MISSING: 'A configured plugin directory does not exist.',
  PLINTH_ERR_PLUGIN_DIR_UNREADABLE: 'A plugin directory or an extension folder inside it cannot be read.',
  PLINTH_ERR_PACKAGE_JSON_INVALID: "An extension folder's package.json is not valid JSON or cannot be read.",
  PLINTH_ERR_MANIFEST_INVALID: "An extension's package.json / plinth block does not match schemas/extension-manifest.schema.json.",
  PLINTH_ERR_MAIN_NOT_SET: "An extension's package.json has no `main` naming its entry module.",
  PLINTH_ERR_MAIN_NOT_FOUND: "The file named by an extension's `main` does not exist inside its folder.",
  PLINTH_ERR_STAGE_SCHEMA_INVALID: "A stage's input/output schema or the configSchema is not a valid JSON Schema, or exceeds a host limit for extension schemas (`extensionSchemas.*`).",
  PLINTH_ERR_SCHEMA_VALIDATION_LIMIT: "Checking a value against an extension's schema needed more work than `extensionSchemas.maxValidationCost` allows (or the value nests too deeply to check); the value was refused.",
  PLINTH_ERR_DUPLICATE_EXTENSION: 'The extension id is installed more than once and this copy is not the one dependency resolution chose.',
  PLINTH_ERR_SIG_MISSING: 'The extension has no plinth.sig and the trust policy is `required`.',
  PLINTH_ERR_SIG_MALFORMED: 'plinth.sig is not valid JSON or does not match schemas/signature.schema.json.',
  PLINTH_ERR_SIG_INVALID: 'The Ed25519 signature in plinth.sig does not verify against the publisher key.',
  PLINTH_ERR_SIG_FILE_CHANGED: 'A file of the extension differs from the hash recorded in plinth.sig.',
  PLINTH_ERR_SIG_FILE_ADDED: 'A file present in the extension is not listed in plinth.sig.',
  PLINTH_ERR_SIG_FILE_MISSING: 'A file listed in plinth.sig is missing from the extension.',
  PLINTH_ERR_SIG_SYMLINK: 'The extension contains a symbolic link; signed packages must contain regular files only.',
  PLINTH_ERR_PACKAGE_SPECIAL_FILE: 'The extension contains something that is neither a regular file nor a folder (a FIFO, socket or device); signed packages hold regular files only.',
  PLINTH_ERR_PACKAGE_UNREADABLE: 'A file or folder of the extension (plinth.sig included) could not be read while it was verified (permissions, an I/O error).',
  PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER: "The publisher or key in plinth.sig is not in the host's trust store.",
  PLINTH_ERR_SIG_REVOKED_KEY: "The key that signed the extension is revoked in the host's trust store.",
  PLINTH_ERR_SIG_OUT_OF_SCOPE: "The extension's publisher is trusted, but its trust-store entry's `scopes` do not let it sign this id.",
  PLINTH_ERR_PUBLISHER_MISMATCH: "This copy of an extension comes from another publisher than the one its id's data belongs to (or the host config assigns it to).",
  PLINTH_ERR_PUBLISHER_AMBIGUOUS: 'Copies of one id come from several trusted publishers and nothing says which one owns the id.',
  PLINTH_ERR_PUBLISHER_BINDING_INVALID: "The file recording which publisher an id's data belongs to cannot be read or is damaged.",
  PLINTH_ERR_SIG_DUPLICATE_ENTRY: 'plinth.sig names one member twice in an object (e.g. one file listed twice), so readers could disagree on what it signs.',
  PLINTH_ERR_PACKAGE_EMPTY_FOLDER: 'The package holds an empty folder, which a signature (a list of files) cannot cover.',
  PLINTH_ERR_PACKAGE_NAME_CONFLICT: 'Two files or folders of the package differ only in case or Unicode normalization (one file on case-insensitive systems).',
  PLINTH_ERR_PACKAGE_FILE_NAME_INVALID: 'A file or folder name in the package holds a control character (tab, newline, …).',
  PLINTH_ERR_PACKAGE_CHANGED: 'A file of the package was replaced, moved or removed while the host was copying it into its snapshot.',
  PLINTH_ERR_PACKAGE_TOO_LARGE: 'The package has more files or bytes than the host copies into a snapshot (packages.maxFiles / packages.maxMb).',
  PLINTH_ERR_SNAPSHOT_FAILED: "The host could not write the extension's verified snapshot under <dataDir>/snapshots.",
  PLINTH_ERR_TRUST_STORE_INVALID: 'The trust store file cannot be read or does not match schemas/trust-store.schema.json.',
  PLINTH_ERR_KEY_INVALID: 'A key file is not a PEM-encoded Ed25519 key.',
  PLINTH_ERR_FILE_EXISTS: 'Refusing to overwrite an existing file.',
  PLINTH_ERR_USAGE: 'The command line is incomplete or contradictory.',
  PLINTH_ERR_DEPENDENCY_MISSING: 'An extension depends on an extension that is not installed in any plugin directory.',
  PLINTH_ERR_DEPENDENCY_UNSATISFIED: 'No installed version of a dependency satisfies the range an extension asks for.',
  PLINTH_ERR_DEPENDENCY_CONFLICT: 'Extensions need versions of one dependency that no single installed version satisfies together.',
  PLINTH_ERR_DEPENDENCY_CYCLE: 'Extensions depend on each other in a cycle; none of them can start first.',
  PLINTH_ERR_DEPENDENCY_FAILED: 'A dependency of the extension failed (its reason is attached), so the extension cannot start.',
  PLINTH_ERR_HOST_VERSION_UNSUPPORTED: "The extension's engines.plinth range does not include this host's API version.",
  PLINTH_ERR_LOCKFILE_INVALID: 'plinth.lock.json cannot be read or does not match schemas/lockfile.schema.json.',
  PLINTH_ERR_LOCKFILE_DRIFT: 'With --frozen-lockfile, an extension differs from plinth.lock.json (version, path or contents).',
  PLINTH_ERR_EXTENSION_NOT_FOUND: 'No loaded extension has that id.',
  PLINTH_ERR_EXTENSION_UNAVAILABLE: 'The extension is not active (failed, stopped, or restarting past the call timeout).',
  PLINTH_ERR_EXTENSION_LOAD_FAILED: "The extension's module could not be loaded, or its initialize()/start() threw.",
  PLINTH_ERR_EXTENSION_CONFIG_INVALID: "The extension's config in the host configuration does not match its configSchema.",
  PLINTH_ERR_RUNTIME_NOT_ALLOWED: 'The extension asks for a runtime its trust status does not allow (untrusted code runs only as isolate).',
  PLINTH_ERR_RUNTIME_UNSUPPORTED: 'The extension asks for a runtime this host does not run from a plugin folder (a `remote` extension joins by registering a runner over the control channel).',
  PLINTH_ERR_IMPORT_REFUSED: 'Isolate extension code imported something other than a relative file inside its own package.',
  PLINTH_ERR_STAGE_UNKNOWN: 'The extension does not declare or export that stage.',
  PLINTH_ERR_STAGE_INPUT_INVALID: "A stage's input does not match the input schema its manifest declares.",
  PLINTH_ERR_STAGE_OUTPUT_INVALID: "A stage's output does not match the output schema its manifest declares.",
  PLINTH_ERR_STAGE_FAILED: 'The extension code threw an error (its own stack is attached).',
  PLINTH_ERR_STAGE_TIMEOUT: 'A call ran past its timeout; the code running it was stopped.',
  PLINTH_ERR_CPU_LIMIT: 'A call used more CPU time than allowed; the isolate running it was stopped.',
  PLINTH_ERR_OUT_OF_MEMORY: 'The extension exceeded its memory limit; its sandbox was replaced.',
  PLINTH_ERR_SANDBOX_CRASHED: "The extension's sandbox (thread or process) exited during the call; it is being restarted.",
  PLINTH_ERR_RESULT_TOO_LARGE: 'A value crossing the sandbox boundary is larger than the allowed size.',
  PLINTH_ERR_PERMISSION_DENIED: "The extension used something its manifest's permissions do not grant.",
  PLINTH_ERR_PERMISSION_NOT_APPROVED: "An untrusted extension asks for permissions beyond the host's policy.untrusted ceiling that extensions.<id>.allow does not approve.",
  PLINTH_ERR_FETCH_REDIRECT_LIMIT: 'A ctx.fetch was redirected more times than `quotas.fetch.maxRedirects` allows; it was not followed further.',
  PLINTH_ERR_FETCH_CIRCUIT_OPEN: 'Requests from this extension to this origin kept failing, so ctx.fetch fails at once until `policy.fetchBreaker.recoveryTimeoutMs` has passed.',
  PLINTH_ERR_QUOTA_EXCEEDED: 'The extension went past one of its host quotas (quotas.* in the host config: fetch, kv, fs, log).',
  PLINTH_ERR_TOPIC_RESERVED: 'An extension tried to publish on a topic only the host publishes on (extension.*, pipeline.*, host.*).',
  PLINTH_ERR_EXTENSION_ID_RESERVED: 'The extension id is one the host uses itself (the event source "host").',
  PLINTH_ERR_CIRCUIT_OPEN: "The extension's circuit breaker is open after repeated failures: calls fail fast until it recovers.",
  PLINTH_ERR_BUDGET_EXCEEDED: "Starting the extension would exceed the host's memory or concurrency budget.",
  PLINTH_ERR_CANCELLED: 'The caller cancelled the call (e.g. its pipeline run was cancelled).',
  PLINTH_ERR_EVENT_REJECTED: 'A middleware around publish rejected the event (or produced an invalid topic); it was not published.',
  PLINTH_ERR_EXPRESSION_INVALID: 'An expression (route filter or transform, rule condition or key) does not parse, is too large, or uses an unknown variable.',
  PLINTH_ERR_PIPELINE_INVALID: 'A pipeline definition was refused before anything ran: its `issues` give each problem with its path, line and what to fix.',
  PLINTH_ERR_EXPRESSION_FAILED: 'Evaluating an expression failed on an event (a missing field, a type mismatch); the event did not pass it.',
  PLINTH_ERR_ROUTE_FAILED: "A route's filter or transform failed on an event, so the event was not routed (the original event is unaffected).",
  PLINTH_ERR_ROUTE_HOPS_EXCEEDED: 'An event passed through more routes and rules than events.maxHops allows (a loop of routes or rules); it was not forwarded.',
  PLINTH_ERR_CEP_STATE_LIMIT: 'A complex-event rule reached its state bound (events.cep.maxKeys / maxEventsPerKey / maxEvents, or the rule\'s limits); the oldest state was dropped.',
  PLINTH_ERR_SHUTDOWN: 'The host or the extension is shutting down; the call was not run.',
  PLINTH_ERR_STORE_INVALID: 'The store file in the data dir is not a Plinth store or is corrupt; it was left untouched.',
  PLINTH_ERR_STORE_NEWER: 'The store file was written by a newer Plinth (a higher store version than this one knows).',
  PLINTH_ERR_STORE_FAILED: 'A write to the store failed (disk full, I/O error); the event was not published.',
  PLINTH_ERR_EVENT_TOO_LARGE: "An event's payload is larger than `events.maxPayloadBytes` (default 1 MiB).",
  PLINTH_ERR_EVENT_DELIVERY_TIMEOUT: 'A subscriber\'s handler did not return within `events.deliveryTimeout`: the attempt counts as failed (retried, then dead-lettered), so a handler that never returns cannot hold its delivery pending forever.',
  PLINTH_ERR_EVENT_QUEUE_FULL: 'A subscriber already has `events.maxQueuedPerSubscriber` events waiting: the publish was refused (nothing stored) so memory stays bounded.',
  PLINTH_ERR_EVENT_TOPIC_INVALID: 'A topic or topic pattern is not dot-separated words (`*` and `#` only in patterns).',
  PLINTH_ERR_EVENT_HEADERS_INVALID: "An event's headers are not string values, or too many or too long (32 headers, 1 KiB each).",
  PLINTH_ERR_DEAD_LETTER_NOT_FOUND: 'No dead letter has that id (replayed, purged or expired after `events.deadLetterTtl`).',
  PLINTH_ERR_SUBSCRIBE_NOT_GRANTED: "A pattern in the manifest's `subscribes` is not covered by any `permissions.events.subscribe` grant; the extension does not start.",
  PLINTH_ERR_LIMIT_ABOVE_CEILING: "An extension's manifest declares a limit (or a stage timeout) above the host's ceiling for it; the extension is not started.",
  PLINTH_ERR_HOST_NOT_STARTED: 'The host was asked for an extension or a call before start() finished loading it.',
  PLINTH_ERR_LINK_PROTOCOL: 'The other end of a JSON-RPC link (a sandbox process, a runner) answered with a protocol error (unknown method, invalid request) instead of a result.',
  PLINTH_ERR_CALL_OPTIONS_INVALID: "A call's options are not valid (e.g. a timeout that is not a positive finite number of milliseconds); nothing ran.",
  PLINTH_ERR_PIPELINE_TIMEOUT: "A pipeline run did not finish within the pipeline's overall `timeout`; its running stages were cancelled and compensations ran.",
  PLINTH_ERR_RUN_NOT_FOUND: 'No pipeline run in the journal has that id.',
  PLINTH_ERR_RUN_NOT_RESUMABLE: 'The run cannot be resumed: it has ended, or it is still running in a live process.',
  PLINTH_ERR_RUN_QUEUE_FULL: "A pipeline already has `pipelines.maxQueuedRuns` runs waiting for its `concurrency` limit; the new run was not started.",
  PLINTH_ERR_INTERNAL: 'The host failed in a way it did not expect while serving a request (a bug: the message and the host log say where).',
  PLINTH_ERR_RPC_PARAMS_INVALID: "A control-channel request's params do not match the method's schema in schemas/rpc/ (JSON-RPC -32602; `problems` gives the path).",
  PLINTH_ERR_RPC_FORBIDDEN: "The control-channel token's role may not call that method (client: no reload/enable/disable/purge; runner: only runner methods).",
  PLINTH_ERR_RPC_RATE_LIMITED: 'The connection sent more messages than `control.rateLimit` allows; the message was refused (the connection is closed if it goes on).',
  PLINTH_ERR_RPC_TOO_MANY_REQUESTS: 'The connection already has `control.maxConcurrentRequests` requests in flight; the request was refused.',
  PLINTH_ERR_RPC_UNAVAILABLE: 'The control channel cannot serve that method here (e.g. no pipeline engine in this host).',
  PLINTH_ERR_CONTROL_UNREACHABLE: 'No host answers at the control-channel URL (none is running, or it listens elsewhere).',
  PLINTH_ERR_CONTROL_AUTH: 'The running host refused the token (HTTP 401) or the origin (403), or the token file cannot be read.',
  PLINTH_ERR_CONTROL_BIND_REFUSED: 'The control channel would listen on a non-loopback address without TLS or with the generated token; refused unless `control.allowInsecure`.',
  PLINTH_ERR_CONTROL_LISTEN_FAILED: 'The control channel could not listen on its address and port (in use, or not allowed).',
  PLINTH_ERR_SUBSCRIPTION_NOT_FOUND: 'No subscription of this connection has that id (already unsubscribed, or made on another connection).',
  PLINTH_ERR_WEBHOOK_NOT_FOUND: 'No pipeline declares a webhook trigger with that name.',
  PLINTH_ERR_WEBHOOK_REFUSED: 'A webhook delivery was refused: no valid token or X-Hub-Signature-256, a replayed delivery id, or a body over `control.hooks.maxBodyBytes`.',
  PLINTH_ERR_EXTENSION_NAME_INVALID: '`plinth new` was given a name that is not a valid npm package name (lower case, URL-safe, at most 214 characters, optionally @scope/name) or not a valid extension id.',
  PLINTH_ERR_TARGET_NOT_EMPTY: '`plinth new` would write into a folder that already exists and is not empty; nothing was written.',
  PLINTH_ERR_REMOTE_DISABLED: 'A runner tried to register, but this host accepts no remote runners (`sandbox.remote: off`).',
  PLINTH_ERR_RUNNER_REFUSED: 'A runner.register was refused: its manifest is not a remote-capable extension package, the connection already registered, or the id is disabled or served by a dropped-in copy (the message says which).',
  PLINTH_ERR_RUNNER_VERSION_MISMATCH: "A runner offers another version (or another manifest) of an extension whose pool already has connected runners; a pool is one extension id and version.",
  PLINTH_ERR_RUNNER_DISCONNECTED: "The runner serving the call disconnected before it answered, or no runner of the remote extension is connected; retryable (the extension is degraded until a runner reconnects).",
  PLINTH_ERR_RUNNER_NOT_REGISTERED: 'A runner sent a runner request (ctx, runner.drain) on a connection that has not registered an extension.',
  PLINTH_ERR_RECORDING_LIMIT: 'A stage already has `recordings.maxPerStage` recorded calls; `plinth dev --record` records no more of it (logged once per stage).',
  PLINTH_ERR_RECORDING_TOO_LARGE: 'A stage call (its input and output as one JSON line) is larger than `recordings.maxEntryBytes`; it was not recorded.',
  PLINTH_ERR_RECORDING_INVALID: 'A line of a recording file is not a recorded call (not JSON, not the recording shape, or longer than `recordings.maxEntryBytes`); `plinth replay` skips it and names file:line.',
  PLINTH_ERR_DEV_ALREADY_RUNNING: 'Another `plinth dev` (a live process) already serves that extension folder with the same data dir; a data dir belongs to one host at a time.',
  PLINTH_ERR_DEV_BUILD_FAILED: "`plinth dev`: the extension's `npm run build` exited non-zero or ran past `ceilings.startTimeoutMs`; the last version that built keeps serving.",
  PLINTH_ERR_DEV_REMOTE_UNAVAILABLE: '`plinth dev --url` (or a running host) needs the remote runner (`runExtension` in src/sdk/runner.ts), which this build does not have.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One problem of a schema validation: where it is and how to fix it. */
export interface Problem {
  /** JSON Pointer into the validated document, e.g. `/plinth/stages/parse/input`. */
  path: string;
  message: string;
  hint?: string;
}

export interface PlinthErrorOptions {
  /** Extension id (package name) the error concerns. */
  extension?: string;
  /** File or folder the error concerns. */
  file?: string;
  /** What the user should do about it. */
  hint?: string;
  problems?: Problem[];
  /** Stack trace from inside the extension (never the host's), when its code threw. */
  extensionStack?: string;
  cause?: unknown;
}

export class PlinthError extends Error {
  readonly code: ErrorCode;
  readonly extension: string | undefined;
  readonly file: string | undefined;
  readonly hint: string | undefined;
  readonly problems: Problem[];
  readonly extensionStack: string | undefined;

  constructor(code: ErrorCode, message: string, options: PlinthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PlinthError';
    this.code = code;
    this.extension = options.extension;
    this.file = options.file;
    this.hint = options.hint;
    this.problems = options.problems ?? [];
    this.extensionStack = options.extensionStack;
  }

  /** Rebuilds an error that crossed a process or thread boundary as `toJSON()` data. */
  static fromJSON(data: unknown): PlinthError {
    const d = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
    const code = typeof d.code === 'string' && d.code in ERROR_CODES ? (d.code as ErrorCode) : 'PLINTH_ERR_STAGE_FAILED';
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const options: PlinthErrorOptions = {};
    if (str(d.extension) !== undefined) options.extension = str(d.extension)!;
    if (str(d.file) !== undefined) options.file = str(d.file)!;
    if (str(d.hint) !== undefined) options.hint = str(d.hint)!;
    if (str(d.extensionStack) !== undefined) options.extensionStack = str(d.extensionStack)!;
    if (Array.isArray(d.problems)) options.problems = d.problems as Problem[];
    return new PlinthError(code, str(d.message) ?? code, options);
  }

  /** Plain data for `--json` output and, later, JSON-RPC `error.data`. */
  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      ...(this.extension === undefined ? {} : { extension: this.extension }),
      ...(this.file === undefined ? {} : { file: this.file }),
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.problems.length === 0 ? {} : { problems: this.problems }),
      ...(this.extensionStack === undefined ? {} : { extensionStack: this.extensionStack }),
    };
  }

  /** Multi-line text for people: the message, each problem with its path and hint, then the hint. */
  describe(): string {
    const lines = [`${this.code}: ${this.message}`];
    for (const p of this.problems) lines.push(`  - ${p.path || '/'}: ${p.message}${p.hint ? ` (${p.hint})` : ''}`);
    if (this.hint) lines.push(`  hint: ${this.hint}`);
    if (this.extensionStack) lines.push(...this.extensionStack.split('\n').map((l) => `  | ${l}`));
    return lines.join('\n');
  }
}

export function isPlinthError(err: unknown): err is PlinthError {
  return err instanceof PlinthError;
}
