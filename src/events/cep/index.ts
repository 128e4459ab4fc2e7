// Complex-event rules: config types, compile (validation with paths) and the engine.
export { compileRules, RuleEngine, EVENT_VARIABLES, WINDOW_VARIABLES, type CompiledRule, type RuleEngineOptions, type RuleStats } from './engine.ts';
export type { RuleConfig, SequenceRuleConfig, WindowRuleConfig, SequenceStepConfig, AggregateFunction, CepSettings, Clock, RuleLimits } from './types.ts';
