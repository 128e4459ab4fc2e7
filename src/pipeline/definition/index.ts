// The definition side of pipelines (issue 11): read a YAML/JSON pipeline file with line/column for every path,
// normalise it to a PipelineDefinition, check it before anything runs (structure, expressions, references, the
// loaded extensions' stages and typed contracts, variables), and resolve `${{ }}` references and `if` conditions
// during a run. docs/pipelines.md describes the format and every check.
import type { Json } from '../../sdk/index.ts';
import type { PipelineIssue, PipelineDefinition, StageCatalog } from '../types.ts';
import { checkPipeline } from './check.ts';
import { readPipeline, readPipelineFile, type ParseResult } from './parse.ts';

export { parsePipeline, loadPipelineFile, normalisePipeline, readPipeline, readPipelineFile, locatorOf, upstreamOf, findCycles, NEVER_RETRIED, type ParseResult } from './parse.ts';
export { checkPipeline, applyVariableDefaults } from './check.ts';
export { resolveTemplate, evaluateCondition, parseTemplateString, findReferences, conditionSource, SCOPE_VARIABLES } from './template.ts';
export { compareSchemas, type Mismatch } from './contracts.ts';
export { ISSUE_CODES, PipelineInvalidError, describeLocation, type IssueCode } from './issues.ts';
export { catalogFromRecords, loadStageCatalog } from './catalog.ts';

/**
 * Everything `plinth validate` reports for a text: its own issues and, when it normalised, those against the
 * catalog (and the variables, when given) — all at once, not just the first kind that fails.
 */
export function validatePipeline(text: string, file: string | undefined, catalog: StageCatalog, variables?: Record<string, Json>): { definition?: PipelineDefinition; issues: PipelineIssue[] } {
  const read: ParseResult = readPipeline(text, file);
  if (!read.definition) return read;
  const issues = [...read.issues, ...checkPipeline(read.definition, catalog, variables)];
  return issues.length > 0 ? { issues } : { definition: read.definition, issues };
}

export async function validatePipelineFile(file: string, catalog: StageCatalog, variables?: Record<string, Json>): Promise<{ definition?: PipelineDefinition; issues: PipelineIssue[] }> {
  const { text, file: abs } = await readPipelineFile(file);
  return validatePipeline(text, abs, catalog, variables);
}
