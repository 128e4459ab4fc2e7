// Helpers of the plinth dev tests: copies of the fixtures in test/fixtures/dev/ and the dev host config.
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { loadHostConfig, type HostConfig } from '../../src/config/index.ts';
import { ROOT, tempDir } from '../helpers.ts';

export const DEV_FIXTURES = path.join(ROOT, 'test', 'fixtures', 'dev');

export async function devConfig(root: string, extra: Partial<HostConfig> = {}): Promise<HostConfig> {
  const config = await loadHostConfig({ cwd: root, noFile: true, env: {}, flags: { dev: true, trustPolicy: 'warn', dataDir: path.join(root, 'data') } });
  return { ...config, ...extra };
}

/** A copy of a dev fixture in a fresh temp folder. */
export async function fixture(name: string): Promise<{ root: string; dir: string }> {
  const root = await tempDir('plinth-dev-test-');
  const dir = path.join(root, name);
  await cp(path.join(DEV_FIXTURES, name), dir, { recursive: true });
  return { root, dir };
}

