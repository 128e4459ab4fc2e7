// Issue 7 §2 "An id and its data belong to one publisher": every id its own data folder and kv; a trusted copy is
// never replaced or shadowed by an untrusted one; an id's data is bound to the publisher whose copy first started
// and another publisher's copy is refused unless the operator re-assigns the id; the trust store limits which ids
// a publisher may sign. Real signed fixtures (a second publisher's key made per run), real data dirs, real
// isolate sandboxes; each refusal is asserted by code, with the legitimate extension still serving its own data.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { loadHostConfig } from '../../src/config/index.ts';
import { Host } from '../../src/host/index.ts';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { signExtension, parseTrustStore, verifyExtension, scopeAllowing } from '../../src/trust/index.ts';
import { extensionDataDir, extensionIdFromStorageName, extensionStorageName, publisherBindingFile, readPublisherBinding, writePublisherBinding, UNSIGNED_PUBLISHER } from '../../src/datadir/index.ts';
import { topicWord } from '../../src/events/index.ts';
import type { Json } from '../../src/sdk/index.ts';
import { ROOT, makePublisher, rejectsWith, runCli, tempDir, type TestPublisher } from '../helpers.ts';

after(() => IsolateProcess.shutdownAll());

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'security', 'vault');
const acme = makePublisher('acme');
const evil = makePublisher('evil');
const silent = pino({ level: 'silent' });

interface VaultSpec {
  id?: string;
  version?: string;
  /** Marks the copy, so a call shows whose code answered. */
  build: string;
  /** Unsigned when absent. */
  signer?: TestPublisher;
}

/** A copy of the vault fixture under `folder`, with its own id, version and build mark, signed by `signer`. */
async function writeVault(plugins: string, folder: string, spec: VaultSpec): Promise<string> {
  const dir = path.join(plugins, folder);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.dirname(dir), { recursive: true });
  await cp(FIXTURE, dir, { recursive: true });
  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
  pkg.name = spec.id ?? 'vault';
  pkg.version = spec.version ?? '1.0.0';
  await writeFile(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
  await writeFile(path.join(dir, 'build.js'), `export const BUILD = ${JSON.stringify(spec.build)};\n`);
  if (spec.signer) await signExtension(dir, spec.signer.privateKey, spec.signer.id);
  return dir;
}

interface Workspace {
  root: string;
  plugins: string;
  data: string;
}

async function workspace(): Promise<Workspace> {
  const root = await tempDir('plinth-ids-');
  const plugins = path.join(root, 'plugins');
  await mkdir(plugins);
  return { root, plugins, data: path.join(root, 'data') };
}

/** Writes the trust store (both publishers, optional scopes) and the host config, then starts a host. */
async function startHost(ws: Workspace, options: { policy?: 'required' | 'warn' | 'off'; scopes?: Record<string, string[]>; config?: string; logLines?: string[] } = {}): Promise<Host> {
  const publishers = Object.fromEntries([acme, evil].map((p) => [p.id, { keys: [p.publicKeyPem], ...(options.scopes?.[p.id] ? { scopes: options.scopes[p.id] } : {}) }]));
  await writeFile(path.join(ws.root, 'trust.json'), JSON.stringify({ publishers }, null, 2));
  await writeFile(path.join(ws.root, 'plinth.config.yaml'), `plugins: [plugins]\ntrust: { store: trust.json, policy: ${options.policy ?? 'required'} }\ndataDir: data\n${options.config ?? ''}`);
  const config = await loadHostConfig({ cwd: ws.root, env: {} });
  const lines = options.logLines;
  const logger = lines ? pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }) : silent;
  const host = new Host(config, { logger, stopSandboxProcesses: false });
  await host.start();
  return host;
}

function refusal(host: Host, id: string, dir: string): { state: string; code: unknown; message: string } | undefined {
  const e = host.list().find((x) => x.id === id && x.path === dir);
  return e ? { state: e.state, code: e.reason?.code, message: typeof e.reason?.message === 'string' ? e.reason.message : '' } : undefined;
}

async function get(host: Host, id = 'vault'): Promise<Record<string, Json>> {
  return (await host.call(id, 'get', {})) as Record<string, Json>;
}

const exists = (file: string) => readFile(file).then(() => true, () => false);

