// Complex-event rules (issue 10, seed Olocus CEP). Two kinds:
// - `sequence`: steps of topic patterns with conditions, each `within` a duration of the previous one,
//   correlated by a key expression; the last step may be `absent` (the rule matches when it does NOT come in
//   time). Per key, the engine keeps at most one partial match per step — the latest, since a later start leaves
//   every later window open longer — and a match consumes the key's state.
// - `window`: the last N events and/or the last T of a pattern, per key, with a condition over an aggregate
//   (count, sum, avg, min, max of a field); it matches when the condition turns true (edge-triggered, re-armed
//   when it turns false), so a steady state does not flood the bus.
// A match publishes a derived event: { rule, key, events: [ids], … } from source `rule:<id>`. Time is the
// engine's clock at arrival (processing time, not the publisher's claim); `tick()` expires state and fires
// absences, and the host calls it on a timer. State is bounded per rule; at a bound the oldest is dropped with a
// PLINTH_ERR_CEP_STATE_LIMIT warning (at most once a minute per rule, with the count).
import { createHash } from 'node:crypto';
import { PlinthError, type Problem } from '../../errors.ts';
import { compileExpression, type Expression } from '../../expr/index.ts';
import type { Json, PlinthEvent } from '../../sdk/index.ts';
import { parseDuration } from '../duration.ts';
import { derivedHeaders } from '../hops.ts';
import { createTopicMatcher, type TopicMatcher } from '../matcher.ts';
import type { PublishFunction } from '../middleware.ts';
import { isReservedTopic, isValidPattern, isValidTopic } from '../topics.ts';
import type { AggregateFunction, CepSettings, Clock, RuleConfig } from './types.ts';

/** Variables an event condition or key may read. */
export const EVENT_VARIABLES = ['event', 'payload', 'topic', 'source', 'headers'] as const;
/** Variables of a window rule's condition. */
export const WINDOW_VARIABLES = ['value', 'count', 'key'] as const;

const WARNING_INTERVAL_MS = 60_000;
// Expired state is swept on tick() and, at most this often, on an arriving event (a sweep visits every key;
// windows themselves are checked exactly on every event, so this only bounds how late an absence fires).
const SWEEP_INTERVAL_MS = 1000;

interface CompiledStep {
  topic: string;
  where: Expression | undefined;
  key: Expression;
  withinMs: number;
  absent: boolean;
}

interface CompiledSequence {
  kind: 'sequence';
  id: string;
  emit: string;
  steps: CompiledStep[];
  maxKeys: number;
}

interface CompiledWindow {
  kind: 'window';
  id: string;
  emit: string;
  topic: string;
  where: Expression | undefined;
  key: Expression | undefined;
  last: number | undefined;
  withinMs: number | undefined;
  fn: AggregateFunction;
  field: Expression | undefined;
  condition: Expression;
  minEvents: number;
  maxKeys: number;
  maxEventsPerKey: number;
  maxEvents: number;
}

export type CompiledRule = CompiledSequence | CompiledWindow;

export interface CompileRulesOptions {
  settings: CepSettings;
  /** JSON Pointer of the rules array in the config, for problems. */
  path?: string;
  file?: string;
}

/**
 * Checks and compiles `events.rules`: patterns, durations, expressions, the absent step's place, bounds. Every
 * problem is collected with its path; any problem throws PLINTH_ERR_CONFIG_INVALID.
 */
