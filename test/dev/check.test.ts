// What `plinth dev` checks before a reload (src/dev/check.ts), the code frame it prints, where a load failure is
// placed, and the `.plinth/` folder that is never part of a package (recordings and the dev data dir live there).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkExtension, codeFrame, locateError, TypeChecker } from '../../src/dev/index.ts';
import { generateKeyPair, listPackageFiles, parseTrustStore, signExtension, verifyExtension } from '../../src/trust/index.ts';
import { createPrivateKey } from 'node:crypto';
import { tempDir } from '../helpers.ts';
import { fixture } from './helpers.ts';

describe('plinth dev checks', () => {
  it('a code frame shows the lines around the error with a caret under its column, and cuts a very long line around it', () => {
    const frame = codeFrame('one\ntwo = ;\nthree\nfour\n', 2, 7);
    assert.equal(frame, ['  1 | one', '> 2 | two = ;', '    |       ^', '  3 | three', '  4 | four'].join('\n'));
    const long = codeFrame(`${'x'.repeat(5000)}= ;`, 1, 5002);
    const [line, caret] = long.split('\n');
    assert.ok(line!.length < 200, 'cut');
    assert.equal(line!.indexOf('= ;') + 1, caret!.indexOf('^'), 'the caret stays under its column (5002: the space)');
    assert.equal(codeFrame('a\n', 9, 1), '', 'a line that is not there: no frame');
  });

  it('without a resolvable `typescript` the types are not checked (syntax still is), and the checker says where it looked', async () => {
    const { dir } = await fixture('greeter-ts');
    const source = await readFile(path.join(dir, 'index.ts'), 'utf8');
    await writeFile(path.join(dir, 'index.ts'), source.replace('const message: string =', 'const message: number ='));
    const nowhere = await tempDir('plinth-no-ts-');
    const without = new TypeChecker({ from: [path.join(nowhere, 'package.json')] });
    let r = await checkExtension(dir, { types: without });
    assert.deepEqual(r.problems, [], 'a type error is not seen without typescript');
    assert.equal(without.source, null);
    const withTs = new TypeChecker();
    r = await checkExtension(dir, { types: withTs });
    assert.deepEqual(r.problems.map((p) => [p.code, p.line, p.column]), [['TS2322', 7, 9], ['TS2322', 8, 12]]);
    assert.match(withTs.source!, /node_modules\/typescript\//);
    // Syntax is checked either way (Node's type stripping).
    await writeFile(path.join(dir, 'index.ts'), 'enum Colour { Red }\nexport default { stages: {} };\n');
    r = await checkExtension(dir, { types: without });
    assert.equal(r.problems[0]?.file, path.join(dir, 'index.ts'));
    assert.match(r.problems[0].message, /type stripping does not support/);
    assert.equal(r.problems[0]?.line, 1);
  });

  it('a load failure is placed from the isolate module URL, a worker snapshot path, or file:line:column in its message', () => {
    const dir = '/src/ext';
    assert.deepEqual(locateError({ message: 'boom', extensionStack: 'Error: boom\n    at plinth-extension://@acme/ext/lib/util.js:4:9' }, dir), { file: '/src/ext/lib/util.js', line: 4, column: 9 });
    assert.deepEqual(locateError({ message: 'boom', extensionStack: `Error: boom\n    at file:///data/snapshots/${'a'.repeat(64)}/index.ts:2:3` }, dir), { file: '/src/ext/index.ts', line: 2, column: 3 });
    assert.deepEqual(locateError({ message: 'extension x: index.js:3:14 does not parse as a JavaScript module' }, dir), { file: '/src/ext/index.js', line: 3, column: 14 });
  });
});

describe('the .plinth folder at a package root', () => {
  it('is never part of the package: not listed, not signed, so recordings added after signing keep the signature valid', async () => {
    const { dir } = await fixture('greeter');
    const pair = generateKeyPair();
    await signExtension(dir, createPrivateKey(pair.privateKeyPem), 'me');
    await mkdir(path.join(dir, '.plinth', 'recordings'), { recursive: true });
    await writeFile(path.join(dir, '.plinth', 'recordings', 'greet.jsonl'), '{}\n');
    assert.deepEqual(await listPackageFiles(dir), ['index.js', 'lib.js', 'package.json']);
    const store = parseTrustStore({ publishers: { me: { keys: [pair.publicKeyPem] } } }, 'trust.json');
    const verified = await verifyExtension(dir, store);
    assert.equal(verified.publisher, 'me');
    // Only at the root: a .plinth folder deeper down is an ordinary folder of the package.
    await mkdir(path.join(dir, 'lib', '.plinth'), { recursive: true });
    await writeFile(path.join(dir, 'lib', '.plinth', 'x.js'), '');
    assert.ok((await listPackageFiles(dir)).includes('lib/.plinth/x.js'));
  });
});
