// The pipeline part's public face (issue 11, DESIGN.md §5): `createPipelineService(host, options)` implements
// PipelineService over the definition side (parse, check, `${{ }}`, conditions: ./definition) and the engine
// (./engine). The host exposes it as `host.pipelines`; `plinth run`, `plinth serve` and the control channel use it.
// Triggers (event, schedule, webhook) start only when `startTriggers` is called — `plinth serve` does.
import { Cron } from 'croner';
import { PlinthError } from '../errors.ts';
import type { EventHeaders, Json, PlinthEvent } from '../sdk/index.ts';
import type { Clock } from '../events/clock.ts';
import { isValidPattern } from '../events/topics.ts';
import { derivedHeaders } from '../events/hops.ts';
import type { RunJournalBacking } from '../store/index.ts';
import { PipelineInvalidError, applyVariableDefaults, checkPipeline, evaluateCondition, loadPipelineFile, parsePipeline, resolveTemplate } from './definition/index.ts';
import { PipelineEngine, TERMINAL_RUN_STATES } from './engine/index.ts';
import type { PipelineDefinition, PipelineIssue, PipelineService, RunProgress, RunRecord, RunState, StageCatalog, TriggerDefinition } from './types.ts';

export type * from './types.ts';
export { PipelineEngine, RunJournal, listRuns, readRun, type EngineProgress, type EngineOptions, type RunFilter } from './engine/index.ts';

/** What the service needs of the host (an interface: the pipeline part never imports the host). */
export interface PipelineHost {
  call(extension: string, stage: string, input: Json, request: { timeoutMs?: number; runId?: string; signal?: AbortSignal }): Promise<Json>;
  stageCatalog(): StageCatalog;
  readonly store: { readonly runs: RunJournalBacking };
  readonly bus: {
    publish(topic: string, payload: Json, source?: string, headers?: EventHeaders): Promise<unknown>;
    subscribe(patterns: string | readonly string[], handler: (event: PlinthEvent) => void | Promise<void>): () => void;
  };
  readonly log?: { info(fields: object, message: string): void; warn(fields: object, message: string): void; error(fields: object, message: string): void };
}

export interface PipelineServiceOptions {
  maxConcurrentStages?: number;
  maxQueuedRuns?: number;
  clock?: Clock;
  random?: () => number;
  /** Environment for webhook secrets (`secretEnv`); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** `events.maxHops`: how many event-triggered runs may follow from one event (each run's events count one more). */
  maxHops?: number;
}

export interface WebhookRequest {
  /** The raw body as received (the signature covers these bytes), or already parsed JSON. */
  body: string | Json;
  headers?: Record<string, string | string[] | undefined>;
}

/** The service as the host, serve and the control channel see it: PipelineService plus triggers. */
export interface PipelineServiceHandle extends PipelineService {
  /** Starts a run of a definition already normalised (PipelineDefinition): checked against the loaded extensions first. */
  startDefinition(definition: PipelineDefinition, options?: { variables?: Record<string, Json>; trigger?: RunRecord['trigger'] }): { runId: string };
  /** Loads pipeline files and starts their event, schedule and webhook triggers (serve only). */
  startTriggers(files: readonly string[]): Promise<{ pipelines: string[]; issues: Array<{ file: string; issues: PipelineIssue[] }> }>;
  stopTriggers(): void;
  /**
   * The webhook trigger `name`, if a served pipeline declares one, with its HMAC secret (from `secretEnv`) when it
   * has one. The control channel's POST /hooks/<name> authenticates with it (token, or X-Hub-Signature-256 over the
   * raw body) before calling triggerWebhook.
   */
  findWebhook(name: string): { secret?: string } | undefined;
  /** Starts a run of the pipeline declaring webhook `name`, for a delivery the control channel has authenticated. */
  triggerWebhook(name: string, body: string | Json, headers?: WebhookRequest['headers']): Promise<{ runId: string }>;
  /** Runs a dead host left unfinished (journaled as interrupted). */
  interrupted(): RunRecord[];
  /** The host is stopping: runs in flight are left interrupted (resumable); triggers stop. */
  close(): void;
}

/** A run's own progress (not a stage's) into a state it does not leave in this process. */
function ended(p: { stage?: string; state?: string }): boolean {
  return p.stage === undefined && (TERMINAL_RUN_STATES.has(p.state as RunState) || p.state === 'interrupted');
}

