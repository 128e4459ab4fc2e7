// The pipelines in pipelines/ validate against the bundled extensions in plugins/ (a real registry scan: signed,
// verified packages and their declared stage schemas), and `plinth validate` as users run it.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadHostConfig } from '../../../src/config/index.ts';
import { checkPipeline, loadPipelineFile, loadStageCatalog, validatePipeline } from '../../../src/pipeline/definition/index.ts';
import type { StageCatalog } from '../../../src/pipeline/types.ts';
import { ROOT, runCli, tempDir } from '../../helpers.ts';
import { fixture } from './helpers.ts';

const PIPELINES = path.join(ROOT, 'pipelines');
const TRUST = path.join(ROOT, 'keys', 'dev-trust.json');

describe('shipped pipelines against the bundled extensions', () => {
  let catalog: StageCatalog;
  before(async () => {
    const config = await loadHostConfig({ flags: { plugins: [path.join(ROOT, 'plugins')], trustStore: TRUST, dataDir: await tempDir() }, noFile: true, env: {} });
    catalog = (await loadStageCatalog(config)).catalog;
  });

  it('the catalog holds every bundled extension with its stages', () => {
    assert.deepEqual(catalog.ids().sort(), ['analytics', 'audit-log', 'csv-ingest', 'policy-check', 'record-validate', 'redact-fields', 'report', 'storage-writer']);
    assert.deepEqual(Object.keys(catalog.extension('storage-writer')!.stages).sort(), ['discard', 'write']);
  });

  for (const [file, stages] of [
    ['quick-start.yaml', ['ingest', 'privacy', 'summary', 'report']],
    ['enterprise-data-processing.yaml', ['ingestion', 'validation', 'privacy', 'policy', 'analytics', 'reporting', 'storage']],
  ] as const) {
    it(`${file} is valid, with its default variables`, async () => {
      const { definition, issues } = await loadPipelineFile(path.join(PIPELINES, file));
      assert.deepEqual(issues, []);
      assert.deepEqual(definition!.stages.map((s) => s.id), stages);
      assert.deepEqual(checkPipeline(definition!, catalog, {}), []);
    });
  }

  it('the enterprise pipeline: analytics ∥ reporting after policy, storage after both, compensated by discard', async () => {
    const def = (await loadPipelineFile(path.join(PIPELINES, 'enterprise-data-processing.yaml'))).definition!;
    const byId = new Map(def.stages.map((s) => [s.id, s]));
    assert.deepEqual(byId.get('analytics')!.needs, ['policy']);
    assert.deepEqual(byId.get('reporting')!.needs, ['policy']);
    assert.deepEqual(byId.get('storage')!.needs, ['analytics', 'reporting']);
    assert.deepEqual([byId.get('storage')!.compensate!.extension, byId.get('storage')!.compensate!.stage], ['storage-writer', 'discard']);
    assert.deepEqual(new Set(def.stages.map((s) => s.retry.retry.policy)), new Set(['fixed', 'none', 'exponential', 'immediate']));
    assert.equal(def.name, 'enterprise_data_processing');
  });

  it('a broken copy of the enterprise pipeline is refused for a count where records are required', async () => {
    const text = (await readFile(path.join(PIPELINES, 'enterprise-data-processing.yaml'), 'utf8')).replace('${{ stages.validation.output.valid }}', '${{ stages.validation.output.validCount }}');
    const { issues } = validatePipeline(text, 'copy.yaml', catalog);
    assert.equal(issues.length, 1, JSON.stringify(issues));
    assert.equal(issues[0]!.code, 'TYPE_MISMATCH');
    assert.equal(issues[0]!.location.path, '/stages/2/with/records');
    assert.match(issues[0]!.message, /record-validate validate output #\/properties\/validCount.*redact-fields redact input #\/properties\/records/);
  });
});

describe('plinth validate', () => {
  it('a valid pipeline: exit 0 and its stages in the order they can run', async () => {
    const r = await runCli(['validate', 'pipelines/enterprise-data-processing.yaml', '--plugins', 'plugins']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /valid — pipeline enterprise_data_processing 1\.0\.0, 7 stage\(s\): ingestion → validation → privacy → policy → analytics ∥ reporting → storage/);
  });

  it('--json: the common envelope with the stages and their levels', async () => {
    const r = await runCli(['validate', 'pipelines/quick-start.yaml', '--plugins', 'plugins', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const env = JSON.parse(r.stdout) as { ok: boolean; command: string; error: null; data: { valid: boolean; pipeline: { levels: string[][] } } };
    assert.deepEqual([env.ok, env.command, env.error, env.data.valid], [true, 'validate', null, true]);
    assert.deepEqual(env.data.pipeline.levels, [['ingest'], ['privacy'], ['summary', 'report']]);
  });

  it('an invalid pipeline: exit 3, every issue with file:line:column, code and hint; --json carries the issues', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'broken.yaml');
    const text = (await readFile(path.join(PIPELINES, 'quick-start.yaml'), 'utf8')).replace('extension: analytics', 'extension: analytic').replace('${{ stages.ingest.output.records }}', '${{ stages.ingest.output.rowCount }}');
    await writeFile(file, text);
    const r = await runCli(['validate', file, '--plugins', path.join(ROOT, 'plugins'), '--trust', TRUST], { cwd: dir });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /broken\.yaml:\d+:\d+ \/stages\/2\/extension {2}UNKNOWN_EXTENSION {2}no loaded extension is called "analytic"\n {6}hint: did you mean "analytics"\?/);
    assert.match(r.stdout, /\/stages\/1\/with\/records {2}TYPE_MISMATCH/);
    const j = await runCli(['validate', file, '--plugins', path.join(ROOT, 'plugins'), '--trust', TRUST, '--json'], { cwd: dir });
    assert.equal(j.code, 3);
    const env = JSON.parse(j.stdout) as { ok: boolean; error: { code: string; issues: unknown[] }; data: { valid: boolean; issues: Array<{ code: string; location: { line: number } }> } };
    assert.deepEqual([env.ok, env.error.code, env.data.valid], [false, 'PLINTH_ERR_PIPELINE_INVALID', false]);
    assert.deepEqual(env.data.issues.map((i) => i.code).sort(), ['TYPE_MISMATCH', 'UNKNOWN_EXTENSION']);
    assert.ok(env.data.issues.every((i) => typeof i.location.line === 'number'));
    assert.deepEqual(env.error.issues, env.data.issues);
  });

  it('--var values are checked against the variable schemas', async () => {
    const r = await runCli(['validate', 'pipelines/enterprise-data-processing.yaml', '--plugins', 'plugins', '--var', 'region=mars', '--json']);
    assert.equal(r.code, 3);
    const env = JSON.parse(r.stdout) as { data: { issues: Array<{ code: string; location: { path: string } }> } };
    assert.deepEqual(env.data.issues.map((i) => [i.code, i.location.path]), [['VARIABLES_INVALID', '/variables/region']]);
    const bad = await runCli(['validate', 'pipelines/quick-start.yaml', '--plugins', 'plugins', '--var', 'novalue']);
    assert.equal(bad.code, 2);
  });

  it('a missing file or no plugin directories is a usage error (exit 2), not "invalid"', async () => {
    const missing = await runCli(['validate', fixture('does-not-exist.yaml'), '--plugins', 'plugins']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /PLINTH_ERR_USAGE: cannot read pipeline file/);
  });
});
