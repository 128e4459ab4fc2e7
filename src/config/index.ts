// Host configuration: defaults ← plinth.config.yaml/.json ← PLINTH_* environment ← command-line flags.
// The merged result is validated against schemas/host-config.schema.json; each problem names where the bad
// value came from (file, variable or flag) so the user knows what to edit.
import { readFile, access } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { PlinthError, type Problem } from '../errors.ts';
import { validators, toProblems, type SchemaLimits } from '../schema/index.ts';
import type { TrustPolicy } from '../trust/index.ts';
import { compileRoutes, type RouteConfig } from '../events/routes.ts';
import { compileRules, type CepSettings, type RuleConfig } from '../events/cep/index.ts';

export const CONFIG_FILE_NAMES = ['plinth.config.yaml', 'plinth.config.yml', 'plinth.config.json'] as const;

/** Host `defaults.breaker`, overridden per extension by the manifest's `breaker` (src/resilience/breaker.ts runs it; the schemas document each field). */
export interface BreakerSettings {
  failureRateThreshold: number;
  minimumCalls: number;
  windowMs: number;
  recoveryTimeoutMs: number;
  halfOpenMaxCalls: number;
  slowCallDurationMs: number;
  slowCallRateThreshold: number;
}

export interface HostConfig {
  /** The file read, if any. */
  file: string | undefined;
  /** Absolute plugin directories, in priority order. */
  plugins: string[];
  dev: boolean;
  dataDir: string;
  trust: { store: string | undefined; policy: TrustPolicy };
  log: { level: string };
  budget: { memoryMb: number; concurrency: number };
  /** Bounds on each package copied into a snapshot (src/snapshot). */
  packages: { maxFiles: number; maxMb: number };
  /** Bounds on `plinth dev --record` recordings and what `plinth replay` reads (src/dev/record.ts). */
  recordings: { maxPerStage: number; maxEntryBytes: number };
  /** `remote`: whether runners may register (docs/remote.md). */
  sandbox: { isolateProcess: 'shared' | 'per-extension'; remote: RemotePolicy };
  /** Bounds on extensions' own JSON Schemas (size at load, work per validation): src/schema/authored.ts. */
  extensionSchemas: SchemaLimits;
  /** What one extension may use of the host through its ctx: default and ceiling (README "Host configuration"). */
  quotas: Quotas;
  policy: { untrusted: PermissionCeiling; fetchBreaker: FetchBreakerSettings };
  /** Ceilings on what a manifest may declare (limits and stage timeouts). */
  ceilings: { memoryMb: number; callTimeoutMs: number; concurrency: number; startTimeoutMs: number };
  defaults: {
    limits: { memoryMb: number; callTimeoutMs: number; concurrency: number; startTimeoutMs: number };
    breaker: BreakerSettings;
    health: { intervalMs: number; timeoutMs: number; unhealthyThreshold: number; recoveryThreshold: number };
    restart: { maxAttempts: number; baseMs: number; maxMs: number; resetAfterMs: number };
  };
  extensions: Record<string, ExtensionSettings>;
  /** Delivery (payload size, retries, queues, dead letters), routes, complex-event rules and their bounds (README "Events"). */
  events: EventsConfig & EventSettings;
  /** The pipeline engine: stage slots over all runs, run queues, what `plinth serve` loads and resumes (docs/pipelines.md). */
  pipelines: PipelinesConfig;
  /** The control channel of `plinth serve` (README "Control channel", docs/rpc.md). */
  control: ControlConfig;
}

export interface PipelinesConfig {
  maxConcurrentStages: number;
  maxQueuedRuns: number;
  resumeInterrupted: boolean;
  /** Absolute pipeline files `plinth serve` loads for their triggers. */
  files: string[];
}

export type ControlRole = 'admin' | 'client' | 'runner';

/** schemas/host-config.schema.json `control`. */
export interface ControlConfig {
  host: string;
  port: number;
  token?: string;
  tokens: Array<{ token: string; role: ControlRole; name?: string }>;
  allowedOrigins: string[];
  tls?: { cert: string; key: string };
  allowInsecure: boolean;
  requiredExtensions: string[];
  metricsAuth: 'auto' | 'token' | 'none';
  maxMessageBytes: number;
  maxConnections: number;
  maxConcurrentRequests: number;
  rateLimit: { perSecond: number; burst: number; closeAfter: number };
  heartbeatMs: number;
  maxBufferedBytes: number;
  maxDroppedNotifications: number;
  hooks: { maxBodyBytes: number; rememberDeliveries: number };
}

export interface EventSettings {
  maxHops: number;
  routes: RouteConfig[];
  rules: RuleConfig[];
  cep: CepSettings;
}

/** `sandbox.remote`: which remote runners may register (docs/remote.md). */
export type RemotePolicy = 'off' | 'trusted' | 'any';

/** How calls are spread over a remote extension's runners (`extensions.<id>.pool.strategy`). */
export type PoolStrategy = 'round-robin' | 'least-outstanding' | 'health-based';

