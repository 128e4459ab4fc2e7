// The problems a pipeline can have before it runs: one code per kind (docs/pipelines.md "Checks" lists them;
// test/pipeline/definition/docs.test.ts keeps the two in step). A refused pipeline is PLINTH_ERR_PIPELINE_INVALID
// carrying these issues.
import { PlinthError } from '../../errors.ts';
import type { PipelineIssue, SourceLocation } from '../types.ts';
import { distance } from '../../schema/index.ts';

export const ISSUE_CODES = {
  SYNTAX: 'The file is not valid YAML or JSON.',
  SCHEMA: 'The file does not match schemas/pipeline.schema.json (a missing or unknown field, a wrong type, a bad duration).',
  DUPLICATE_STAGE: 'Two stages have the same id.',
  UNKNOWN_NEEDS: '`needs` names a stage the pipeline does not have.',
  CYCLE: 'Stages need each other in a cycle; the message lists its members in order.',
  BAD_EXPRESSION: 'A `${{ }}` reference or an `if` condition is not valid CEL, is unterminated, or reads something other than vars, stages and run.',
  UNKNOWN_STAGE_REFERENCE: 'A reference reads `stages.<id>` for an id the pipeline does not have.',
  NOT_UPSTREAM: 'A reference or condition reads a stage that is not upstream (not reachable through `needs`), so its output would not exist yet.',
  BAD_REFERENCE: 'A reference reads something a stage or run does not have (`stages.<id>` has `output` and `state`; `run` has `id` and `pipeline`).',
  UNKNOWN_VARIABLE: 'A reference reads `vars.<name>` for a variable the pipeline does not declare.',
  UNKNOWN_OUTPUT_FIELD: "A reference reads a field the producer's declared output schema does not have.",
  UNKNOWN_EXTENSION: 'No loaded extension has that id (or it is installed but cannot load: the message says why).',
  UNKNOWN_STAGE: 'The extension does not declare that stage.',
  INPUT_INVALID: "A literal part of `with` does not match the stage's input schema.",
  TYPE_MISMATCH: "A reference produces (by the producer's declared output schema) what the stage's input schema does not accept.",
  VARIABLES_INVALID: "A variable's schema is not a valid JSON Schema, or the run's variables do not match the declared schemas.",
} as const;

export type IssueCode = keyof typeof ISSUE_CODES;

export function issue(code: IssueCode, message: string, location: SourceLocation, hint?: string): PipelineIssue {
  return { code, message, location, ...(hint ? { hint } : {}) };
}

/** `path:line:column` for people. */
export function describeLocation(l: SourceLocation, file?: string): string {
  const where = l.line === undefined ? '' : `:${l.line}${l.column === undefined ? '' : `:${l.column}`}`;
  return `${file ?? ''}${where}${file || where ? ' ' : ''}${l.path || '/'}`;
}

/** PLINTH_ERR_PIPELINE_INVALID with every issue (`issues` in its JSON; `problems` for readers of plain errors). */
export class PipelineInvalidError extends PlinthError {
  readonly issues: PipelineIssue[];
  constructor(issues: PipelineIssue[], file?: string, name?: string) {
    const first = issues[0];
    super(
      'PLINTH_ERR_PIPELINE_INVALID',
      `pipeline ${name ?? file ?? ''} is invalid: ${issues.length} problem(s)${first ? `; first: ${describeLocation(first.location)}: ${first.message}` : ''}`.replace('pipeline  is', 'pipeline is'),
      {
        ...(file ? { file } : {}),
        problems: issues.map((i) => ({ path: i.location.path || '/', message: `${i.location.line === undefined ? '' : `(line ${i.location.line}) `}${i.code}: ${i.message}`, ...(i.hint ? { hint: i.hint } : {}) })),
        hint: 'fix each problem at its path (`plinth validate <file>` lists them all); docs/pipelines.md describes the checks',
      },
    );
    this.issues = issues;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), issues: this.issues };
  }
}

/** The closest candidate within a third of the word's length (at least 2 edits), if any. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const limit = Math.max(2, Math.floor(word.length / 3));
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD && d <= limit) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

export function didYouMean(word: string, candidates: Iterable<string>, otherwise?: string): string | undefined {
  const list = [...candidates];
  const close = closest(word, list);
  if (close) return `did you mean "${close}"?`;
  if (otherwise) return otherwise;
  return list.length > 0 && list.length <= 20 ? `known here: ${list.join(', ')}` : undefined;
}
