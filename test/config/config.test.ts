import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { writeFile, mkdir } from 'node:fs/promises';
import { loadHostConfig } from '../../src/config/index.ts';
import { rejectsWith, tempDir, ROOT } from '../helpers.ts';

describe('host config', () => {
  it('a missing file is fine: every key has its default', async () => {
    const cwd = await tempDir();
    const cfg = await loadHostConfig({ cwd, env: {} });
    assert.equal(cfg.file, undefined);
    assert.deepEqual(cfg.plugins, []);
    assert.deepEqual(cfg.trust, { store: undefined, policy: 'required' });
    assert.equal(cfg.dataDir, path.join(cwd, '.plinth'));
    assert.equal(cfg.defaults.breaker.halfOpenMaxCalls, 3);
    assert.equal(cfg.defaults.health.unhealthyThreshold, 3);
    assert.equal(cfg.budget.memoryMb, 4096);
  });

  it('reads plinth.config.yaml, resolving relative paths against its folder', async () => {
    const cwd = await tempDir();
    await writeFile(path.join(cwd, 'plinth.config.yaml'), 'plugins: [plugins, /abs/plugins]\ntrust:\n  store: keys/trust.json\nextensions:\n  csv-ingest:\n    config: { delimiter: ";" }\n');
    const cfg = await loadHostConfig({ cwd: path.join(cwd), env: {} });
    assert.equal(cfg.file, path.join(cwd, 'plinth.config.yaml'));
    assert.deepEqual(cfg.plugins, [path.join(cwd, 'plugins'), '/abs/plugins']);
    assert.equal(cfg.trust.store, path.join(cwd, 'keys', 'trust.json'));
    assert.deepEqual(cfg.extensions['csv-ingest'], { enabled: true, config: { delimiter: ';' } });
  });

  it('reads a JSON config named by --config, relative to the cwd', async () => {
    const cwd = await tempDir();
    await mkdir(path.join(cwd, 'etc'));
    await writeFile(path.join(cwd, 'etc', 'host.json'), JSON.stringify({ plugins: ['../p'], dev: true }));
    const cfg = await loadHostConfig({ cwd, env: {}, flags: { config: 'etc/host.json' } });
    assert.deepEqual(cfg.plugins, [path.join(cwd, 'p')]);
    assert.equal(cfg.trust.policy, 'warn', 'dev mode defaults the policy to warn');
  });

  it('environment overrides the file, and flags override the environment', async () => {
    const cwd = await tempDir();
    await writeFile(path.join(cwd, 'plinth.config.yaml'), 'plugins: [a]\ntrust: { policy: required }\nlog: { level: info }\n');
    const env = { PLINTH_PLUGINS: 'b, c', PLINTH_TRUST_POLICY: 'warn', PLINTH_LOG_LEVEL: 'debug', PLINTH_BUDGET_MEMORY_MB: '512' };
    const fromEnv = await loadHostConfig({ cwd, env });
    assert.deepEqual(fromEnv.plugins, [path.join(cwd, 'b'), path.join(cwd, 'c')]);
    assert.equal(fromEnv.trust.policy, 'warn');
    assert.equal(fromEnv.log.level, 'debug');
    assert.equal(fromEnv.budget.memoryMb, 512);
    const fromFlags = await loadHostConfig({ cwd, env, flags: { plugins: ['d'], trustPolicy: 'off' } });
    assert.deepEqual(fromFlags.plugins, [path.join(cwd, 'd')]);
    assert.equal(fromFlags.trust.policy, 'off');
  });

  it('unknown keys and wrong types are errors with their path', async () => {
    const cwd = await tempDir();
    await writeFile(path.join(cwd, 'plinth.config.yaml'), 'plugin: [a]\ntrust: { policy: maybe }\nbudget: { memoryMb: lots }\n');
    const err = await rejectsWith(loadHostConfig({ cwd, env: {} }), 'PLINTH_ERR_CONFIG_INVALID');
    const byPath = Object.fromEntries(err.problems.map((p) => [p.path, p]));
    assert.deepEqual(Object.keys(byPath).sort(), ['/budget/memoryMb', '/plugin', '/trust/policy']);
    assert.equal(byPath['/plugin']!.hint, 'did you mean "plugins"?');
    assert.equal(err.file, path.join(cwd, 'plinth.config.yaml'));
  });

  it('a bad value from the environment or a flag names the variable or flag', async () => {
    const cwd = await tempDir();
    const err = await rejectsWith(loadHostConfig({ cwd, env: { PLINTH_BUDGET_CONCURRENCY: 'many', PLINTH_DEV: 'perhaps' }, flags: { trustPolicy: 'sometimes' } }), 'PLINTH_ERR_CONFIG_INVALID');
    const messages = err.problems.map((p) => `${p.path} ${p.message}`).sort();
    assert.equal(messages.length, 3);
    assert.match(messages[0]!, /^\/budget\/concurrency .*PLINTH_BUDGET_CONCURRENCY/);
    assert.match(messages[1]!, /^\/dev .*PLINTH_DEV/);
    assert.match(messages[2]!, /^\/trust\/policy .*--trust-policy/);
  });

  it('YAML that does not parse, duplicate keys, a non-mapping, and a missing --config are clear errors', async () => {
    const cwd = await tempDir();
    await writeFile(path.join(cwd, 'broken.yaml'), 'plugins: [a\n');
    await writeFile(path.join(cwd, 'dup.yaml'), 'dev: true\ndev: false\n');
    await writeFile(path.join(cwd, 'list.yaml'), '- a\n- b\n');
    await rejectsWith(loadHostConfig({ cwd, env: {}, flags: { config: 'broken.yaml' } }), 'PLINTH_ERR_CONFIG_UNREADABLE');
    await rejectsWith(loadHostConfig({ cwd, env: {}, flags: { config: 'dup.yaml' } }), 'PLINTH_ERR_CONFIG_UNREADABLE');
    await rejectsWith(loadHostConfig({ cwd, env: {}, flags: { config: 'list.yaml' } }), 'PLINTH_ERR_CONFIG_INVALID');
    await rejectsWith(loadHostConfig({ cwd, env: { PLINTH_CONFIG: 'absent.yaml' } }), 'PLINTH_ERR_CONFIG_UNREADABLE');
  });

  it("the repository's own plinth.config.yaml is valid and points at the bundled plugins", async () => {
    const cfg = await loadHostConfig({ cwd: ROOT, env: {} });
    assert.deepEqual(cfg.plugins, [path.join(ROOT, 'plugins')]);
    assert.equal(cfg.trust.store, path.join(ROOT, 'keys', 'dev-trust.json'));
  });
});
