// Issue 7 §6, the file-related small doors: the signature, the lockfile digest and the load path must agree on
// what a package is. Files named after Object.prototype keys are covered like any other; empty folders, two
// names that one case-insensitive file system takes for one, control characters in names and duplicate entries
// in plinth.sig are refused with their own codes. Real signed fixtures, a real host, a bystander that keeps serving.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { IsolateProcess } from '../../src/sandbox/index.ts';
import { Registry } from '../../src/registry/index.ts';
import { Host } from '../../src/host/index.ts';
import { DurableBus } from '../../src/events/index.ts';
import { Budget } from '../../src/resilience/index.ts';
import { hashPackageFiles, listPackageFiles, signExtension, verifyExtension, type SignatureFile } from '../../src/trust/index.ts';
import { fileListDigest } from '../../src/resolve/index.ts';
import { rejectsWith, tempDir, trustStore } from '../helpers.ts';
import { assertBystanderServes, publisher, securityHost, stateOf, SECURITY_FIXTURES } from './snapshot-helpers.ts';

after(() => IsolateProcess.shutdownAll());

/** Every key an object literal inherits: each must be a file name like any other. */
const SPECIAL_NAMES = Object.getOwnPropertyNames(Object.prototype).sort();
const store = () => trustStore([publisher]);

async function extension(): Promise<string> {
  const dir = path.join(await tempDir('plinth-names-'), 'ext');
  await cp(path.join(SECURITY_FIXTURES, 'snapshot-isolate'), dir, { recursive: true });
  return dir;
}