export function compileRules(rules: readonly RuleConfig[], options: CompileRulesOptions): CompiledRule[] {
  const base = options.path ?? '/events/rules';
  const problems: Problem[] = [];
  const compiled: CompiledRule[] = [];
  const ids = new Set<string>();
  const expr = (source: string | undefined, at: string, variables: readonly string[]): Expression | undefined => {
    if (source === undefined) return undefined;
    try {
      return compileExpression(source, { variables, path: at });
    } catch (err) {
      if (err instanceof PlinthError) problems.push(...err.problems);
      else problems.push({ path: at, message: String(err) });
      return undefined;
    }
  };
  const pattern = (p: string, at: string) => {
    if (!isValidPattern(p)) problems.push({ path: at, message: `${JSON.stringify(p)} is not a topic pattern`, hint: 'dot-separated words, `*` for one word, `#` for any number' });
  };
  const emitTopic = (t: string, at: string) => {
    if (!isValidTopic(t)) problems.push({ path: at, message: `${JSON.stringify(t)} is not a topic` });
    else if (isReservedTopic(t)) problems.push({ path: at, message: `${t} is under a reserved root (extension, pipeline, host)`, hint: 'derived events go on topics of your own' });
  };
  rules.forEach((rule, r) => {
    const at = `${base}/${r}`;
    if (ids.has(rule.id)) problems.push({ path: `${at}/id`, message: `rule id ${JSON.stringify(rule.id)} is used twice` });
    ids.add(rule.id);
    emitTopic(rule.emit, `${at}/emit`);
    const maxKeys = rule.limits?.maxKeys ?? options.settings.maxKeys;
    if (rule.type === 'sequence') {
      const ruleKey = expr(rule.key, `${at}/key`, EVENT_VARIABLES);
      const steps: CompiledStep[] = [];
      rule.steps.forEach((step, i) => {
        const sat = `${at}/steps/${i}`;
        pattern(step.topic, `${sat}/topic`);
        const where = expr(step.where, `${sat}/where`, EVENT_VARIABLES);
        const key = step.key === undefined ? ruleKey : expr(step.key, `${sat}/key`, EVENT_VARIABLES);
        let withinMs = 0;
        if (i === 0) {
          if (step.within !== undefined) problems.push({ path: `${sat}/within`, message: 'the first step has no window (each window is measured from the previous step)' });
          if (step.absent) problems.push({ path: `${sat}/absent`, message: 'the first step cannot be absent' });
        } else if (step.within === undefined) {
          problems.push({ path: `${sat}/within`, message: 'every step after the first needs `within` (e.g. `5m`)' });
        } else {
          const ms = parseDuration(step.within);
          if (ms === undefined || ms <= 0) problems.push({ path: `${sat}/within`, message: `${JSON.stringify(step.within)} is not a duration such as 30s, 5m, 2h` });
          else withinMs = ms;
        }
        if (step.absent && i !== rule.steps.length - 1) problems.push({ path: `${sat}/absent`, message: 'only the last step can be absent' });
        if (key) steps.push({ topic: step.topic, where, key, withinMs, absent: step.absent === true });
      });
      if (rule.steps.length < 2) problems.push({ path: `${at}/steps`, message: 'a sequence needs at least two steps' });
      compiled.push({ kind: 'sequence', id: rule.id, emit: rule.emit, steps, maxKeys });
    } else {
      pattern(rule.topic, `${at}/topic`);
      const where = expr(rule.where, `${at}/where`, EVENT_VARIABLES);
      const key = expr(rule.key, `${at}/key`, EVENT_VARIABLES);
      const field = expr(rule.aggregate.field, `${at}/aggregate/field`, EVENT_VARIABLES);
      if (rule.aggregate.fn !== 'count' && rule.aggregate.field === undefined) problems.push({ path: `${at}/aggregate/field`, message: `${rule.aggregate.fn} needs the field to aggregate (e.g. payload.durationMs)` });
      const condition = expr(rule.condition, `${at}/condition`, WINDOW_VARIABLES);
      let withinMs: number | undefined;
      if (rule.within !== undefined) {
        withinMs = parseDuration(rule.within);
        if (withinMs === undefined || withinMs <= 0) problems.push({ path: `${at}/within`, message: `${JSON.stringify(rule.within)} is not a duration such as 30s, 5m, 2h` });
      }
      if (rule.last === undefined && rule.within === undefined) problems.push({ path: at, message: 'a window needs `last` (events) or `within` (time), or both' });
      const maxEventsPerKey = rule.limits?.maxEventsPerKey ?? options.settings.maxEventsPerKey;
      if (rule.last !== undefined && rule.last > maxEventsPerKey) {
        problems.push({ path: `${at}/last`, message: `last ${rule.last} is more than the ${maxEventsPerKey} events a window may keep`, hint: 'raise events.cep.maxEventsPerKey or the rule\'s limits.maxEventsPerKey' });
      }
      const maxEvents = rule.limits?.maxEvents ?? options.settings.maxEvents;
      if (rule.last !== undefined && rule.last > maxEvents) {
        problems.push({ path: `${at}/last`, message: `last ${rule.last} is more than the ${maxEvents} events the rule may keep`, hint: "raise events.cep.maxEvents or the rule's limits.maxEvents" });
      }
      const minEvents = rule.minEvents ?? rule.last ?? 1;
      if (condition) {
        compiled.push({ kind: 'window', id: rule.id, emit: rule.emit, topic: rule.topic, where, key, last: rule.last, withinMs, fn: rule.aggregate.fn, field, condition, minEvents, maxKeys, maxEventsPerKey, maxEvents: rule.limits?.maxEvents ?? options.settings.maxEvents });
      }
    }
  });
  if (problems.length > 0) {
    throw new PlinthError('PLINTH_ERR_CONFIG_INVALID', `events.rules has ${problems.length} problem(s)`, {
      ...(options.file ? { file: options.file } : {}),
      problems,
      hint: 'see schemas/host-config.schema.json $defs/eventRule and README "Complex-event rules"',
    });
  }
  return compiled;
}