export interface ExtensionSettings {
  enabled: boolean;
  config?: Record<string, unknown>;
  isolateProcess?: 'shared' | 'dedicated';
  /** A remote extension's pool of runners. */
  pool?: { strategy: PoolStrategy; breaker?: Partial<BreakerSettings> };
  /** Who owns the id (re-assigns its data); see schemas/host-config.schema.json. */
  publisher?: string;
  /** Permissions approved for this (untrusted) extension beyond policy.untrusted. */
  allow?: Partial<PermissionCeiling>;
  /** Overrides `quotas` for this extension. */
  quotas?: QuotaOverrides;
  /** How events reach its handleEvent. */
  events?: { retry?: Partial<EventsConfig['retry']>; maxInFlight?: number };
}

/** The event bus (schemas/host-config.schema.json `events`). */
export interface EventsConfig {
  maxPayloadBytes: number;
  /** Milliseconds, or a duration such as `24h`: read it with `durationMs`. */
  deadLetterTtl: number | string;
  maxQueuedPerSubscriber: number;
  maxInFlightPerSubscriber: number;
  /** Bound on one delivery attempt: milliseconds, or a duration such as `60s` (read it with `durationMs`). */
  deliveryTimeout: number | string;
  retry: { maxAttempts: number; backoff: 'exponential' | 'fixed'; baseMs: number; maxMs: number; jitter: boolean };
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A config duration (`24h`, `30s`, or a number of milliseconds) in milliseconds. */
export function durationMs(value: number | string): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  if (!m) throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', `not a duration: ${JSON.stringify(value)}`, { hint: 'write a number and a unit: 500ms, 30s, 5m, 24h, 1d' });
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Host quotas per extension (schemas/host-config.schema.json `quotas`). */
export interface Quotas {
  fetch: { maxResponseBytes: number; maxConcurrent: number; timeoutMs: number; maxRedirects: number };
  kv: { maxKeys: number; maxBytes: number; maxValueBytes: number };
  fs: { maxBytes: number; maxFileBytes: number; maxFiles: number };
  log: { maxLineBytes: number; linesPerSecond: number; burst: number };
}

/** Quotas with every value optional: a manifest's `limits` or a host's `extensions.<id>.quotas`. */
export type QuotaOverrides = { [G in keyof Quotas]?: Partial<Quotas[G]> };

/** The breaker per extension and origin around ctx.fetch (`policy.fetchBreaker`, src/policy/fetch-breaker.ts). */
export interface FetchBreakerSettings {
  enabled: boolean;
  /** Percent of failed requests in the window that opens the breaker. */
  failureRateThreshold: number;
  /** Requests in the window before the rate counts. */
  minimumCalls: number;
  windowMs: number;
  /** How long it stays open before one request is let through. */
  recoveryTimeoutMs: number;
}

/** What an untrusted extension may be granted without an approval (`policy.untrusted`). */
export interface PermissionCeiling {
  env: string[];
  network: string[];
  fs: boolean;
  kv: boolean;
  events: boolean;
}

/** Overrides from the command line; undefined means "not given". Relative paths are taken from `cwd`. */
export interface ConfigFlags {
  config?: string;
  plugins?: string[];
  dev?: boolean;
  dataDir?: string;
  trustStore?: string;
  trustPolicy?: string;
  logLevel?: string;
}

type Parser = (raw: string) => unknown;
const asString: Parser = (raw) => raw;
const asList: Parser = (raw) => raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
const asBoolean: Parser = (raw) => (/^(1|true|yes|on)$/i.test(raw) ? true : /^(0|false|no|off)$/i.test(raw) ? false : raw);
// A value that is not a number stays a string, so the schema reports it with its path and source.
const asInteger: Parser = (raw) => (/^-?\d+$/.test(raw.trim()) ? Number(raw) : raw);

/** Every PLINTH_* variable the host reads, the config path it sets, and how it is parsed. Documented in README. */
export const ENVIRONMENT: ReadonlyArray<{ name: string; path: string[]; parse: Parser; isPath?: boolean }> = [
  { name: 'PLINTH_PLUGINS', path: ['plugins'], parse: asList, isPath: true },
  { name: 'PLINTH_DEV', path: ['dev'], parse: asBoolean },
  { name: 'PLINTH_DATA_DIR', path: ['dataDir'], parse: asString, isPath: true },
  { name: 'PLINTH_TRUST_STORE', path: ['trust', 'store'], parse: asString, isPath: true },
  { name: 'PLINTH_TRUST_POLICY', path: ['trust', 'policy'], parse: asString },
  { name: 'PLINTH_LOG_LEVEL', path: ['log', 'level'], parse: asString },
  { name: 'PLINTH_BUDGET_MEMORY_MB', path: ['budget', 'memoryMb'], parse: asInteger },
  { name: 'PLINTH_BUDGET_CONCURRENCY', path: ['budget', 'concurrency'], parse: asInteger },
];

const PATH_KEYS = [['plugins'], ['dataDir'], ['trust', 'store'], ['pipelines', 'files'], ['control', 'tls', 'cert'], ['control', 'tls', 'key']];

type Doc = Record<string, unknown>;

function setIn(doc: Doc, keys: string[], value: unknown): void {
  let node = doc;
  for (const k of keys.slice(0, -1)) {
    if (typeof node[k] !== 'object' || node[k] === null || Array.isArray(node[k])) node[k] = {};
    node = node[k] as Doc;
  }
  node[keys[keys.length - 1]!] = value;
}

function getIn(doc: Doc, keys: string[]): unknown {
  let node: unknown = doc;
  for (const k of keys) node = typeof node === 'object' && node !== null ? (node as Doc)[k] : undefined;
  return node;
}

function resolvePaths(value: unknown, base: string): unknown {
  if (typeof value === 'string') return path.resolve(base, value);
  if (Array.isArray(value)) return (value as unknown[]).map((v) => (typeof v === 'string' ? path.resolve(base, v) : v));
  return value;
}

async function findConfigFile(cwd: string): Promise<string | undefined> {
  for (const name of CONFIG_FILE_NAMES) {
    const file = path.join(cwd, name);
    try {
      await access(file);
      return file;
    } catch {
      // try the next name
    }
  }
  return undefined;
}

async function readConfigFile(file: string): Promise<Doc> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_CONFIG_UNREADABLE', `cannot read config file ${file}: ${(err as Error).message}`, {
      file,
      cause: err,
      hint: 'check the --config / PLINTH_CONFIG path',
    });
  }
  let doc: unknown;
  try {
    // YAML is a superset of JSON, so one parser reads both; duplicate keys are errors.
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    throw new PlinthError('PLINTH_ERR_CONFIG_UNREADABLE', `${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`, { file, cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', `${file} must hold a mapping of settings at the top level`, { file, problems: [{ path: '', message: 'must be an object' }] });
  }
  return doc as Doc;
}

/**
 * Loads the host configuration. A missing default file is fine (every key has a default); a file named by
 * --config or PLINTH_CONFIG must exist.
 */
export async function loadHostConfig(options: { cwd?: string; env?: NodeJS.ProcessEnv; flags?: ConfigFlags; /** Ignore config files: defaults, env and flags only. */ noFile?: boolean } = {}): Promise<HostConfig> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};

  const named = flags.config ?? env.PLINTH_CONFIG;
  const file = options.noFile ? undefined : named !== undefined ? path.resolve(cwd, named) : await findConfigFile(cwd);
  const doc: Doc = file ? await readConfigFile(file) : {};
  const sources = new Map<string, string>();
  if (file) {
    const base = path.dirname(file);
    for (const keys of PATH_KEYS) {
      const v = getIn(doc, keys);
      if (v !== undefined) setIn(doc, keys, resolvePaths(v, base));
    }
  }

  for (const v of ENVIRONMENT) {
    const raw = env[v.name];
    if (raw === undefined || raw === '') continue;
    const value = v.parse(raw);
    setIn(doc, v.path, v.isPath ? resolvePaths(value, cwd) : value);
    sources.set('/' + v.path.join('/'), `environment variable ${v.name}`);
  }

  const flagValues: Array<[string[], unknown, string]> = [
    [['plugins'], flags.plugins && resolvePaths(flags.plugins, cwd), '--plugins'],
    [['dev'], flags.dev, '--dev'],
    [['dataDir'], flags.dataDir && resolvePaths(flags.dataDir, cwd), '--data-dir'],
    [['trust', 'store'], flags.trustStore && resolvePaths(flags.trustStore, cwd), '--trust'],
    [['trust', 'policy'], flags.trustPolicy, '--trust-policy'],
    [['log', 'level'], flags.logLevel, '--log-level'],
  ];
  for (const [keys, value, flag] of flagValues) {
    if (value === undefined) continue;
    setIn(doc, keys, value);
    sources.set('/' + keys.join('/'), `flag ${flag}`);
  }

  if (!validators.hostConfig(doc)) {
    const problems: Problem[] = toProblems(validators.hostConfig.errors).map((p) => {
      const source = [...sources.entries()].find(([at]) => p.path === at || p.path.startsWith(at + '/'))?.[1];
      return source ? { ...p, message: `${p.message} (set by ${source})` } : p;
    });
    throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', `host configuration${file ? ` ${file}` : ''} has ${problems.length} problem(s)`, {
      ...(file ? { file } : {}),
      problems,
      hint: 'see schemas/host-config.schema.json for every setting',
    });
  }

  // What a schema cannot say: patterns, durations and expressions parse, the absent step is last, bounds fit.
  const events = (doc as { events: EventSettings }).events;
  compileRoutes(events.routes, file ? { file } : {});
  compileRules(events.rules, { settings: events.cep, ...(file ? { file } : {}) });

  // Defaults were filled in by the schema (`useDefaults`); only the dataDir default is relative.
  const cfg = doc as unknown as Omit<HostConfig, 'file'> & { trust: { store?: string; policy?: TrustPolicy } };
  return {
    ...cfg,
    file,
    dataDir: path.resolve(file ? path.dirname(file) : cwd, cfg.dataDir),
    trust: { store: cfg.trust.store, policy: cfg.trust.policy ?? (cfg.dev ? 'warn' : 'required') },
  };
}