describe('files named after Object.prototype keys', () => {
  it('the list covers every special name', () => {
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__']) assert.ok(SPECIAL_NAMES.includes(name), name);
  });

  for (const name of SPECIAL_NAMES) {
    it(`"${name}" (top level and in a folder) is signed, in the lockfile digest, and any change to it is refused`, async () => {
      const dir = await extension();
      await mkdir(path.join(dir, 'lib'));
      await writeFile(path.join(dir, name), `top ${name}\n`);
      await writeFile(path.join(dir, 'lib', name), `nested ${name}\n`);
      const sig = await signExtension(dir, publisher.privateKey, publisher.id);
      assert.ok(Object.hasOwn(sig.files, name) && Object.hasOwn(sig.files, `lib/${name}`), `${name} is listed in plinth.sig`);
      const onDisk = JSON.parse(await readFile(path.join(dir, 'plinth.sig'), 'utf8')) as SignatureFile;
      assert.ok(Object.hasOwn(onDisk.files, name), `${name} is written to plinth.sig`);
      assert.ok((await listPackageFiles(dir)).includes(name));
      const v = await verifyExtension(dir, store());
      assert.ok(Object.hasOwn(v.files, name));
      const digest = fileListDigest(await hashPackageFiles(dir));

      await writeFile(path.join(dir, name), 'changed\n');
      const changed = await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_FILE_CHANGED');
      assert.equal(changed.file, path.join(dir, name));
      assert.notEqual(fileListDigest(await hashPackageFiles(dir)), digest, 'the lockfile digest covers it');

      await rm(path.join(dir, name));
      const missing = await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_FILE_MISSING');
      assert.equal(missing.file, path.join(dir, name));
    });

    it(`"${name}" added after signing is refused as added`, async () => {
      const dir = await extension();
      await signExtension(dir, publisher.privateKey, publisher.id);
      await writeFile(path.join(dir, name), 'export default 1;\n');
      const err = await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_FILE_ADDED');
      assert.equal(err.file, path.join(dir, name));
    });
  }

  it('host: a __proto__ file slipped into a signed package is refused; the bystander keeps serving', async () => {
    const w = await securityHost({ fixtures: { hostile: 'snapshot-isolate' }, start: false });
    await writeFile(path.join(w.plugins, 'hostile', '__proto__'), "export const CODE = 'smuggled';\n");
    await w.host.start();
    try {
      assert.deepEqual(stateOf(w.host, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_SIG_FILE_ADDED' });
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });

  it('host, --frozen-lockfile: a re-signed change to a file named __proto__ is drift', async () => {
    const w = await securityHost({
      fixtures: { hostile: 'snapshot-isolate' },
      edit: async (folder, dir) => {
        if (folder === 'hostile') await writeFile(path.join(dir, '__proto__'), 'locked\n');
      },
      start: false,
    });
    const lockfile = path.join(w.root, 'plinth.lock.json');
    const registry = new Registry({
      config: w.host.config,
      log: pino({ level: 'silent' }),
      bus: new DurableBus(),
      budget: new Budget(w.host.config.budget),
      kv: () => new Map(),
      env: {},
      trustStore: trustStore([publisher]),
    });
    const { lock } = await registry.writeLockfile(lockfile);
    assert.deepEqual(Object.keys(lock.extensions).sort(), ['snapshot-isolate', 'well-behaved']);
    await writeFile(path.join(w.plugins, 'hostile', '__proto__'), 'changed\n');
    await signExtension(path.join(w.plugins, 'hostile'), publisher.privateKey, publisher.id);
    const frozen = new Host(w.host.config, { logger: pino({ level: 'silent' }), frozenLockfile: lockfile, stopSandboxProcesses: false });
    await frozen.start();
    try {
      assert.deepEqual(stateOf(frozen, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_LOCKFILE_DRIFT' });
      await assertBystanderServes(frozen);
    } finally {
      await frozen.stop();
    }
  });

  it('host, policy off: a __proto__ file is part of the snapshot and of the lockfile digest', async () => {
    const w = await securityHost({ fixtures: { hostile: 'snapshot-isolate' }, policy: 'off', start: false });
    await writeFile(path.join(w.plugins, 'hostile', '__proto__'), 'one\n');
    await w.host.start();
    try {
      const running = w.host.get('snapshot-isolate')!;
      assert.equal(await readFile(path.join(running.pkg.dir, '__proto__'), 'utf8'), 'one\n');
      assert.equal(running.digest, fileListDigest(await hashPackageFiles(path.join(w.plugins, 'hostile'))));
      await writeFile(path.join(w.plugins, 'hostile', '__proto__'), 'two\n');
      assert.notEqual(running.digest, fileListDigest(await hashPackageFiles(path.join(w.plugins, 'hostile'))));
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });
});

describe('empty folders are refused (a signature lists files; it cannot cover a folder with none)', () => {
  it('plinth sign refuses a package with an empty folder, naming it', async () => {
    const dir = await extension();
    await mkdir(path.join(dir, 'assets', 'empty'), { recursive: true });
    const err = await rejectsWith(signExtension(dir, publisher.privateKey, publisher.id), 'PLINTH_ERR_PACKAGE_EMPTY_FOLDER');
    assert.equal(err.file, path.join(dir, 'assets', 'empty'));
  });

  it('a file deleted after signing is still named as missing, not its emptied folder', async () => {
    const dir = await extension();
    await mkdir(path.join(dir, 'lib'));
    await writeFile(path.join(dir, 'lib', 'only.js'), '//\n');
    await signExtension(dir, publisher.privateKey, publisher.id);
    await rm(path.join(dir, 'lib', 'only.js'));
    const err = await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_FILE_MISSING');
    assert.equal(err.file, path.join(dir, 'lib', 'only.js'));
  });

  for (const policy of ['required', 'warn', 'off'] as const) {
    it(`host, policy ${policy}: an empty folder added after signing refuses the package; the bystander keeps serving`, async () => {
      const w = await securityHost({ fixtures: { hostile: 'snapshot-isolate' }, policy, start: false });
      await mkdir(path.join(w.plugins, 'hostile', 'empty'));
      await w.host.start();
      try {
        assert.deepEqual(stateOf(w.host, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_PACKAGE_EMPTY_FOLDER' });
        await assertBystanderServes(w.host);
      } finally {
        await w.host.stop();
      }
    });
  }
});

describe('names that differ only in case or Unicode normalization are refused', () => {
  const variants: Array<[string, string, string]> = [
    ['files in case', 'code.js', 'Code.js'],
    ['folders in case', 'lib/a.js', 'LIB/b.js'],
    ['NFC and NFD', 'caf\u00e9.js', 'cafe\u0301.js'],
    ['a trailing dot (dropped by Windows)', 'x.js', 'x.js.'],
    ['sharp s and SS', 'stra\u00dfe.js', 'STRASSE.js'],
  ];
  for (const [what, a, b] of variants) {
    it(`${what}: plinth sign refuses, and so does the host when one is added after signing (every policy)`, async () => {
      const dir = await extension();
      for (const f of [a, b]) {
        await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
        await writeFile(path.join(dir, f), `// ${f}\n`);
      }
      await rejectsWith(signExtension(dir, publisher.privateKey, publisher.id), 'PLINTH_ERR_PACKAGE_NAME_CONFLICT');
      await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_PACKAGE_NAME_CONFLICT');

      for (const policy of ['required', 'off'] as const) {
        const w = await securityHost({
          fixtures: { hostile: 'snapshot-isolate' },
          policy,
          edit: async (folder, d) => {
            if (folder !== 'hostile') return;
            await mkdir(path.dirname(path.join(d, a)), { recursive: true });
            await writeFile(path.join(d, a), `// ${a}\n`);
          },
          start: false,
        });
        await mkdir(path.dirname(path.join(w.plugins, 'hostile', b)), { recursive: true });
        await writeFile(path.join(w.plugins, 'hostile', b), `// ${b}\n`);
        await w.host.start();
        try {
          assert.deepEqual(stateOf(w.host, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_PACKAGE_NAME_CONFLICT' }, policy);
          await assertBystanderServes(w.host);
        } finally {
          await w.host.stop();
        }
      }
    });
  }

  it('a signature that lists a case variant of the file on disk is refused (missing and added)', async () => {
    const dir = await extension();
    await rename(path.join(dir, 'code.js'), path.join(dir, 'CODE.js'));
    await signExtension(dir, publisher.privateKey, publisher.id);
    await rename(path.join(dir, 'CODE.js'), path.join(dir, 'code.js'));
    const err = await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_FILE_MISSING');
    assert.deepEqual(err.problems.map((p) => p.path).sort(), ['CODE.js', 'code.js']);
  });
});

describe('control characters in names are refused (the lockfile digest is one line per file)', () => {
  for (const name of ['a\nb.js', 'tab\tname.js', 'bell\u0007.js', 'del\u007f.js']) {
    it(`${JSON.stringify(name)}: refused by sign and verify`, async () => {
      const dir = await extension();
      await writeFile(path.join(dir, name), '//\n');
      await rejectsWith(signExtension(dir, publisher.privateKey, publisher.id), 'PLINTH_ERR_PACKAGE_FILE_NAME_INVALID');
      await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_PACKAGE_FILE_NAME_INVALID');
    });
  }
});

describe('duplicate entries in plinth.sig are refused', () => {
  /** Writes plinth.sig with one more member inserted first into the object that `at` names ("files" or top level). */
  async function duplicate(dir: string, at: 'files' | 'top', name: string, value: string): Promise<void> {
    const file = path.join(dir, 'plinth.sig');
    const text = await readFile(file, 'utf8');
    const member = `${JSON.stringify(name)}: ${JSON.stringify(value)},`;
    await writeFile(file, at === 'files' ? text.replace('"files": {', `"files": { ${member}`) : text.replace('{', `{ ${member}`));
  }

  it('a file listed twice (the later entry genuine, so JSON.parse alone would accept it): SIG_DUPLICATE_ENTRY', async () => {
    const dir = await extension();
    await signExtension(dir, publisher.privateKey, publisher.id);
    await duplicate(dir, 'files', 'index.js', '0'.repeat(64));
    const err = await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_DUPLICATE_ENTRY');
    assert.equal(err.file, path.join(dir, 'plinth.sig'));
    assert.deepEqual(err.problems.map((p) => p.path), ['/files/index.js']);
  });

  it('a duplicate top-level member, and one spelled with an escape, are caught too', async () => {
    const dir = await extension();
    await signExtension(dir, publisher.privateKey, publisher.id);
    await duplicate(dir, 'top', 'publisher', 'someone-else');
    assert.deepEqual((await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_DUPLICATE_ENTRY')).problems.map((p) => p.path), ['/publisher']);
    await signExtension(dir, publisher.privateKey, publisher.id);
    const file = path.join(dir, 'plinth.sig');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"files": {', '"files": { "code\\u002ejs": "' + '1'.repeat(64) + '",'));
    assert.deepEqual((await rejectsWith(verifyExtension(dir, store()), 'PLINTH_ERR_SIG_DUPLICATE_ENTRY')).problems.map((p) => p.path), ['/files/code.js']);
  });

  it('host: the package is refused with the code; the bystander keeps serving', async () => {
    const w = await securityHost({ fixtures: { hostile: 'snapshot-isolate' }, start: false });
    await duplicate(path.join(w.plugins, 'hostile'), 'files', 'code.js', 'f'.repeat(64));
    await w.host.start();
    try {
      assert.deepEqual(stateOf(w.host, 'snapshot-isolate'), { state: 'failed', code: 'PLINTH_ERR_SIG_DUPLICATE_ENTRY' });
      await assertBystanderServes(w.host);
    } finally {
      await w.host.stop();
    }
  });
});
