// Complex-event rules as written in host config (`events.rules`, schemas/host-config.schema.json $defs).

export interface SequenceStepConfig {
  /** Topic pattern of the events this step takes. */
  topic: string;
  /** CEL condition over the event (variables: event, payload, topic, source, headers). */
  where?: string;
  /** Overrides the rule's key expression for this step's events (e.g. another field name). */
  key?: string;
  /** For every step but the first: how long after the previous step this one may come (`5m`). */
  within?: string;
  /** The last step only: the rule matches when NO such event comes within the window. */
  absent?: boolean;
}

export interface RuleLimits {
  /** Keys (correlation values) a rule keeps state for at once. */
  maxKeys?: number;
  /** Events a window keeps per key. */
  maxEventsPerKey?: number;
  /** Events a window rule keeps over all its keys. */
  maxEvents?: number;
}

export interface SequenceRuleConfig {
  id: string;
  type: 'sequence';
  description?: string;
  /** CEL expression giving the correlation key of an event (e.g. `payload.userId`). */
  key: string;
  steps: SequenceStepConfig[];
  /** Topic of the derived event published on a match. */
  emit: string;
  limits?: RuleLimits;
}

export type AggregateFunction = 'count' | 'sum' | 'avg' | 'min' | 'max';

export interface WindowRuleConfig {
  id: string;
  type: 'window';
  description?: string;
  topic: string;
  where?: string;
  /** Groups events by this key (default: one group). */
  key?: string;
  /** Keep the last N events… */
  last?: number;
  /** …and/or the events of the last T (`10m`). */
  within?: string;
  aggregate: { fn: AggregateFunction; /** CEL giving the number to aggregate (not for count). */ field?: string };
  /** CEL over `value` (the aggregate), `count` and `key`: the rule matches when it turns true. */
  condition: string;
  /** Events in the window before the condition is looked at (default: `last`, or 1 for a time window). */
  minEvents?: number;
  emit: string;
  limits?: RuleLimits;
}

export type RuleConfig = SequenceRuleConfig | WindowRuleConfig;

/** `events.cep` in host config: defaults of the per-rule state bounds. */
export interface CepSettings {
  maxKeys: number;
  maxEventsPerKey: number;
  maxEvents: number;
}

/** Time as the rule engine sees it; tests inject one. */
export interface Clock {
  now(): number;
}
