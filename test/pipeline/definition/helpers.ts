// Shared by the pipeline definition tests: fixture files and the stage catalog they are checked against.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Json } from '../../../src/sdk/index.ts';
import type { PipelineIssue, StageCatalog } from '../../../src/pipeline/types.ts';
import { ROOT } from '../../helpers.ts';

export const PIPELINE_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'pipelines');
export const fixture = (name: string) => path.join(PIPELINE_FIXTURES, name);
export const readFixture = (name: string) => readFile(fixture(name), 'utf8');

type Entry = { version: string; stages: Record<string, { input: Json; output: Json }> };

/** test/fixtures/pipelines/catalog.json as the StageCatalog loaded extensions would give. */
export async function fixtureCatalog(): Promise<StageCatalog> {
  const data = JSON.parse(await readFixture('catalog.json')) as Record<string, Entry | string>;
  const entries = new Map(Object.entries(data).filter((e): e is [string, Entry] => typeof e[1] === 'object'));
  return { extension: (id) => entries.get(id), ids: () => [...entries.keys()] };
}

/** The one issue at `path` (asserting there is exactly one with that code there). */
export function issueAt(issues: PipelineIssue[], code: string, pointer: string): PipelineIssue {
  const found = issues.filter((i) => i.code === code && i.location.path === pointer);
  if (found.length !== 1) throw new Error(`expected one ${code} at ${pointer}, got ${found.length}:\n${JSON.stringify(issues, null, 2)}`);
  return found[0]!;
}
