import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { appendFile, chmod, readFile, rm, stat, symlink, writeFile, mkdir, readdir } from 'node:fs/promises';
import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { signExtension, verifyExtension, writeKeyPair, readPrivateKey, loadTrustStore, hashPackageFiles, listPackageFiles } from '../../src/trust/index.ts';
import { makePublisher, pluginDir, rejectsWith, tempDir, trustStore, writeTrustStore } from '../helpers.ts';

const alice = makePublisher('alice');
const mallory = makePublisher('mallory');

/** A signed copy of the `basic` fixture in a fresh temp folder. */
async function signedExtension(publisher = alice): Promise<string> {
  const dir = path.join(await pluginDir(await tempDir(), { basic: 'basic' }), 'basic');
  await signExtension(dir, publisher.privateKey, publisher.id);
  return dir;
}

/** Every file's bytes, to prove a refused verification changed nothing. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile())) {
    const p = path.join(f.parentPath, f.name);
    out[path.relative(dir, p)] = (await readFile(p)).toString('base64');
  }
  return out;
}

describe('keys', () => {
  it('keygen writes <prefix>.key with mode 0600 and <prefix>.pub, and refuses to overwrite', async () => {
    const prefix = path.join(await tempDir(), 'pub');
    const pair = await writeKeyPair(prefix);
    assert.equal((await stat(`${prefix}.key`)).mode & 0o777, 0o600);
    assert.match(await readFile(`${prefix}.pub`, 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
    assert.match(pair.keyId, /^[0-9a-f]{32}$/);
    const before = await readFile(`${prefix}.key`, 'utf8');
    await rejectsWith(writeKeyPair(prefix), 'PLINTH_ERR_FILE_EXISTS');
    assert.equal(await readFile(`${prefix}.key`, 'utf8'), before, 'the existing key is untouched');
    const again = await writeKeyPair(prefix, { force: true });
    assert.notEqual(again.keyId, pair.keyId);
  });

  it('a key that is not Ed25519, or not a key at all, is PLINTH_ERR_KEY_INVALID', async () => {
    const dir = await tempDir();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeFile(path.join(dir, 'rsa.key'), rsa);
    await writeFile(path.join(dir, 'junk.key'), 'not a key');
    await rejectsWith(readPrivateKey(path.join(dir, 'rsa.key')), 'PLINTH_ERR_KEY_INVALID');
    await rejectsWith(readPrivateKey(path.join(dir, 'junk.key')), 'PLINTH_ERR_KEY_INVALID');
    await rejectsWith(readPrivateKey(path.join(dir, 'missing.key')), 'PLINTH_ERR_KEY_INVALID');
  });
});

describe('sign and verify', () => {
  it('signs every file but plinth.sig, sorted, and verifies against the trust store', async () => {
    const dir = await signedExtension();
    const sig = JSON.parse(await readFile(path.join(dir, 'plinth.sig'), 'utf8')) as { files: Record<string, string>; publisher: string };
    assert.deepEqual(Object.keys(sig.files), ['index.js', 'lib/helper.js', 'package.json']);
    assert.equal(sig.publisher, 'alice');
    const v = await verifyExtension(dir, trustStore([alice]), 'basic-ext');
    assert.equal(v.publisher, 'alice');
    assert.equal(v.fileCount, 3);
    // Signing twice gives the same file list (deterministic); the signature still verifies.
    await signExtension(dir, alice.privateKey, 'alice');
    await verifyExtension(dir, trustStore([alice]));
  });

  it('unsigned: PLINTH_ERR_SIG_MISSING', async () => {
    const dir = path.join(await pluginDir(await tempDir(), { basic: 'basic' }), 'basic');
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice]), 'basic-ext'), 'PLINTH_ERR_SIG_MISSING');
    assert.equal(err.extension, 'basic-ext');
    assert.equal(err.file, path.join(dir, 'plinth.sig'));
  });

  it('a changed file: PLINTH_ERR_SIG_FILE_CHANGED naming it, and nothing on disk is altered', async () => {
    const dir = await signedExtension();
    await appendFile(path.join(dir, 'lib', 'helper.js'), ' ');
    const before = await snapshot(dir);
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_FILE_CHANGED');
    assert.equal(err.file, path.join(dir, 'lib', 'helper.js'));
    assert.deepEqual(err.problems, [{ path: 'lib/helper.js', message: 'changed since signing' }]);
    assert.deepEqual(await snapshot(dir), before);
  });

  it('an added file: PLINTH_ERR_SIG_FILE_ADDED naming it', async () => {
    const dir = await signedExtension();
    await mkdir(path.join(dir, 'extra'));
    await writeFile(path.join(dir, 'extra', 'payload.js'), 'evil()');
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_FILE_ADDED');
    assert.equal(err.file, path.join(dir, 'extra', 'payload.js'));
  });

  it('a missing file: PLINTH_ERR_SIG_FILE_MISSING naming it', async () => {
    const dir = await signedExtension();
    await rm(path.join(dir, 'lib', 'helper.js'));
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_FILE_MISSING');
    assert.equal(err.file, path.join(dir, 'lib', 'helper.js'));
  });

  it('several differences are all listed; the code is the most serious', async () => {
    const dir = await signedExtension();
    await writeFile(path.join(dir, 'index.js'), 'changed');
    await writeFile(path.join(dir, 'new.js'), 'new');
    await rm(path.join(dir, 'lib', 'helper.js'));
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_FILE_CHANGED');
    assert.deepEqual(err.problems.map((p) => p.path), ['index.js', 'lib/helper.js', 'new.js']);
  });

  it('a forged file list (hash edited to match a changed file): PLINTH_ERR_SIG_INVALID', async () => {
    const dir = await signedExtension();
    await writeFile(path.join(dir, 'index.js'), 'export default { stages: { echo: () => process.exit(1) } }');
    const sigFile = path.join(dir, 'plinth.sig');
    const sig = JSON.parse(await readFile(sigFile, 'utf8')) as { files: Record<string, string> };
    sig.files['index.js'] = (await hashPackageFiles(dir))['index.js']!;
    await writeFile(sigFile, JSON.stringify(sig));
    await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_INVALID');
  });

  it('a signature by another key claiming a trusted publisher: PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER', async () => {
    const dir = await signedExtension(makePublisher('alice')); // same publisher id, a different key
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER');
    assert.match(err.message, /not among the keys of publisher "alice"/);
  });

  it('a publisher the store does not list: PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER', async () => {
    const dir = await signedExtension(mallory);
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_UNTRUSTED_PUBLISHER');
    assert.match(err.message, /publisher "mallory" is not in trust store/);
  });

  it('a revoked key: PLINTH_ERR_SIG_REVOKED_KEY', async () => {
    const dir = await signedExtension();
    await rejectsWith(verifyExtension(dir, trustStore([alice], { alice: [alice.keyId] })), 'PLINTH_ERR_SIG_REVOKED_KEY');
  });

  it('a symlink anywhere in the package: PLINTH_ERR_SIG_SYMLINK naming it, for signing and verifying', async () => {
    const dir = await signedExtension();
    await symlink('/etc/passwd', path.join(dir, 'lib', 'passwd'));
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_SYMLINK');
    assert.equal(err.file, path.join(dir, 'lib', 'passwd'));
    const sigBefore = await readFile(path.join(dir, 'plinth.sig'), 'utf8');
    await rejectsWith(signExtension(dir, alice.privateKey, 'alice'), 'PLINTH_ERR_SIG_SYMLINK');
    assert.equal(await readFile(path.join(dir, 'plinth.sig'), 'utf8'), sigBefore, 'a refused signing leaves plinth.sig as it was');
  });

  it('a linked folder, and a plinth.sig that is a link, are refused too', async () => {
    const dir = await signedExtension();
    await symlink(path.join(dir, 'lib'), path.join(dir, 'lib2'));
    await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_SYMLINK');
    const other = await signedExtension();
    const real = path.join(path.dirname(other), 'real.sig');
    await writeFile(real, await readFile(path.join(other, 'plinth.sig')));
    await rm(path.join(other, 'plinth.sig'));
    await symlink(real, path.join(other, 'plinth.sig'));
    await rejectsWith(verifyExtension(other, trustStore([alice])), 'PLINTH_ERR_SIG_SYMLINK');
  });

  it('a FIFO in the package, or as plinth.sig, is PLINTH_ERR_PACKAGE_SPECIAL_FILE naming it (not SIG_SYMLINK, not SIG_MALFORMED), and nothing is changed', async () => {
    const dir = await signedExtension();
    execFileSync('mkfifo', [path.join(dir, 'lib', 'pipe')]);
    const before = await snapshot(dir);
    const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_PACKAGE_SPECIAL_FILE');
    assert.equal(err.file, path.join(dir, 'lib', 'pipe'));
    await rejectsWith(signExtension(dir, alice.privateKey, 'alice'), 'PLINTH_ERR_PACKAGE_SPECIAL_FILE');
    assert.deepEqual(await snapshot(dir), before, 'a refused package is left as it was');
    const other = await signedExtension();
    await rm(path.join(other, 'plinth.sig'));
    execFileSync('mkfifo', [path.join(other, 'plinth.sig')]);
    const sigErr = await rejectsWith(verifyExtension(other, trustStore([alice])), 'PLINTH_ERR_PACKAGE_SPECIAL_FILE');
    assert.equal(sigErr.file, path.join(other, 'plinth.sig'));
  });

  for (const unreadable of ['plinth.sig', 'lib/helper.js', 'lib'] as const) {
    it(`an I/O error reading ${unreadable} during verification is PLINTH_ERR_PACKAGE_UNREADABLE naming it (not SIG_MALFORMED)`, async () => {
      const dir = await signedExtension();
      const store = await writeTrustStore(path.join(path.dirname(dir), 'trust.json'), [alice]);
      // Root reads files whatever their mode: the verification then runs as an unprivileged user (a real EACCES).
      const asRoot = process.getuid?.() === 0;
      if (asRoot) execFileSync('chmod', ['-R', 'a+rX', path.dirname(dir)]);
      await chmod(path.join(dir, ...unreadable.split('/')), 0o000);
      const child = fileURLToPath(new URL('./verify.child.ts', import.meta.url));
      const out = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [child, dir, store], { ...(asRoot ? { uid: 65534, gid: 65534 } : {}), timeout: 30_000 }, (err, stdout) => (err ? reject(err instanceof Error ? err : new Error('verify.child failed')) : resolve(stdout))),
      );
      const result = JSON.parse(out) as { ok: boolean; code?: string; file?: string; message?: string };
      assert.equal(result.code, 'PLINTH_ERR_PACKAGE_UNREADABLE', out);
      assert.equal(result.file, path.join(dir, ...unreadable.split('/')));
      assert.match(result.message ?? '', /EACCES/);
    });
  }

  for (const [name, content] of [
    ['not JSON', '{ nope'],
    ['missing fields', JSON.stringify({ format: 'plinth-sig/1', publisher: 'alice' })],
    ['wrong format version', null],
    ['a hash that is not hex', null],
  ] as const) {
    it(`a malformed plinth.sig (${name}): PLINTH_ERR_SIG_MALFORMED`, async () => {
      const dir = await signedExtension();
      const sigFile = path.join(dir, 'plinth.sig');
      let text: string = content ?? '';
      if (content === null) {
        const sig = JSON.parse(await readFile(sigFile, 'utf8')) as { format: string; files: Record<string, string> };
        if (name === 'wrong format version') sig.format = 'plinth-sig/9';
        else sig.files['index.js'] = 'XYZ';
        text = JSON.stringify(sig);
      }
      await writeFile(sigFile, text);
      const err = await rejectsWith(verifyExtension(dir, trustStore([alice])), 'PLINTH_ERR_SIG_MALFORMED');
      assert.equal(err.file, sigFile);
    });
  }

  it('file lists use forward slashes and sort deterministically, numeric names included', async () => {
    const dir = await tempDir();
    for (const f of ['b.js', '10', '2', 'a/z.js', 'a/b/c.js']) {
      await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
      await writeFile(path.join(dir, f), f);
    }
    assert.deepEqual(await listPackageFiles(dir), ['10', '2', 'a/b/c.js', 'a/z.js', 'b.js']);
    await signExtension(dir, alice.privateKey, 'alice');
    await verifyExtension(dir, trustStore([alice]));
  });
});

describe('trust store', () => {
  it('loads a valid store from disk', async () => {
    const file = await writeTrustStore(path.join(await tempDir(), 'trust.json'), [alice, mallory], { mallory: [mallory.keyId] });
    const store = await loadTrustStore(file);
    assert.deepEqual([...store.publishers.keys()], ['alice', 'mallory']);
    assert.ok(store.publishers.get('mallory')!.revoked.has(mallory.keyId));
  });

  it('a store that is not JSON, breaks the schema, or holds a bad key: PLINTH_ERR_TRUST_STORE_INVALID', async () => {
    const dir = await tempDir();
    const cases: Record<string, string> = {
      'junk.json': '{',
      'schema.json': JSON.stringify({ publishers: { alice: { keys: ['nope'] } }, extra: 1 }),
      'badkey.json': JSON.stringify({ publishers: { alice: { keys: ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'] } } }),
    };
    for (const [name, text] of Object.entries(cases)) {
      await writeFile(path.join(dir, name), text);
      const err = await rejectsWith(loadTrustStore(path.join(dir, name)), 'PLINTH_ERR_TRUST_STORE_INVALID');
      assert.equal(err.file, path.join(dir, name));
    }
    const err = await rejectsWith(loadTrustStore(path.join(dir, 'schema.json')), 'PLINTH_ERR_TRUST_STORE_INVALID');
    assert.deepEqual(err.problems.map((p) => p.path).sort(), ['/extra', '/publishers/alice/keys/0']);
    await rejectsWith(loadTrustStore(path.join(dir, 'absent.json')), 'PLINTH_ERR_TRUST_STORE_INVALID');
  });
});
