// Shared setup of the pipeline tests: a real host over signed fixture extensions in a temp dir, and a small
// builder of normalised definitions (PipelineDefinition), so engine tests do not depend on the file syntax.
import path from 'node:path';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host, type HostOptions } from '../../src/host/index.ts';
import { signExtension } from '../../src/trust/index.ts';
import type { PipelineDefinition, RunProgress, StageDefinition } from '../../src/pipeline/index.ts';
import { ROOT, makePublisher, tempDir, writeTrustStore } from '../helpers.ts';

export const publisher = makePublisher('pipeline-tests');
export const PROBE = path.join(ROOT, 'test', 'fixtures', 'pipeline', 'pipe-probe');

/** A plugin dir with pipe-probe (and the given bundled plugins), signed, a trust store and a config. */
export async function pipelineRoot(options: { bundled?: string[]; config?: string } = {}): Promise<string> {
  const root = await tempDir('plinth-pipeline-');
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  await cp(PROBE, path.join(plugins, 'pipe-probe'), { recursive: true });
  await signExtension(path.join(plugins, 'pipe-probe'), publisher.privateKey, publisher.id);
  for (const name of options.bundled ?? []) {
    await cp(path.join(ROOT, 'plugins', name), path.join(plugins, name), { recursive: true });
    await signExtension(path.join(plugins, name), publisher.privateKey, publisher.id);
  }
  await writeTrustStore(path.join(root, 'trust.json'), [publisher]);
  await writeFile(path.join(root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json, policy: required }\ndataDir: data\n` +
    // Tests fail stages on purpose, many times: the breaker must not open and turn them into CIRCUIT_OPEN.
    `defaults:\n  breaker: { minimumCalls: 1000000 }\n${options.config ?? ''}`);
  return root;
}

export async function startPipelineHost(root: string, options: HostOptions = {}): Promise<Host> {
  const config = await loadHostConfig({ cwd: root, env: {} });
  const host = new Host(config, { logger: pino({ level: 'silent' }), stopSandboxProcesses: false, ...options });
  await host.start();
  return host;
}

export function stage(id: string, fields: Partial<StageDefinition> & { stage: string }): StageDefinition {
  return {
    id,
    extension: 'pipe-probe',
    with: {},
    needs: [],
    retry: { retry: { policy: 'none' }, nonRetryable: [] },
    continueOnError: false,
    location: { path: `/stages/${id}` },
    ...fields,
  };
}

export function pipeline(name: string, stages: StageDefinition[], fields: Partial<PipelineDefinition> = {}): PipelineDefinition {
  return { name, version: '1.0.0', maxConcurrentStages: 8, onFailure: 'compensate', triggers: [{ type: 'manual' }], stages, ...fields };
}

/** Collects every progress change of the host's runs. */
export function recordProgress(host: Host): RunProgress[] {
  const seen: RunProgress[] = [];
  host.pipelines.onProgress((p) => void seen.push(p));
  return seen;
}
