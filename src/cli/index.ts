// The `plinth` command line (docs/design.md "CLI"). Each command returns its exit code — 0 ok, 1 failed, 2 usage
// or configuration error — and its result; with `--json` the result is printed in one envelope for every command
// (output.ts). Errors print their PLINTH_ERR_* code and what to do on stderr.
import { Command, CommanderError, Option } from 'commander';
import { loadHostConfig, type ConfigFlags } from '../config/index.ts';
import { EXIT, printEnvelope, processIo, reportError, usageError, type Io, type Outcome } from './output.ts';
import { ls } from './commands/ls.ts';
import { LOG_FORMATS } from './log.ts';
import { keygen, sign, verify } from './commands/trust.ts';
import { call, type CallFlags } from './commands/call.ts';
import { serve, lock, type ServeFlags } from './commands/serve.ts';
import { validate } from './commands/validate.ts';
import { dlqRemote, hostServing, status, lsRemote, callRemote, emit, subscribe, logsFollow, reload, runs as runsRemote, runRemote, parseJsonArg, type RemoteFlags } from './commands/remote.ts';
import { dlqLs, dlqShow, dlqReplay, dlqPurge, type DlqFlags } from './commands/dlq.ts';
import { dev, replayCommand, type DevFlags, type ReplayFlags } from './commands/dev.ts';
import { run as runPipeline, resume as resumeRun, runsLs, runsShow, type RunFlags, type RunsFlags } from './commands/run.ts';
import { newExtension, LANGS, RUNTIMES, type NewFlags } from './commands/new.ts';

const list = (value: string, previous: string[] = []) => [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)];

interface HostOptions {
  config?: string;
  plugins?: string[];
  trust?: string;
  trustPolicy?: string;
  dev?: boolean;
  dataDir?: string;
  json?: boolean;
}

function hostFlags(o: HostOptions): ConfigFlags & { json?: boolean } {
  const flags: ConfigFlags & { json?: boolean } = {};
  if (o.config !== undefined) flags.config = o.config;
  if (o.plugins !== undefined) flags.plugins = o.plugins;
  if (o.trust !== undefined) flags.trustStore = o.trust;
  if (o.trustPolicy !== undefined) flags.trustPolicy = o.trustPolicy;
  if (o.dev !== undefined) flags.dev = o.dev;
  if (o.dataDir !== undefined) flags.dataDir = o.dataDir;
  if (o.json !== undefined) flags.json = o.json;
  return flags;
}

interface RemoteOptions {
  url?: string;
  token?: string;
}

/** --url and --token of the commands that talk to a running host (README "Control channel"). */
function withRemoteOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'control channel of the running host (default: from <dataDir>/serve.json, else ws://127.0.0.1:7420/rpc)')
    .option('--token <token>', 'its token (default: PLINTH_TOKEN, else <dataDir>/token)');
}

function remoteFlags(o: HostOptions & RemoteOptions): RemoteFlags {
  const flags: RemoteFlags = hostFlags(o);
  if (o.url !== undefined) flags.url = o.url;
  if (o.token !== undefined) flags.token = o.token;
  return flags;
}

const remoteCommand = (cmd: Command) => withRemoteOptions(cmd.option('-c, --config <file>', 'host config file (for the data dir)').option('--data-dir <dir>', "the running host's data dir (serve.json, token)").option('--json', 'print JSON for scripts'));

function logFormatOption(): Option {
  return new Option('--log-format <format>', 'log lines on stderr as text or JSON (default: text on a terminal, JSON otherwise; --json implies json)').choices(LOG_FORMATS);
}

function withHostOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'host config file (default: ./plinth.config.yaml if present)')
    .option('-p, --plugins <dirs>', 'plugin directories, comma-separated, searched in order', list)
    .option('--trust <file>', 'trust store (JSON, schemas/trust-store.schema.json)')
    .addOption(new Option('--trust-policy <policy>', 'what to do with unsigned or untrusted extensions').choices(['required', 'warn', 'off']))
    .option('--dev', 'development mode (trust policy defaults to warn)')
    .option('--data-dir <dir>', 'where the host keeps its state and extension data (default .plinth)')
    .option('--json', 'print JSON for scripts');
}