interface Partial {
  events: string[];
  at: number;
  first: PlinthEvent;
}

interface SequenceKeyState {
  partials: Array<Partial | undefined>;
}

interface WindowEntry {
  id: string;
  at: number;
  value: number;
}

interface WindowKeyState {
  entries: WindowEntry[];
  sum: number;
  firing: boolean;
}

interface RuleState {
  rule: CompiledRule;
  keys: Map<string, SequenceKeyState | WindowKeyState>;
  dropped: number;
  /** Window entries over all keys (bounded by maxEvents). */
  entries: number;
  lastWarning: number | undefined;
  matches: number;
  expressionErrors: number;
}

export interface RuleEngineOptions {
  rules: readonly CompiledRule[];
  /** Where derived events go (the bus's publish, with its middleware). */
  publish: PublishFunction;
  /** `events.maxHops`. */
  maxHops: number;
  clock?: Clock;
  /** Warnings (state bound reached, a derived event that could not be published); the host logs them. */
  onWarning?: (warning: PlinthError) => void;
  /** Makes the matcher that finds a topic's rules (default: createTopicMatcher, the pattern trie). */
  createMatcher?: <T>() => TopicMatcher<T>;
}

export interface RuleStats {
  id: string;
  keys: number;
  /** Window events held over all keys. */
  events: number;
  matches: number;
  dropped: number;
  expressionErrors: number;
}

type Emission = { rule: CompiledRule; payload: Json; cause: PlinthEvent };

interface Target {
  state: RuleState;
  step: number;
}

// Keys come from event payloads (attacker input): a long one is kept as its hash, so 10 000 keys stay small.
const MAX_KEY_CHARS = 128;