describe('id → storage: every distinct id its own data folder (collision-free, reversible)', () => {
  // The old transform (topicWord) folded all of these into "acme_vault".
  const folded = ['@acme/vault', 'acme.vault', 'acme~vault', 'acme_vault', 'acme-vault', '@acme/vault.x', '@acme.vault/x', 'acme.vault.x', 'acme__vault', 'acme_5fvault', 'acme%2evault', '_40acme_2fvault'];

  it('ids that differ only in characters the old transform folds get distinct names, also on a case-insensitive file system', () => {
    assert.equal(new Set(folded.map(topicWord)).size < folded.length, true, 'the old transform does fold them');
    const names = folded.filter((id) => /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/.test(id)).map(extensionStorageName);
    assert.equal(new Set(names).size, names.length);
    assert.equal(new Set(names.map((n) => n.toLowerCase())).size, names.length);
    for (const n of names) assert.match(n, /^[a-z0-9%-]+$/);
    assert.equal(extensionStorageName('@acme/vault'), '%40acme%2fvault');
    assert.equal(extensionStorageName('audit-log'), 'audit-log', 'plain ids keep their folder');
  });

  it('is reversible, rejects non-canonical spellings, and escapes Windows device names', () => {
    for (const id of [...folded, 'con', 'nul', 'com1', 'lpt9', 'Upper', 'ünï', 'a'.repeat(60)]) assert.equal(extensionIdFromStorageName(extensionStorageName(id)), id, id);
    assert.notEqual(extensionStorageName('con'), 'con');
    assert.notEqual(extensionStorageName('aux'), 'aux');
    assert.equal(extensionIdFromStorageName('%61bc'), undefined, '"%61" spells "a", which is kept as is');
    assert.equal(extensionIdFromStorageName('a.b'), undefined);
  });

  it('random ids over the whole id alphabet never collide, and long escaped ids get a bounded hashed name', () => {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789._~-';
    const ids = new Set<string>();
    let seed = 7;
    const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), (seed >>> 8) % n);
    while (ids.size < 5000) {
      const word = () => 'a' + Array.from({ length: 1 + rnd(6) }, () => alphabet[rnd(alphabet.length)]).join('');
      ids.add(rnd(3) === 0 ? `@${word()}/${word()}` : word());
    }
    const names = [...ids].map(extensionStorageName);
    assert.equal(new Set(names.map((n) => n.toLowerCase())).size, ids.size);
    // Upgrade safety: a folder the old transform wrote is reused only by the id it was that id's own name for.
    const oldOwners = new Map<string, string[]>();
    for (const id of ids) oldOwners.set(topicWord(id), [...(oldOwners.get(topicWord(id)) ?? []), id]);
    for (const id of ids) {
      const owners = oldOwners.get(extensionStorageName(id));
      if (owners) assert.deepEqual(owners, [id], `${id} would reuse the old folder of ${owners.join(', ')}`);
    }
    const long = ['a' + '.'.repeat(150), 'a' + '~'.repeat(150), 'b' + '.'.repeat(150)];
    const longNames = long.map(extensionStorageName);
    assert.equal(new Set(longNames).size, 3);
    for (const n of longNames) assert.ok(n.length <= 200 && n.startsWith('%h'), n);
    assert.notEqual(extensionDataDir('/d', long[0]!), extensionDataDir('/d', long[2]!));
  });

  it('a data folder the old transform shared is not adopted; the operator is told where it is', async () => {
    const ws = await workspace();
    const legacy = path.join(ws.data, 'extensions', 'acme_vault');
    await mkdir(legacy, { recursive: true });
    await writeFile(path.join(legacy, 'secret.txt'), 'written by some id that folded to acme_vault');
    await writeVault(ws.plugins, '@acme/vault', { id: '@acme/vault', build: 'acme', signer: acme });
    const lines: string[] = [];
    const host = await startHost(ws, { logLines: lines });
    try {
      assert.deepEqual(await get(host, '@acme/vault'), { build: 'acme', id: '@acme/vault', file: null, kv: null });
    } finally {
      await host.stop();
    }
    const warning = lines.map((l) => JSON.parse(l) as { legacy?: string; level: number }).find((l) => l.legacy === legacy);
    assert.ok(warning && warning.level === 40, lines.join('\n'));
    assert.equal(await readFile(path.join(legacy, 'secret.txt'), 'utf8'), 'written by some id that folded to acme_vault');
  });

  it('regression: @acme/vault, acme.vault and acme~vault no longer read each other’s files and kv', async () => {
    const ws = await workspace();
    const ids = ['@acme/vault', 'acme.vault', 'acme~vault', 'acme_vault'];
    for (const [i, id] of ids.entries()) await writeVault(ws.plugins, id.startsWith('@') ? id : `v${i}`, { id, build: id, signer: acme });
    const host = await startHost(ws);
    try {
      for (const id of ids) await host.call(id, 'put', { secret: `secret of ${id}` });
      for (const id of ids) assert.deepEqual(await get(host, id), { build: id, id, file: `secret of ${id}`, kv: `secret of ${id}` });
      for (const id of ids) assert.equal(await readFile(path.join(extensionDataDir(ws.data, id), 'secret.txt'), 'utf8'), `secret of ${id}`);
      assert.equal(new Set(ids.map((id) => extensionDataDir(ws.data, id))).size, ids.length);
    } finally {
      await host.stop();
    }
  });
});