export { VERSION } from './version.ts';
import { VERSION } from './version.ts';

function countFlag(name: string, value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw usageError(`${name} must be a positive count, got ${value}`);
  return Number(value);
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let code: number = EXIT.ok;
  let json = false;
  let command = 'plinth';
  const run = (fn: () => Promise<Outcome>) => async () => {
    const outcome = await fn();
    code = outcome.code;
    // A stream (subscribe, logs -f) printed its JSON lines as they came: no envelope after them.
    if (json && !(outcome as { stream?: boolean }).stream) printEnvelope(io, { ok: code === EXIT.ok, command, data: outcome.data ?? null, error: outcome.error ?? null });
  };

  const program = new Command('plinth')
    .description('Plinth plugin host: signed drop-in extensions, sandboxed, in pipelines and on an event bus.')
    .version(VERSION, '-V, --version', 'print the plinth version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .showHelpAfterError('(run `plinth help <command>` for its options)');
  // Every subcommand's --json applies to the errors it ends with too.
  program.hook('preAction', (_program, action) => {
    // A subcommand of a group (`dlq ls`) is named with its group.
    const parent = action.parent;
    command = parent && parent !== program ? `${parent.name()} ${action.name()}` : action.name();
    json = action.opts<{ json?: boolean }>().json ?? false;
  });

  withRemoteOptions(withHostOptions(program.command('ls').description('list the extensions of the plugin directories with their state (--remote: of the running host)')).option('--remote', 'ask the running host (plinth serve) instead of scanning the plugin directories')).action(function (this: Command) {
    const o = this.opts<HostOptions & RemoteOptions & { remote?: boolean }>();
    return run(() => (o.remote ? lsRemote(io, remoteFlags(o)) : ls(io, hostFlags(o))))();
  });

  program
    .command('keygen')
    .description('make an Ed25519 key pair: <prefix>.key (private, mode 0600) and <prefix>.pub')
    .requiredOption('-o, --out <prefix>', 'path prefix of the two key files')
    .option('-f, --force', 'overwrite existing key files')
    .option('--json', 'print JSON for scripts')
    .action(function (this: Command) {
      const o = this.opts<{ out: string; force?: boolean; json?: boolean }>();
      return run(() => keygen(io, o))();
    });

  program
    .command('sign')
    .description('sign an extension folder: writes <dir>/plinth.sig over every other file')
    .argument('<dir>', 'extension folder')
    .option('-k, --key <file>', 'private key file (<prefix>.key from `plinth keygen`)')
    .option('--publisher <id>', 'publisher id, as listed in trust stores')
    .option('-f, --force', 'sign even if the manifest is invalid (it will be refused wherever it is installed)')
    .option('--json', 'print JSON for scripts')
    .action(function (this: Command, dir: string) {
      const o = this.opts<{ key?: string; publisher?: string; force?: boolean; json?: boolean }>();
      return run(() => sign(io, dir, o))();
    });

  withHostOptions(
    program
      .command('verify')
      .description("verify an extension folder's signature against a trust store; exit 1 naming the file at fault")
      .argument('<dir>', 'extension folder'),
  ).action(function (this: Command, dir: string) {
    const o = this.opts<HostOptions>();
    return run(() => verify(io, dir, hostFlags(o)))();
  });

  withHostOptions(
    program
      .command('call')
      .description('run one stage of an extension in an embedded host and print its output JSON')
      .argument('<extension>', 'extension id (package name)')
      .argument('<stage>', 'stage name')
      .option('-i, --input <json>', 'stage input as JSON (default {})')
      .option('--input-file <file>', 'read the input JSON from a file, or - for standard input')
      .option('-t, --timeout <ms>', 'call timeout in milliseconds (default: the stage\'s own)')
      .option('-v, --verbose', 'log the host\'s lifecycle to stderr')
      .option('--remote', 'call it in the running host (plinth serve) over the control channel')
      .option('--url <url>', 'with --remote: the control channel URL')
      .option('--token <token>', 'with --remote: the token')
      .addOption(logFormatOption()),
  ).action(function (this: Command, extension: string, stage: string) {
    const o = this.opts<HostOptions & RemoteOptions & { input?: string; inputFile?: string; timeout?: string; verbose?: boolean; logFormat?: string; remote?: boolean }>();
    if (o.remote) {
      if (o.inputFile !== undefined) throw usageError('--input-file is not supported with --remote yet', 'pass the JSON with --input');
      const timeout = o.timeout === undefined ? undefined : Number(o.timeout);
      if (timeout !== undefined && !(Number.isInteger(timeout) && timeout > 0)) throw usageError(`--timeout must be a positive number of milliseconds, got ${o.timeout}`);
      return run(() => callRemote(io, extension, stage, o.input === undefined ? {} : parseJsonArg('--input', o.input), timeout, remoteFlags(o)))();
    }
    const flags: CallFlags = { ...hostFlags(o) };
    if (o.input !== undefined) flags.input = o.input;
    if (o.inputFile !== undefined) flags.inputFile = o.inputFile;
    if (o.timeout !== undefined) flags.timeout = o.timeout;
    if (o.verbose !== undefined) flags.verbose = o.verbose;
    if (o.logFormat !== undefined) flags.logFormat = o.logFormat;
    return run(() => call(io, extension, stage, flags))();
  });

  const serveFlags = (o: HostOptions & { frozenLockfile?: boolean; lockfile?: string; watch?: boolean; stopTimeout?: string; logFormat?: string }): ServeFlags => {
    const flags: ServeFlags = { ...hostFlags(o) };
    if (o.logFormat !== undefined) flags.logFormat = o.logFormat;
    if (o.frozenLockfile !== undefined) flags.frozenLockfile = o.frozenLockfile;
    if (o.lockfile !== undefined) flags.lockfile = o.lockfile;
    if (o.watch !== undefined) flags.watch = o.watch;
    if (o.stopTimeout !== undefined) flags.stopTimeout = o.stopTimeout;
    return flags;
  };

  withHostOptions(
    program
      .command('serve')
      .description('run the host over the plugin directories, hot-reloading them, until SIGINT/SIGTERM')
      .option('--frozen-lockfile', 'refuse extensions that drift from plinth.lock.json')
      .option('--lockfile <file>', 'lockfile path (default: plinth.lock.json beside the config file, or in the working directory)')
      .option('--no-watch', 'do not watch the plugin directories')
      .option('--stop-timeout <ms>', 'how long each extension may take to stop (default 10000)')
      .option('--host <address>', 'control channel address (default 127.0.0.1; control.host)')
      .option('--port <port>', 'control channel port (default 7420; 0: any free port, printed and written to <dataDir>/serve.json)')
      .option('--allow-insecure', 'allow a non-loopback --host without TLS or with the generated token (control.allowInsecure)')
      .addOption(logFormatOption()),
  ).action(function (this: Command) {
    const o = this.opts<HostOptions & { frozenLockfile?: boolean; lockfile?: string; watch?: boolean; stopTimeout?: string; logFormat?: string; host?: string; port?: string; allowInsecure?: boolean }>();
    const flags = serveFlags(o);
    if (o.host !== undefined) flags.host = o.host;
    if (o.port !== undefined) flags.port = o.port;
    if (o.allowInsecure) flags.allowInsecure = true;
    return run(() => serve(io, flags))();
  });

  withHostOptions(
    program
      .command('lock')
      .description('resolve the plugin directories and write plinth.lock.json (id → version, path, digest)')
      .option('--lockfile <file>', 'lockfile path (default: plinth.lock.json beside the config file, or in the working directory)'),
  ).action(function (this: Command) {
    const o = this.opts<HostOptions & { lockfile?: string }>();
    return run(() => lock(io, serveFlags(o)))();
  });

  withHostOptions(
    program
      .command('validate')
      .description('check a pipeline file (YAML or JSON) against the extensions of the plugin directories; runs nothing. Exit 3 if invalid')
      .argument('<file>', 'pipeline file, e.g. pipelines/quick-start.yaml')
      .option('--var <name=value>', 'also check a run variable against its schema (repeatable)', (v: string, prev: string[] = []) => [...prev, v]),
  ).action(function (this: Command, file: string) {
    const o = this.opts<HostOptions & { var?: string[] }>();
    return run(() => validate(io, file, { ...hostFlags(o), ...(o.var ? { vars: o.var } : {}) }))();
  });

  // Commands against a running host (the control channel).
  remoteCommand(program.command('status').description('what the running host runs: extensions, states, breakers, restarts')).action(function (this: Command) {
    return run(() => status(io, remoteFlags(this.opts())))();
  });
  remoteCommand(
    program
      .command('emit')
      .description('publish an event on the running host\'s bus')
      .argument('<topic>', 'topic, e.g. orders.created')
      .argument('<json>', 'payload JSON')
      .option('--header <name=value>', 'an event header (repeatable)', (v: string, prev: string[] = []) => [...prev, v]),
  ).action(function (this: Command, topic: string, payload: string) {
    const o = this.opts<HostOptions & RemoteOptions & { header?: string[] }>();
    const headers = o.header?.length ? Object.fromEntries(o.header.map((h) => { const i = h.indexOf('='); if (i <= 0) throw usageError(`--header ${h}: write name=value`); return [h.slice(0, i), h.slice(i + 1)]; })) : undefined;
    return run(() => emit(io, topic, parseJsonArg('the payload', payload), headers, remoteFlags(o)))();
  });
  remoteCommand(
    program
      .command('subscribe')
      .description('stream the running host\'s events matching a pattern, one per line (--json: JSON lines) until Ctrl-C')
      .argument('<pattern>', 'topic pattern: * one word, # any (orders.#)')
      .option('--max <n>', 'stop after n events'),
  ).action(function (this: Command, pattern: string) {
    const o = this.opts<HostOptions & RemoteOptions & { max?: string }>();
    return run(() => subscribe(io, pattern, { ...remoteFlags(o), ...(o.max !== undefined ? { max: countFlag('--max', o.max) } : {}) }))();
  });
  remoteCommand(
    program
      .command('logs')
      .description('stream the running host\'s log (-f), optionally of one extension')
      .option('-f, --follow', 'follow the log (the only mode: the host keeps no history)')
      .option('--extension <id>', 'only this extension')
      .addOption(new Option('--level <level>', 'at this level or above').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal']))
      .option('--max <n>', 'stop after n entries'),
  ).action(function (this: Command) {
    const o = this.opts<HostOptions & RemoteOptions & { extension?: string; level?: string; max?: string }>();
    return run(() => logsFollow(io, { ...remoteFlags(o), ...(o.extension ? { extension: o.extension } : {}), ...(o.level ? { level: o.level } : {}), ...(o.max !== undefined ? { max: countFlag('--max', o.max) } : {}) }))();
  });
  remoteCommand(program.command('reload').description('re-scan the running host\'s plugin directories (and report on one extension)').argument('[id]', 'extension id')).action(function (this: Command, id: string | undefined) {
    return run(() => reload(io, id, remoteFlags(this.opts())))();
  });
  // `plinth dlq …`: dead letters in the data dir's store (no host running).
  type DlqOptions = HostOptions & RemoteOptions & { topic?: string; subscriber?: string; since?: string; until?: string; limit?: string; to?: string; all?: boolean };
  const dlqFlags = (o: DlqOptions): DlqFlags => {
    const flags: DlqFlags = { ...hostFlags(o) };
    for (const k of ['topic', 'subscriber', 'since', 'until', 'limit', 'to'] as const) if (o[k] !== undefined) flags[k] = o[k];
    if (o.all !== undefined) flags.all = o.all;
    return flags;
  };
  const filters = (cmd: Command) =>
    withRemoteOptions(cmd)
      .option('--topic <pattern>', 'only events whose topic matches this pattern (`orders.#`)')
      .option('--subscriber <name>', 'only this subscriber (an extension id)')
      .option('--since <time>', 'dead-lettered at or after: ISO 8601 time, or a duration ago (`1h`)')
      .option('--until <time>', 'dead-lettered before: ISO 8601 time, or a duration ago');
  // While a host serves the data dir (its serve.json names a live pid), or with --url, dlq talks to it.
  const remoteDlq = async (o: DlqOptions & RemoteOptions) => o.url !== undefined || hostServing((await loadHostConfig({ flags: hostFlags(o) })).dataDir);
  const dlqId = (raw: string) => {
    if (!/^\d+$/.test(raw)) throw usageError(`${JSON.stringify(raw)} is not a dead-letter id`, 'ids are the numbers `plinth dlq ls` shows');
    return Number(raw);
  };
  const dlqFilters = (o: DlqOptions) => ({
    ...(o.topic !== undefined ? { topic: o.topic } : {}),
    ...(o.subscriber !== undefined ? { subscriber: o.subscriber } : {}),
    ...(o.since !== undefined ? { since: o.since } : {}),
    ...(o.until !== undefined ? { until: o.until } : {}),
    ...(o.limit !== undefined ? { limit: countFlag('--limit', o.limit) } : {}),
  });
  const dlq = program.command('dlq').description("dead letters: of the running host when one serves the data dir (or --url), else in the data dir's store: ls, show, replay, purge");
  withHostOptions(filters(dlq.command('ls').description('list dead letters')).option('--limit <n>', 'at most this many')).action(function (this: Command) {
    const o = this.opts<DlqOptions>();
    json = o.json ?? false;
    return run(async () => ((await remoteDlq(o)) ? dlqRemote(io, 'ls', [], dlqFilters(o), remoteFlags(o)) : dlqLs(io, dlqFlags(o))))();
  });
  withHostOptions(withRemoteOptions(dlq.command('show').description('one dead letter: its event and every attempt').argument('<id>', 'dead-letter id'))).action(function (this: Command, id: string) {
    const o = this.opts<DlqOptions>();
    json = o.json ?? false;
    return run(async () => ((await remoteDlq(o)) ? dlqRemote(io, 'show', [dlqId(id)], {}, remoteFlags(o)) : dlqShow(io, id, dlqFlags(o))))();
  });
  withHostOptions(
    filters(dlq.command('replay').description('deliver dead letters again (at the next host start)').argument('[ids...]', 'dead-letter ids'))
      .addOption(new Option('--to <who>', 'the original subscriber, or every subscriber of the topic').choices(['original', 'all']).default('original'))
      .option('--all', 'every dead letter (with the filters, every one they match)'),
  ).action(function (this: Command, ids: string[]) {
    const o = this.opts<DlqOptions>();
    json = o.json ?? false;
    return run(async () => ((await remoteDlq(o)) ? dlqRemote(io, 'replay', ids.map(dlqId), { ...dlqFilters(o), ...(o.to === 'all' || o.to === 'original' ? { to: o.to } : {}) }, remoteFlags(o)) : dlqReplay(io, ids, dlqFlags(o))))();
  });
  withHostOptions(filters(dlq.command('purge').description('delete dead letters').argument('[ids...]', 'dead-letter ids')).option('--all', 'every dead letter')).action(function (this: Command, ids: string[]) {
    const o = this.opts<DlqOptions>();
    json = o.json ?? false;
    return run(async () => ((await remoteDlq(o)) ? dlqRemote(io, 'purge', ids.map(dlqId), { ...dlqFilters(o), ...(o.all ? { all: true } : {}) }, remoteFlags(o)) : dlqPurge(io, ids, dlqFlags(o))))();
  });

  // `plinth run` / `resume` / `runs`: pipelines (issue 11).
  type RunOptions = HostOptions & { var?: string[]; varsFile?: string; verbose?: boolean; logFormat?: string };
  const runFlags = (o: RunOptions): RunFlags => {
    const flags: RunFlags = { ...hostFlags(o) };
    if (o.var !== undefined) flags.var = o.var;
    if (o.varsFile !== undefined) flags.varsFile = o.varsFile;
    if (o.verbose !== undefined) flags.verbose = o.verbose;
    if (o.logFormat !== undefined) flags.logFormat = o.logFormat;
    return flags;
  };
  const collect = (value: string, previous: string[] = []) => [...previous, value];
  // --remote sends the variables as JSON: `--var n=3` is the number 3, `--var name=ada` the text "ada".
  const remoteVariables = (vars: string[] | undefined): Record<string, unknown> | undefined =>
    vars?.length
      ? Object.fromEntries(
          vars.map((v) => {
            const i = v.indexOf('=');
            if (i <= 0) throw usageError(`--var ${v}: write name=value`);
            const raw = v.slice(i + 1);
            try {
              return [v.slice(0, i), JSON.parse(raw) as unknown];
            } catch {
              return [v.slice(0, i), raw];
            }
          }),
        )
      : undefined;
  withRemoteOptions(withHostOptions(
    program
      .command('run')
      .description('run a pipeline in an embedded host with live progress; exit 0 only if the run succeeded')
      .argument('<file>', 'pipeline file (YAML or JSON)')
      .option('--var <name=value>', 'a run variable (value parsed as JSON when it can be, else text); repeatable', collect)
      .option('--vars-file <file>', 'run variables from a YAML/JSON mapping (--var wins)')
      .option('-v, --verbose', "log the host's lifecycle to stderr")
      .option('--remote', 'run it in the running host (`plinth serve`), with the same progress fed by runs.progress')
      .addOption(logFormatOption()),
  )).action(function (this: Command, file: string) {
    const o = this.opts<RunOptions & RemoteOptions & { remote?: boolean }>();
    if (o.remote) return run(() => runRemote(io, file, remoteVariables(o.var), remoteFlags(o)))();
    return run(() => runPipeline(io, file, runFlags(o)))();
  });
  withHostOptions(
    program
      .command('resume')
      .description('resume an interrupted run from the journal: completed stages are not run again')
      .argument('<id>', 'run id (`plinth runs ls`)')
      .option('-v, --verbose', "log the host's lifecycle to stderr")
      .addOption(logFormatOption()),
  ).action(function (this: Command, id: string) {
    return run(() => resumeRun(io, id, runFlags(this.opts<RunOptions>())))();
  });
  type RunsOptions = HostOptions & { pipeline?: string; state?: string; limit?: string };
  const runsFlags = (o: RunsOptions): RunsFlags => {
    const flags: RunsFlags = { ...hostFlags(o) };
    for (const k of ['pipeline', 'state', 'limit'] as const) if (o[k] !== undefined) flags[k] = o[k];
    return flags;
  };
  const runs = program.command('runs').description("pipeline runs in the data dir's journal: ls, show");
  withRemoteOptions(withHostOptions(runs.command('ls', { isDefault: true }).description('list runs, newest first (--remote: those of the running host)').option('--pipeline <name>', 'only this pipeline').option('--state <state>', 'only runs in this state').option('--limit <n>', 'at most this many (default 50)').option('--remote', 'ask the running host (`plinth serve`)'))).action(function (this: Command) {
    const o = this.opts<RunsOptions & RemoteOptions & { remote?: boolean }>();
    json = o.json ?? false;
    if (o.remote) return run(() => runsRemote(io, { ...remoteFlags(o), ...(o.pipeline ? { pipeline: o.pipeline } : {}), ...(o.limit !== undefined ? { limit: countFlag('--limit', o.limit) } : {}) }))();
    return run(() => runsLs(io, runsFlags(o)))();
  });
  withHostOptions(runs.command('show').description('one run: its stages with attempts, durations and errors').argument('<id>', 'run id')).action(function (this: Command, id: string) {
    const o = this.opts<RunsOptions>();
    json = o.json ?? false;
    return run(() => runsShow(io, id, runsFlags(o)))();
  });

  program
    .command('new')
    .description('scaffold a signed extension: manifest, code, a test in a real sandbox, README (`npm test` inside passes)')
    .argument('<name>', 'its npm package name, which is its extension id (e.g. hello, @me/hello)')
    .addOption(new Option('--runtime <runtime>', 'where it runs').choices(RUNTIMES).default('isolate'))
    .addOption(new Option('--lang <lang>', 'JavaScript or TypeScript').choices(LANGS).default('js'))
    .option('--dir <folder>', 'the folder to create (default: the name without its @scope)')
    .option('--publisher <id>', 'publisher id to sign as (default: remembered in ~/.plinth/author.json, else the @scope or your user name)')
    .option('--json', 'print JSON for scripts')
    .action(function (this: Command, name: string) {
      const o = this.opts<NewFlags>();
      return run(() => newExtension(io, name, o))();
    });

  withHostOptions(
    program
      .command('dev')
      .description('the author loop: serve an extension folder, check and reload it on every save (a broken save keeps the last good version serving), stream its logs')
      .argument('<dir>', 'extension folder (holding its package.json)')
      .option('--url <url>', "join this running host as a remote runner (default: the host serving the data dir, if any; else an embedded host)")
      .option('--token <token>', 'with --url: the token (default: PLINTH_TOKEN, else <dataDir>/token)')
      .option('--record', 'record every stage call (input and output) in <dir>/.plinth/recordings/ for plinth replay')
      .option('--no-control', 'no control channel for the embedded host')
      .option('--no-typecheck', 'do not type-check TypeScript sources (syntax is still checked)')
      .option('--no-build', "do not run the package's `build` script (npm run build) before each reload")
      .addOption(logFormatOption()),
  ).action(function (this: Command, dir: string) {
    const o = this.opts<HostOptions & RemoteOptions & { record?: boolean; control?: boolean; typecheck?: boolean; build?: boolean; logFormat?: string }>();
    const flags: DevFlags = { ...hostFlags(o) };
    if (o.url !== undefined) flags.url = o.url;
    if (o.token !== undefined) flags.token = o.token;
    if (o.record) flags.record = true;
    if (o.control === false) flags.control = false;
    if (o.typecheck === false) flags.typecheck = false;
    if (o.build === false) flags.build = false;
    if (o.logFormat !== undefined) flags.logFormat = o.logFormat;
    return run(() => dev(io, dir, flags))();
  });

  withHostOptions(
    program
      .command('replay')
      .description("run the calls recorded by plinth dev --record against the extension's current code and show which outputs changed (exit 1 if any)")
      .argument('<dir>', 'extension folder')
      .option('--stage <stage>', 'only the recordings of this stage')
      .addOption(logFormatOption()),
  ).action(function (this: Command, dir: string) {
    const o = this.opts<HostOptions & { stage?: string; logFormat?: string }>();
    const flags: ReplayFlags = { ...hostFlags(o) };
    if (o.stage !== undefined) flags.stage = o.stage;
    if (o.logFormat !== undefined) flags.logFormat = o.logFormat;
    return run(() => replayCommand(io, dir, flags))();
  });

  // Bare `plinth`: the help, and success (it is how people ask what the command does).
  if (argv.length === 0) {
    io.out(program.helpInformation());
    return EXIT.ok;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end through here with exit code 0.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return reportError(io, err, json, command);
  }
}