function keyText(value: Json): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length <= MAX_KEY_CHARS ? text : `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

export class RuleEngine {
  readonly #states: RuleState[];
  readonly #matcher: TopicMatcher<Target>;
  readonly #publish: PublishFunction;
  readonly #maxHops: number;
  readonly #clock: Clock;
  readonly #onWarning: (warning: PlinthError) => void;
  #lastSweep = -Infinity;

  constructor(options: RuleEngineOptions) {
    this.#publish = options.publish;
    this.#maxHops = options.maxHops;
    this.#clock = options.clock ?? { now: () => Date.now() };
    this.#onWarning = options.onWarning ?? (() => {});
    this.#matcher = (options.createMatcher ?? createTopicMatcher)<Target>();
    this.#states = options.rules.map((rule) => ({ rule, keys: new Map(), dropped: 0, entries: 0, lastWarning: undefined, matches: 0, expressionErrors: 0 }));
    for (const state of this.#states) {
      if (state.rule.kind === 'sequence') state.rule.steps.forEach((s, step) => this.#matcher.add(s.topic, { state, step }));
      else this.#matcher.add(state.rule.topic, { state, step: 0 });
    }
  }

  /** Feeds one event to every rule whose patterns it matches; resolves once derived events are published. */
  async handle(event: PlinthEvent): Promise<void> {
    const now = this.#clock.now();
    const emissions: Emission[] = [];
    if (now - this.#lastSweep >= SWEEP_INTERVAL_MS) this.#expire(now, emissions);
    const targets = this.#matcher.match(event.topic);
    // Later steps first, so one event never moves a partial match two steps at once.
    targets.sort((a, b) => b.step - a.step);
    const vars = { event: { id: event.id, topic: event.topic, source: event.source ?? '', time: event.time, headers: event.headers ?? {} }, payload: event.payload, topic: event.topic, source: event.source ?? '', headers: event.headers ?? {} };
    for (const { state, step } of targets) {
      if (state.rule.kind === 'sequence') this.#sequenceStep(state, state.rule, step, event, vars, now, emissions);
      else this.#windowEvent(state, state.rule, event, vars, now, emissions);
    }
    await this.#emit(emissions);
  }

  /** Expires state past its windows and fires absences; the host calls it on a timer, tests with their clock. */
  async tick(): Promise<void> {
    const emissions: Emission[] = [];
    this.#expire(this.#clock.now(), emissions);
    await this.#emit(emissions);
  }

  stats(): RuleStats[] {
    return this.#states.map((s) => ({ id: s.rule.id, keys: s.keys.size, events: s.entries, matches: s.matches, dropped: s.dropped, expressionErrors: s.expressionErrors }));
  }

  #evaluate(state: RuleState, expression: Expression | undefined, vars: Record<string, unknown>, kind: 'test' | 'value'): Json | undefined {
    if (!expression) return kind === 'test' ? true : undefined;
    try {
      return kind === 'test' ? expression.test(vars) : expression.evaluate(vars);
    } catch {
      // A field missing in one event is that event not taking part, not a failure of the rule.
      state.expressionErrors++;
      return undefined;
    }
  }

  /** Finds or makes a key's state, dropping the oldest key at the bound. Map order is last-touched order. */
  #keyState<S extends SequenceKeyState | WindowKeyState>(state: RuleState, key: string, make: () => S, now: number): S {
    let s = state.keys.get(key) as S | undefined;
    if (s) {
      state.keys.delete(key);
      state.keys.set(key, s);
      return s;
    }
    if (state.keys.size >= state.rule.maxKeys) {
      const oldest = state.keys.keys().next().value;
      if (oldest !== undefined) this.#deleteKey(state, oldest);
      this.#dropped(state, now, `keeps state for ${state.rule.maxKeys} keys`, 'maxKeys');
    }
    s = make();
    state.keys.set(key, s);
    return s;
  }

  #deleteKey(state: RuleState, key: string): void {
    const s = state.keys.get(key);
    if (s && 'entries' in s) state.entries -= s.entries.length;
    state.keys.delete(key);
  }

  #dropped(state: RuleState, now: number, what: string, limit: 'maxKeys' | 'maxEventsPerKey' | 'maxEvents'): void {
    state.dropped++;
    if (state.lastWarning !== undefined && now - state.lastWarning < WARNING_INTERVAL_MS) return;
    state.lastWarning = now;
    this.#onWarning(
      new PlinthError('PLINTH_ERR_CEP_STATE_LIMIT', `rule ${state.rule.id} ${what}; the oldest was dropped (${state.dropped} dropped so far)`, {
        hint: `raise events.cep.${limit} (or the rule's limits.${limit}), or narrow the rule's where / shorten its windows`,
      }),
    );
  }

  #sequenceStep(state: RuleState, rule: CompiledSequence, index: number, event: PlinthEvent, vars: Record<string, unknown>, now: number, out: Emission[]): void {
    const step = rule.steps[index]!;
    const keyValue = this.#evaluate(state, step.key, vars, 'value');
    if (keyValue === undefined || keyValue === null) return;
    if (this.#evaluate(state, step.where, vars, 'test') !== true) return;
    const key = keyText(keyValue);
    if (index === 0) {
      const s = this.#keyState<SequenceKeyState>(state, key, () => ({ partials: [] }), now);
      s.partials[0] = { events: [event.id], at: now, first: event };
      return;
    }
    const s = state.keys.get(key) as SequenceKeyState | undefined;
    const previous = s?.partials[index - 1];
    if (!s || !previous || now - previous.at > step.withinMs) return;
    if (step.absent) {
      // What must not happen did: this partial match is over.
      s.partials[index - 1] = undefined;
      if (s.partials.every((p) => p === undefined)) state.keys.delete(key);
      return;
    }
    const events = [...previous.events, event.id];
    if (index === rule.steps.length - 1) {
      state.keys.delete(key);
      out.push({ rule, cause: event, payload: { rule: rule.id, key, events } });
      return;
    }
    s.partials[index] = { events, at: now, first: previous.first };
  }

  #windowEvent(state: RuleState, rule: CompiledWindow, event: PlinthEvent, vars: Record<string, unknown>, now: number, out: Emission[]): void {
    if (this.#evaluate(state, rule.where, vars, 'test') !== true) return;
    let key = '';
    if (rule.key) {
      const k = this.#evaluate(state, rule.key, vars, 'value');
      if (k === undefined || k === null) return;
      key = keyText(k);
    }
    let value = 1;
    if (rule.fn !== 'count') {
      const v = this.#evaluate(state, rule.field, vars, 'value');
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        if (v !== undefined) state.expressionErrors++;
        return;
      }
      value = v;
    }
    const s = this.#keyState<WindowKeyState>(state, key, () => ({ entries: [], sum: 0, firing: false }), now);
    const before = s.entries.length;
    s.entries.push({ id: event.id, at: now, value });
    s.sum += value;
    this.#trimWindow(s, rule, now);
    if (s.entries.length > rule.maxEventsPerKey) {
      s.sum -= s.entries.shift()!.value;
      this.#dropped(state, now, `keeps ${rule.maxEventsPerKey} events for key ${JSON.stringify(key)}`, 'maxEventsPerKey');
    }
    state.entries += s.entries.length - before;
    // Over all keys: drop the least recently touched keys' windows (never the one just fed).
    while (state.entries > rule.maxEvents) {
      const oldest = state.keys.keys().next().value;
      if (oldest === undefined || oldest === key) break;
      this.#deleteKey(state, oldest);
      this.#dropped(state, now, `keeps ${rule.maxEvents} events over all its keys`, 'maxEvents');
    }
    if (s.entries.length < rule.minEvents) return;
    const aggregate = this.#aggregate(rule.fn, s);
    const holds = this.#evaluate(state, rule.condition, { value: aggregate, count: s.entries.length, key }, 'test') === true;
    if (holds && !s.firing) {
      out.push({ rule, cause: event, payload: { rule: rule.id, key, events: s.entries.map((e) => e.id), value: aggregate, count: s.entries.length, fn: rule.fn } });
    }
    s.firing = holds;
  }

  #aggregate(fn: AggregateFunction, s: WindowKeyState): number {
    const n = s.entries.length;
    switch (fn) {
      case 'count':
        return n;
      case 'sum':
        return s.sum;
      case 'avg':
        return s.sum / n;
      case 'min':
        return s.entries.reduce((m, e) => Math.min(m, e.value), Infinity);
      case 'max':
        return s.entries.reduce((m, e) => Math.max(m, e.value), -Infinity);
    }
  }

  #trimWindow(s: WindowKeyState, rule: CompiledWindow, now: number): void {
    if (rule.last !== undefined) while (s.entries.length > rule.last) s.sum -= s.entries.shift()!.value;
    if (rule.withinMs !== undefined) while (s.entries.length > 0 && now - s.entries[0]!.at > rule.withinMs) s.sum -= s.entries.shift()!.value;
  }

  #expire(now: number, out: Emission[]): void {
    this.#lastSweep = now;
    for (const state of this.#states) {
      const rule = state.rule;
      for (const [key, s] of state.keys) {
        if (rule.kind === 'sequence') {
          const seq = s as SequenceKeyState;
          seq.partials.forEach((p, j) => {
            if (!p) return;
            const next = rule.steps[j + 1];
            if (!next || now - p.at <= next.withinMs) return;
            seq.partials[j] = undefined;
            if (next.absent) {
              out.push({ rule, cause: p.first, payload: { rule: rule.id, key, events: p.events, absent: next.topic } });
            }
          });
          if (seq.partials.every((p) => p === undefined)) state.keys.delete(key);
        } else if (rule.withinMs !== undefined) {
          const win = s as WindowKeyState;
          const before = win.entries.length;
          this.#trimWindow(win, rule, now);
          state.entries -= before - win.entries.length;
          if (win.entries.length === 0) state.keys.delete(key);
        }
      }
    }
  }

  async #emit(emissions: Emission[]): Promise<void> {
    for (const { rule, payload, cause } of emissions) {
      const state = this.#states.find((s) => s.rule === rule)!;
      state.matches++;
      try {
        await this.#publish(rule.emit, payload, `rule:${rule.id}`, derivedHeaders(cause, `rule ${rule.id}`, this.#maxHops));
      } catch (err) {
        this.#onWarning(
          err instanceof PlinthError ? err : new PlinthError('PLINTH_ERR_EVENT_REJECTED', `rule ${rule.id} could not publish ${rule.emit}: ${String(err)}`, { cause: err }),
        );
      }
    }
  }
}