describe('binding files', () => {
  it('are created atomically and never overwritten by a second claim; a re-assignment replaces them whole', async () => {
    const data = path.join((await workspace()).root, 'data');
    const claims = await Promise.all(['acme', 'evil', 'acme', 'evil'].map((publisher) => writePublisherBinding(data, { id: '@acme/vault', publisher, since: 'now' }, { replace: false })));
    assert.deepEqual(claims.filter(Boolean).length, 1);
    const first = await readPublisherBinding(data, '@acme/vault');
    assert.equal(first?.publisher, ['acme', 'evil', 'acme', 'evil'][claims.indexOf(true)], 'the winner’s binding, whole');
    assert.equal(await writePublisherBinding(data, { id: '@acme/vault', publisher: 'evil', since: 'later', previous: first!.publisher, assignedBy: 'extensions.@acme/vault.publisher' }, { replace: true }), true);
    assert.equal((await readPublisherBinding(data, '@acme/vault'))?.publisher, 'evil');
    assert.deepEqual((await readdir(path.join(data, 'extensions'))).sort(), ['%40acme%2fvault.publisher.json'], 'no temporary files left');
  });

  it('a binding file that names another id is refused', async () => {
    const data = path.join((await workspace()).root, 'data');
    await mkdir(path.join(data, 'extensions'), { recursive: true });
    await writeFile(publisherBindingFile(data, 'vault'), JSON.stringify({ id: 'other', publisher: 'acme' }));
    await rejectsWith(readPublisherBinding(data, 'vault'), 'PLINTH_ERR_PUBLISHER_BINDING_INVALID');
    assert.equal(await readPublisherBinding(data, 'never-started'), undefined);
  });
});

describe('a trusted copy is never replaced or shadowed by an untrusted one', () => {
  it('regression: under warn an unsigned higher version does not replace the trusted copy (at start and on hot reload)', async () => {
    const ws = await workspace();
    const trusted = await writeVault(ws.plugins, 'z-vault', { build: 'acme', signer: acme });
    const unsigned = await writeVault(ws.plugins, 'a-vault', { version: '9.0.0', build: 'unsigned' });
    let host = await startHost(ws, { policy: 'warn' });
    try {
      await host.call('vault', 'put', { secret: 's1' });
      assert.deepEqual(await get(host), { build: 'acme', id: 'vault', file: 's1', kv: 's1' });
      const r = refusal(host, 'vault', unsigned)!;
      assert.equal(r.code, 'PLINTH_ERR_DUPLICATE_EXTENSION');
      assert.match(r.message, /not signed by a trusted publisher.*trusted copy of vault is installed/);
      assert.equal(host.get('vault')?.pkg.sourceDir, trusted);
    } finally {
      await host.stop();
    }
    // Hot reload: an even higher unsigned copy appears while the trusted one serves.
    await rm(unsigned, { recursive: true });
    host = await startHost(ws, { policy: 'warn' });
    try {
      const later = await writeVault(ws.plugins, 'b-vault', { version: '10.0.0', build: 'unsigned-2' });
      await host.reload();
      assert.equal(refusal(host, 'vault', later)?.code, 'PLINTH_ERR_DUPLICATE_EXTENSION');
      assert.deepEqual(await get(host), { build: 'acme', id: 'vault', file: 's1', kv: 's1' });
      assert.equal(await readFile(path.join(extensionDataDir(ws.data, 'vault'), 'secret.txt'), 'utf8'), 's1');
    } finally {
      await host.stop();
    }
  });

  it('`plinth ls` lists the untrusted copy as not used, with the reason', async () => {
    const ws = await workspace();
    await writeVault(ws.plugins, 'z-vault', { build: 'acme', signer: acme });
    await writeVault(ws.plugins, 'a-vault', { version: '2.0.0', build: 'unsigned' });
    await writeFile(path.join(ws.root, 'trust.json'), JSON.stringify({ publishers: { acme: { keys: [acme.publicKeyPem] } } }));
    const r = await runCli(['ls', '--plugins', ws.plugins, '--trust', path.join(ws.root, 'trust.json'), '--trust-policy', 'warn', '--data-dir', ws.data, '--json'], { cwd: ws.root });
    const rows = (JSON.parse(r.stdout) as { data: { extensions: Array<{ version: string; state: string; reason?: { code: string } }> } }).data.extensions;
    const untrusted = rows.find((x) => x.version === '2.0.0')!;
    assert.equal(untrusted.reason?.code, 'PLINTH_ERR_DUPLICATE_EXTENSION');
    assert.equal(rows.find((x) => x.version === '1.0.0')!.state, 'verified');
  });
});