export function createPipelineService(host: PipelineHost, options: PipelineServiceOptions = {}): PipelineServiceHandle {
  const engine = new PipelineEngine({
    call: (extension, stage, input, request) => host.call(extension, stage, input, request),
    journal: () => host.store.runs,
    publish: (topic, payload, runId) => {
      const headers = causes.get(runId);
      if (headers && ended(payload as { stage?: string; state?: string })) causes.delete(runId);
      return host.bus.publish(topic, payload, 'host', headers);
    },
    resolveTemplate,
    evaluateCondition,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.random ? { random: options.random } : {}),
    ...(options.maxConcurrentStages !== undefined ? { maxConcurrentStages: options.maxConcurrentStages } : {}),
    ...(options.maxQueuedRuns !== undefined ? { maxQueuedRuns: options.maxQueuedRuns } : {}),
    onError: (message, fields) => host.log?.warn(fields, message),
  });
  const env = options.env ?? process.env;
  const maxHops = options.maxHops ?? 8;
  // A run started by an event publishes its pipeline.* events as derived from it (causationId, one more hop), so an
  // event trigger that matches its own pipeline's events — or two pipelines triggering each other — ends at
  // events.maxHops instead of looping. Kept while the run is in this process.
  const causes = new Map<string, EventHeaders>();
  /** Runs started by a trigger, whose end is logged as their start was (nobody else watches them). */
  const triggered = new Map<string, string>();
  engine.onProgress((p) => {
    if (!ended(p)) return;
    const trigger = triggered.get(p.runId);
    if (!trigger) return;
    triggered.delete(p.runId);
    const fields = { pipeline: p.pipeline, runId: p.runId, trigger, state: p.state, ...(p.durationMs !== undefined ? { durationMs: p.durationMs } : {}), ...(p.error ? { code: p.error.code } : {}) };
    const message = `pipeline ${p.pipeline}: run ${p.runId} (started by its ${trigger} trigger) ${p.state}${p.error ? `: ${p.error.message}` : ''}`;
    if (p.state === 'succeeded') host.log?.info(fields, message);
    else host.log?.warn(fields, message);
  });
  const stopTriggers: Array<() => void> = [];
  const webhooks = new Map<string, { definition: PipelineDefinition; trigger: Extract<TriggerDefinition, { type: 'webhook' }> }>();

  async function load(source: { file: string } | { definition: unknown }, variables?: Record<string, Json>): Promise<{ definition?: PipelineDefinition; issues: PipelineIssue[] }> {
    const parsed = 'file' in source ? await loadPipelineFile(source.file) : parsePipeline(JSON.stringify(source.definition));
    if (!parsed.definition || parsed.issues.length > 0) return parsed;
    return { definition: parsed.definition, issues: checkPipeline(parsed.definition, host.stageCatalog(), variables) };
  }

  function startChecked(definition: PipelineDefinition, variables: Record<string, Json>, trigger: RunRecord['trigger']): { runId: string } {
    const vars = applyVariableDefaults(definition, variables);
    return engine.start(definition, { variables: vars, trigger });
  }

  async function start(source: { file: string } | { definition: unknown }, opts: { variables?: Record<string, Json>; trigger?: RunRecord['trigger'] } = {}): Promise<{ runId: string }> {
    const { definition, issues } = await load(source, opts.variables ?? {});
    if (!definition || issues.length > 0) throw new PipelineInvalidError(issues, 'file' in source ? source.file : undefined);
    return startChecked(definition, opts.variables ?? {}, opts.trigger ?? { type: 'manual' });
  }

  /** The event as the run variable `event` — when the pipeline declares one (its variables are strict). */
  function eventVariables(definition: PipelineDefinition, event: Json): Record<string, Json> {
    const declared = (definition.variablesSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
    return Object.hasOwn(declared, 'event') ? { event } : {};
  }

  function fromTrigger(definition: PipelineDefinition, variables: Record<string, Json>, trigger: RunRecord['trigger'], cause?: PlinthEvent): void {
    try {
      const headers = cause ? derivedHeaders(cause, `pipeline ${definition.name}'s event trigger`, maxHops) : undefined;
      const { runId } = startChecked(definition, variables, trigger);
      if (headers) causes.set(runId, headers);
      triggered.set(runId, trigger.type);
      host.log?.info({ pipeline: definition.name, runId, trigger: trigger.type }, `pipeline ${definition.name}: run ${runId} started by its ${trigger.type} trigger`);
    } catch (err) {
      const e = err as PlinthError;
      host.log?.warn({ pipeline: definition.name, trigger: trigger.type, code: e.code, err }, `pipeline ${definition.name}: its ${trigger.type} trigger could not start a run: ${e.message}`);
    }
  }

  /** Ticks of `cron` between the last scheduled run in the journal and now: never run (no catch-up), but said. */
  function reportMissedTicks(definition: PipelineDefinition, cron: Cron, expression: string): void {
    const last = engine.list({ pipeline: definition.name, limit: 200 }).find((r) => r.trigger.type === 'schedule');
    if (!last) return;
    let missed = 0;
    let at: Date | null = new Date(last.createdAt);
    const now = Date.now();
    while (missed < 1000 && (at = cron.nextRun(at)) !== null && at.getTime() < now - 1000) missed++;
    if (missed > 0) {
      host.log?.warn({ pipeline: definition.name, cron: expression, missed, since: last.createdAt }, `pipeline ${definition.name}: ${missed >= 1000 ? '1000 or more' : missed} scheduled tick(s) since its last scheduled run (${last.createdAt}) fell while no host ran; they are not run (no catch-up)`);
    }
  }

  function webhook(name: string, body: string | Json, headers: WebhookRequest['headers'] = {}): { runId: string } {
    const hook = webhooks.get(name);
    if (!hook) throw new PlinthError('PLINTH_ERR_WEBHOOK_NOT_FOUND', `no pipeline served here has a webhook trigger named ${JSON.stringify(name)}`, { hint: `webhooks served: ${[...webhooks.keys()].join(', ') || '(none)'}` });
    let parsed: Json;
    if (typeof body === 'string') {
      try {
        parsed = JSON.parse(body) as Json;
      } catch {
        parsed = body;
      }
    } else parsed = body;
    const plainHeaders: Record<string, Json> = {};
    for (const [k, v] of Object.entries(headers)) if (v !== undefined && k.toLowerCase() !== 'authorization') plainHeaders[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
    return startChecked(hook.definition, eventVariables(hook.definition, { webhook: name, body: parsed, headers: plainHeaders }), { type: 'webhook', detail: { name } });
  }

  const service: PipelineServiceHandle = {
    validate: (source) => load(source),
    start,
    wait: (runId, signal) => engine.wait(runId, signal),
    get: (runId) => engine.get(runId),
    list: (filter?: { pipeline?: string; state?: RunState; limit?: number }) => engine.list(filter),
    cancel: (runId, opts) => engine.cancel(runId, opts),
    resume: (runId) => Promise.resolve().then(() => engine.resume(runId)),
    onProgress: (listener: (p: RunProgress) => void) => engine.onProgress(listener),
    interrupted: () => engine.interrupted(),
    startDefinition(definition, opts = {}) {
      const issues = checkPipeline(definition, host.stageCatalog());
      if (issues.length > 0) throw new PipelineInvalidError(issues, definition.file, definition.name);
      return startChecked(definition, opts.variables ?? {}, opts.trigger ?? { type: 'manual' });
    },

    async startTriggers(files) {
      const started: string[] = [];
      const problems: Array<{ file: string; issues: PipelineIssue[] }> = [];
      for (const file of files) {
        const { definition, issues } = await load({ file });
        if (!definition || issues.length > 0) {
          problems.push({ file, issues });
          host.log?.error({ file, issues }, `pipeline ${file} was refused; its triggers do not start`);
          continue;
        }
        started.push(definition.name);
        definition.triggers.forEach((trigger, i) => {
          const at = `${file}: triggers/${i}`;
          if (trigger.type === 'event') {
            if (!isValidPattern(trigger.pattern)) {
              host.log?.error({ file, pattern: trigger.pattern }, `${at}: ${JSON.stringify(trigger.pattern)} is not a topic pattern`);
              return;
            }
            const unsubscribe = host.bus.subscribe(trigger.pattern, (event) => {
              const eventVar: Json = { id: event.id, topic: event.topic, time: event.time, payload: event.payload, ...(event.source !== undefined ? { source: event.source } : {}) };
              if (trigger.if !== undefined) {
                let pass = false;
                try {
                  pass = evaluateCondition(trigger.if, { vars: { event: eventVar }, stages: {}, run: { id: '', pipeline: definition.name } });
                } catch (err) {
                  host.log?.warn({ file, err }, `${at}: its condition failed on ${event.topic}: ${(err as Error).message}`);
                }
                if (!pass) return;
              }
              fromTrigger(definition, eventVariables(definition, eventVar), { type: 'event', detail: { topic: event.topic, eventId: event.id } }, event);
            });
            stopTriggers.push(unsubscribe);
          } else if (trigger.type === 'schedule') {
            let cron: Cron;
            try {
              cron = new Cron(trigger.cron, { ...(trigger.timezone ? { timezone: trigger.timezone } : {}), protect: false, unref: true }, () => {
                fromTrigger(definition, {}, { type: 'schedule', detail: { cron: trigger.cron, at: new Date().toISOString() } });
              });
            } catch (err) {
              host.log?.error({ file, cron: trigger.cron }, `${at}: ${JSON.stringify(trigger.cron)} is not a cron expression: ${(err as Error).message}`);
              return;
            }
            reportMissedTicks(definition, cron, trigger.cron);
            stopTriggers.push(() => cron.stop());
          } else if (trigger.type === 'webhook') {
            webhooks.set(trigger.name, { definition, trigger });
            stopTriggers.push(() => webhooks.delete(trigger.name));
          }
        });
      }
      return { pipelines: started, issues: problems };
    },

    stopTriggers() {
      for (const stop of stopTriggers.splice(0)) stop();
    },

    findWebhook(name) {
      const hook = webhooks.get(name);
      if (!hook) return undefined;
      const secret = hook.trigger.secretEnv !== undefined ? env[hook.trigger.secretEnv] : undefined;
      return secret ? { secret } : {};
    },

    triggerWebhook(name, body, headers = {}) {
      return Promise.resolve().then(() => webhook(name, body, headers));
    },

    close() {
      service.stopTriggers();
      engine.close();
    },
  };
  return service;
}