describe("an id's data is bound to the publisher that created it", () => {
  it('regression: under required a same-version copy from another trusted publisher, sorting first, does not inherit the data and kv', async () => {
    const ws = await workspace();
    const legit = await writeVault(ws.plugins, 'z-vault', { build: 'acme', signer: acme });
    let host = await startHost(ws);
    try {
      await host.call('vault', 'put', { secret: 'acme secret' });
    } finally {
      await host.stop();
    }
    const binding = publisherBindingFile(ws.data, 'vault');
    const recorded = JSON.parse(await readFile(binding, 'utf8')) as { id: string; publisher: string };
    assert.deepEqual([recorded.id, recorded.publisher], ['vault', 'acme']);
    const bindingBefore = await readFile(binding, 'utf8');

    const intruder = await writeVault(ws.plugins, 'a-vault', { build: 'evil', signer: evil });
    host = await startHost(ws);
    try {
      const r = refusal(host, 'vault', intruder)!;
      assert.equal(r.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
      assert.match(r.message, /"evil"/);
      assert.match(r.message, /"acme"/);
      assert.equal(host.get('vault')?.pkg.sourceDir, legit);
      assert.deepEqual(await get(host), { build: 'acme', id: 'vault', file: 'acme secret', kv: 'acme secret' });

      // Hot reload: a higher version from the other publisher appears while acme's copy serves.
      await host.call('vault', 'put', { secret: 'acme secret 2' });
      const higher = await writeVault(ws.plugins, 'b-vault', { version: '2.0.0', build: 'evil-2', signer: evil });
      await host.reload();
      assert.equal(refusal(host, 'vault', higher)?.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
      assert.deepEqual(await get(host), { build: 'acme', id: 'vault', file: 'acme secret 2', kv: 'acme secret 2' });
    } finally {
      await host.stop();
    }
    assert.equal(await readFile(binding, 'utf8'), bindingBefore, 'the binding is untouched');
    assert.equal(await readFile(path.join(extensionDataDir(ws.data, 'vault'), 'secret.txt'), 'utf8'), 'acme secret 2');
  });

  it('regression: an unsigned copy (policy warn) cannot take over the data of an id bound to a trusted publisher once its copy is gone', async () => {
    const ws = await workspace();
    const legit = await writeVault(ws.plugins, 'vault', { build: 'acme', signer: acme });
    await writeVault(ws.plugins, 'bystander', { id: 'bystander', build: 'bystander', signer: acme });
    let host = await startHost(ws, { policy: 'warn' });
    try {
      await host.call('vault', 'put', { secret: 'acme secret' });
    } finally {
      await host.stop();
    }
    await rm(legit, { recursive: true });
    const unsigned = await writeVault(ws.plugins, 'vault-unsigned', { build: 'unsigned' });
    host = await startHost(ws, { policy: 'warn' });
    try {
      const r = refusal(host, 'vault', unsigned)!;
      assert.equal(r.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
      assert.match(r.message, new RegExp(`"${UNSIGNED_PUBLISHER}".*"acme"`));
      await rejectsWith(host.call('vault', 'get', {}), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
      assert.deepEqual(await get(host, 'bystander'), { build: 'bystander', id: 'bystander', file: null, kv: null });
    } finally {
      await host.stop();
    }
    assert.equal(await readFile(path.join(extensionDataDir(ws.data, 'vault'), 'secret.txt'), 'utf8'), 'acme secret');
    assert.equal((JSON.parse(await readFile(publisherBindingFile(ws.data, 'vault'), 'utf8')) as { publisher: string }).publisher, 'acme');
  });

  it('with the owner’s copy gone, neither another trusted publisher’s copy nor an unsigned one gets the id; the id’s reason is the mismatch', async () => {
    const ws = await workspace();
    const legit = await writeVault(ws.plugins, 'vault', { build: 'acme', signer: acme });
    let host = await startHost(ws, { policy: 'warn' });
    try {
      await host.call('vault', 'put', { secret: 'acme secret' });
    } finally {
      await host.stop();
    }
    await rm(legit, { recursive: true });
    const other = await writeVault(ws.plugins, 'vault-evil', { build: 'evil', signer: evil });
    const unsigned = await writeVault(ws.plugins, 'vault-unsigned', { version: '3.0.0', build: 'unsigned' });
    host = await startHost(ws, { policy: 'warn' });
    try {
      assert.equal(refusal(host, 'vault', other)?.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
      assert.equal(refusal(host, 'vault', unsigned)?.code, 'PLINTH_ERR_DUPLICATE_EXTENSION');
      assert.equal(host.get('vault'), undefined);
      const err = await rejectsWith(host.call('vault', 'get', {}), 'PLINTH_ERR_EXTENSION_UNAVAILABLE');
      assert.match(err.message, /belongs to publisher "acme"/);
    } finally {
      await host.stop();
    }
    assert.equal(await readFile(path.join(extensionDataDir(ws.data, 'vault'), 'secret.txt'), 'utf8'), 'acme secret');
  });

  it('an unsigned extension is bound to "unsigned": a later copy signed by a trusted publisher needs the operator to re-assign it', async () => {
    const ws = await workspace();
    const unsigned = await writeVault(ws.plugins, 'vault', { build: 'dev' });
    let host = await startHost(ws, { policy: 'warn' });
    try {
      await host.call('vault', 'put', { secret: 'dev data' });
    } finally {
      await host.stop();
    }
    assert.equal((JSON.parse(await readFile(publisherBindingFile(ws.data, 'vault'), 'utf8')) as { publisher: string }).publisher, UNSIGNED_PUBLISHER);
    await rm(unsigned, { recursive: true });
    const signed = await writeVault(ws.plugins, 'vault', { build: 'acme', signer: acme });
    host = await startHost(ws, { policy: 'warn' });
    try {
      assert.equal(refusal(host, 'vault', signed)?.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
    } finally {
      await host.stop();
    }
    host = await startHost(ws, { policy: 'warn', config: 'extensions:\n  vault:\n    publisher: acme\n' });
    try {
      assert.deepEqual(await get(host), { build: 'acme', id: 'vault', file: 'dev data', kv: 'dev data' });
    } finally {
      await host.stop();
    }
  });

  it('extensions.<id>.publisher re-assigns the id: the new publisher gets the data, the old one is refused, the binding records the change', async () => {
    const ws = await workspace();
    const old = await writeVault(ws.plugins, 'z-vault', { build: 'acme', signer: acme });
    let host = await startHost(ws);
    try {
      await host.call('vault', 'put', { secret: 'handed over' });
    } finally {
      await host.stop();
    }
    const successor = await writeVault(ws.plugins, 'a-vault', { build: 'evil', signer: evil });
    host = await startHost(ws, { config: 'extensions:\n  vault:\n    publisher: evil\n' });
    try {
      assert.equal(host.get('vault')?.pkg.sourceDir, successor);
      assert.deepEqual(await get(host), { build: 'evil', id: 'vault', file: 'handed over', kv: 'handed over' });
      const r = refusal(host, 'vault', old)!;
      assert.equal(r.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
      assert.match(r.message, /extensions\.vault\.publisher/);
    } finally {
      await host.stop();
    }
    const binding = JSON.parse(await readFile(publisherBindingFile(ws.data, 'vault'), 'utf8')) as Record<string, string>;
    assert.deepEqual([binding.publisher, binding.previous, binding.assignedBy], ['evil', 'acme', 'extensions.vault.publisher']);
    // Without the key the binding now holds: acme's copy stays refused.
    host = await startHost(ws);
    try {
      assert.equal(refusal(host, 'vault', old)?.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
      assert.equal((await get(host)).build, 'evil');
    } finally {
      await host.stop();
    }
  });

  it('extensions.<id>.publisher must be a publisher id', async () => {
    const ws = await workspace();
    await writeFile(path.join(ws.root, 'plinth.config.yaml'), 'extensions:\n  vault:\n    publisher: "Not A Publisher"\n');
    const err = await rejectsWith(loadHostConfig({ cwd: ws.root, env: {} }), 'PLINTH_ERR_CONFIG_INVALID');
    assert.ok(err.problems.some((p) => p.path === '/extensions/vault/publisher'), JSON.stringify(err.problems));
  });

  it('an id offered by two trusted publishers with no data yet starts neither (folder order does not decide); assigning one starts it', async () => {
    const ws = await workspace();
    const a = await writeVault(ws.plugins, 'a-vault', { build: 'evil', signer: evil });
    const z = await writeVault(ws.plugins, 'z-vault', { build: 'acme', signer: acme });
    await writeVault(ws.plugins, 'bystander', { id: 'bystander', build: 'bystander', signer: acme });
    let host = await startHost(ws);
    try {
      assert.equal(refusal(host, 'vault', a)?.code, 'PLINTH_ERR_PUBLISHER_AMBIGUOUS');
      assert.equal(refusal(host, 'vault', z)?.code, 'PLINTH_ERR_PUBLISHER_AMBIGUOUS');
      assert.equal(host.get('vault'), undefined);
      assert.equal((await get(host, 'bystander')).build, 'bystander');
    } finally {
      await host.stop();
    }
    assert.equal(await exists(publisherBindingFile(ws.data, 'vault')), false, 'nobody claimed the id');
    host = await startHost(ws, { config: 'extensions:\n  vault:\n    publisher: acme\n' });
    try {
      assert.equal((await get(host)).build, 'acme');
      assert.equal(refusal(host, 'vault', a)?.code, 'PLINTH_ERR_PUBLISHER_MISMATCH');
    } finally {
      await host.stop();
    }
  });

  it('a damaged binding file refuses the id (fail closed) and leaves its data alone; other extensions keep serving', async () => {
    const ws = await workspace();
    await writeVault(ws.plugins, 'vault', { build: 'acme', signer: acme });
    await writeVault(ws.plugins, 'bystander', { id: 'bystander', build: 'bystander', signer: acme });
    let host = await startHost(ws);
    try {
      await host.call('vault', 'put', { secret: 'kept' });
    } finally {
      await host.stop();
    }
    await writeFile(publisherBindingFile(ws.data, 'vault'), '{ not json');
    host = await startHost(ws);
    try {
      const e = host.list().find((x) => x.id === 'vault')!;
      assert.equal(e.reason?.code, 'PLINTH_ERR_PUBLISHER_BINDING_INVALID');
      assert.equal((await get(host, 'bystander')).build, 'bystander');
    } finally {
      await host.stop();
    }
    assert.equal(await readFile(path.join(extensionDataDir(ws.data, 'vault'), 'secret.txt'), 'utf8'), 'kept');
    assert.equal(await readFile(publisherBindingFile(ws.data, 'vault'), 'utf8'), '{ not json');
  });

  it('the binding file lies outside the extension’s own folder: its fs grants cannot reach it', async () => {
    const ws = await workspace();
    await writeVault(ws.plugins, 'vault', { build: 'acme', signer: acme });
    const host = await startHost(ws);
    try {
      const file = path.relative(extensionDataDir(ws.data, 'vault'), publisherBindingFile(ws.data, 'vault'));
      assert.ok(file.startsWith('..'), file);
      const peek = (await host.call('vault', 'peek', { path: file })) as { text: string };
      assert.equal(peek.text, 'error: PLINTH_ERR_PERMISSION_DENIED');
    } finally {
      await host.stop();
    }
  });
});

describe('the trust store says which ids a publisher may sign (scopes)', () => {
  it('scope entries match like npm scopes', () => {
    const store = parseTrustStore({ publishers: { acme: { keys: [acme.publicKeyPem], scopes: ['@acme/*', 'audit-log'] }, any: { keys: [evil.publicKeyPem] } } }, 't.json');
    const p = store.publishers.get('acme')!;
    assert.equal(scopeAllowing(p, '@acme/vault'), '@acme/*');
    assert.equal(scopeAllowing(p, 'audit-log'), 'audit-log');
    for (const id of ['@acme-x/vault', '@acmex/vault', 'acme', 'vault', 'audit-log2', '@other/audit-log']) assert.equal(scopeAllowing(p, id), undefined, id);
    assert.equal(scopeAllowing(store.publishers.get('any')!, 'whatever'), '*', 'no scopes: any id (as before)');
  });

  it('the publisher id "unsigned" is reserved in a trust store, and bad scope entries are refused', () => {
    assert.throws(() => parseTrustStore({ publishers: { unsigned: { keys: [acme.publicKeyPem] } } }, 't.json'), { code: 'PLINTH_ERR_TRUST_STORE_INVALID' });
    for (const bad of ['@acme', '@acme/**', 'Acme', '*/x', '']) {
      assert.throws(() => parseTrustStore({ publishers: { acme: { keys: [acme.publicKeyPem], scopes: [bad] } } }, 't.json'), { code: 'PLINTH_ERR_TRUST_STORE_INVALID' }, bad);
    }
  });

  it('regression: a trusted publisher signing another publisher’s id is refused with SIG_OUT_OF_SCOPE naming the id, the publisher and the key; the owner’s copy serves', async () => {
    const ws = await workspace();
    const legit = await writeVault(ws.plugins, 'z-vault', { id: '@acme/vault', build: 'acme', signer: acme });
    const forged = await writeVault(ws.plugins, 'a-vault', { id: '@acme/vault', version: '5.0.0', build: 'evil', signer: evil });
    const scopes = { acme: ['@acme/*'], evil: ['evil-tool', '@evil/*'] };
    const host = await startHost(ws, { scopes });
    try {
      const r = refusal(host, '@acme/vault', forged)!;
      assert.equal(r.code, 'PLINTH_ERR_SIG_OUT_OF_SCOPE');
      assert.match(r.message, /"evil"/);
      assert.match(r.message, /"@acme\/vault"/);
      assert.match(r.message, /#\/publishers\/evil\/scopes/);
      assert.equal(host.get('@acme/vault')?.pkg.sourceDir, legit);
      await host.call('@acme/vault', 'put', { secret: 'mine' });
      assert.deepEqual(await host.call('@acme/vault', 'get', {}), { build: 'acme', id: '@acme/vault', file: 'mine', kv: 'mine' });
    } finally {
      await host.stop();
    }
    const store = parseTrustStore(JSON.parse(await readFile(path.join(ws.root, 'trust.json'), 'utf8')), path.join(ws.root, 'trust.json'));
    await rejectsWith(verifyExtension(forged, store, '@acme/vault'), 'PLINTH_ERR_SIG_OUT_OF_SCOPE');
    assert.equal((await verifyExtension(legit, store, '@acme/vault')).scope, '@acme/*');

    // The CLI shows it: verify refuses with the code, ls lists the copy as failed and the owner's with its scope.
    const trust = path.join(ws.root, 'trust.json');
    const v = await runCli(['verify', forged, '--trust', trust, '--json'], { cwd: ws.root });
    assert.equal(v.code, 1);
    assert.equal((JSON.parse(v.stdout) as { error: { code: string } }).error.code, 'PLINTH_ERR_SIG_OUT_OF_SCOPE');
    const ok = await runCli(['verify', legit, '--trust', trust], { cwd: ws.root });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /scope @acme\/\*/);
    const ls = await runCli(['ls', '--plugins', ws.plugins, '--trust', trust, '--data-dir', ws.data], { cwd: ws.root });
    assert.match(ls.stdout, /PLINTH_ERR_SIG_OUT_OF_SCOPE/);
    assert.match(ls.stdout, /signed by acme \(scope @acme\/\*\)/);
  });

  it('under warn an out-of-scope copy counts as untrusted: it never shadows the trusted copy', async () => {
    const ws = await workspace();
    await writeVault(ws.plugins, 'z-vault', { id: '@acme/vault', build: 'acme', signer: acme });
    const forged = await writeVault(ws.plugins, 'a-vault', { id: '@acme/vault', version: '5.0.0', build: 'evil', signer: evil });
    const host = await startHost(ws, { policy: 'warn', scopes: { evil: ['@evil/*'] } });
    try {
      assert.equal(refusal(host, '@acme/vault', forged)?.code, 'PLINTH_ERR_DUPLICATE_EXTENSION');
      assert.equal(((await host.call('@acme/vault', 'get', {})) as { build: string }).build, 'acme');
    } finally {
      await host.stop();
    }
  });
});
