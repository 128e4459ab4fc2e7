// `plinth new <name> [--runtime isolate|worker|remote] [--lang ts|js]` (issue 13): scaffolds a working, signed
// extension from the files in templates/ — package.json with a complete manifest, the code (defineExtension), a
// test that runs the stage in a real sandbox with the SDK's harness, a README and .gitignore; for `remote` a
// `start` script that runs it as a runner. Signed with the author's key, made on first use in ~/.plinth
// (PLINTH_HOME overrides). `npm test` inside passes as it is: its scripts run `bin/plinth-node.js` of this Plinth,
// which finds Node 24 and resolves `plinth/sdk` to this Plinth — nothing of Plinth is copied into the package.
import { createPublicKey } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import validateNpmName from 'validate-npm-package-name';
import { PlinthError } from '../../errors.ts';
import { validateExtensionPackage } from '../../manifest/index.ts';
import { keyIdOf, readPrivateKey, signExtension, writeKeyPair } from '../../trust/index.ts';
import { EXIT, usageError, type Io, type Outcome } from '../output.ts';

export const RUNTIMES = ['isolate', 'worker', 'remote'] as const;
export const LANGS = ['js', 'ts'] as const;
type NewRuntime = (typeof RUNTIMES)[number];
type Lang = (typeof LANGS)[number];

export interface NewFlags {
  runtime?: string;
  lang?: string;
  dir?: string;
  publisher?: string;
  json?: boolean;
}

/** This Plinth's package root: templates/ and the launchers the scaffold's scripts name. */
const PLINTH_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/[\\/]$/, '');
const TEMPLATES = path.join(PLINTH_ROOT, 'templates');
// The manifest schema's extension id (schemas/extension-manifest.schema.json $defs/extensionId).
const EXTENSION_ID = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
const PUBLISHER_ID = /^[a-z0-9][a-z0-9._-]*$/;

function checkName(name: string): void {
  const npm = validateNpmName(name);
  const problems = [...(npm.errors ?? []), ...(npm.warnings ?? [])];
  if (npm.validForNewPackages && EXTENSION_ID.test(name)) return;
  if (problems.length === 0) problems.push('an extension id is lower-case letters, digits, ".", "_", "~" or "-", starting with a letter or digit (optionally @scope/name)');
  throw new PlinthError('PLINTH_ERR_EXTENSION_NAME_INVALID', `"${name}" cannot be an extension's name: ${problems.join('; ')}`, {
    problems: problems.map((message) => ({ path: '/name', message })),
    hint: 'pick an npm package name like `hello` or `@me/hello` (lower case, URL-safe)',
  });
}

function choose<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw usageError(`--${flag} must be one of ${allowed.join(', ')}, got ${value}`);
}

/** Refuses a target that exists and is not an empty folder; returns whether it had to be created. */
async function checkTarget(dir: string): Promise<boolean> {
  let entries: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new PlinthError('PLINTH_ERR_TARGET_NOT_EMPTY', `${dir} exists and is not a folder; nothing was written`, { file: dir, hint: 'pick another name or --dir, or remove that file' });
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  if (entries.length > 0) {
    throw new PlinthError('PLINTH_ERR_TARGET_NOT_EMPTY', `${dir} already exists and is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}); nothing was written`, {
      file: dir,
      hint: 'pick another name or --dir <folder>, or remove or empty that folder first',
    });
  }
  return false;
}

/** The author's home for keys: PLINTH_HOME, else ~/.plinth. */
export function plinthHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.PLINTH_HOME ? path.resolve(env.PLINTH_HOME) : path.join(os.homedir(), '.plinth');
}

interface AuthorKey {
  keyFile: string;
  publicKeyFile: string;
  keyId: string;
  publicKeyPem: string;
  publisher: string;
  created: boolean;
  trustStore: string;
}

function defaultPublisher(name: string): string {
  const scope = /^@([^/]+)\//.exec(name)?.[1];
  let user = '';
  try {
    user = os.userInfo().username;
  } catch {
    // no user name (a container's uid without a passwd entry)
  }
  const candidate = (scope ?? user).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '');
  return PUBLISHER_ID.test(candidate) ? candidate : 'me';
}

/**
 * The author's Ed25519 key in `<home>/author.key` (0600, folder 0700), made on first use, and the publisher id
 * it signs as (`<home>/author.json`). A trust store listing it (`<home>/trust.json`) is kept beside, for
 * `plinth verify` and local hosts.
 */
async function authorKey(home: string, publisherFlag: string | undefined, name: string): Promise<AuthorKey> {
  const prefix = path.join(home, 'author');
  const keyFile = `${prefix}.key`;
  const publicKeyFile = `${prefix}.pub`;
  const profileFile = path.join(home, 'author.json');
  const trustStore = path.join(home, 'trust.json');
  await mkdir(home, { recursive: true, mode: 0o700 });
  let created = false;
  let key;
  try {
    key = await readPrivateKey(keyFile);
  } catch (err) {
    if ((err as { cause?: NodeJS.ErrnoException }).cause?.code !== 'ENOENT') throw err;
    await writeKeyPair(prefix);
    created = true;
    key = await readPrivateKey(keyFile);
  }
  const publicKey = createPublicKey(key);
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  let profile: { publisher?: unknown } = {};
  try {
    profile = JSON.parse(await readFile(profileFile, 'utf8')) as { publisher?: unknown };
  } catch {
    // first use, or a damaged profile: written below
  }
  const publisher = publisherFlag ?? (typeof profile.publisher === 'string' && PUBLISHER_ID.test(profile.publisher) ? profile.publisher : defaultPublisher(name));
  if (!PUBLISHER_ID.test(publisher)) throw usageError(`--publisher must be lower-case letters, digits, ".", "_" or "-", got ${publisher}`);
  if (profile.publisher !== publisher) await writeFile(profileFile, JSON.stringify({ publisher, keyId: keyIdOf(publicKey) }, null, 2) + '\n');
  await rememberInTrustStore(trustStore, publisher, publicKeyPem);
  return { keyFile, publicKeyFile, keyId: keyIdOf(publicKey), publicKeyPem, publisher, created, trustStore };
}

async function rememberInTrustStore(file: string, publisher: string, pem: string): Promise<void> {
  let store: { publishers: Record<string, { keys: string[]; revoked?: string[] }> } = { publishers: {} };
  try {
    const read = JSON.parse(await readFile(file, 'utf8')) as typeof store;
    if (typeof read === 'object' && read !== null && typeof read.publishers === 'object' && read.publishers !== null) store = read;
  } catch {
    // none yet
  }
  const entry = Object.hasOwn(store.publishers, publisher) ? store.publishers[publisher]! : { keys: [] };
  if (entry.keys.includes(pem)) return;
  Object.defineProperty(store.publishers, publisher, { value: { ...entry, keys: [...entry.keys, pem] }, enumerable: true, writable: true, configurable: true });
  await writeFile(file, JSON.stringify(store, null, 2) + '\n');
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function tilde(p: string): string {
  const home = os.homedir();
  return p === home || p.startsWith(home + path.sep) ? `~${p.slice(home.length)}` : p;
}

function fill(text: string, values: Record<string, string>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => (Object.hasOwn(values, key) ? values[key]! : whole));
}

export async function newExtension(io: Io, name: string, flags: NewFlags, env: NodeJS.ProcessEnv = process.env): Promise<Outcome> {
  const runtime = choose<NewRuntime>('runtime', flags.runtime, RUNTIMES, 'isolate');
  const lang = choose<Lang>('lang', flags.lang, LANGS, 'js');
  checkName(name);
  const dir = path.resolve(flags.dir ?? name.replace(/^@[^/]+\//, ''));
  const createdDir = await checkTarget(dir);
  const key = await authorKey(plinthHome(env), flags.publisher, name);

  // An isolate runs JavaScript only: a TypeScript scaffold keeps its code in .js typed by JSDoc (checked by tsc
  // through tsconfig's checkJs) and writes its tests in TypeScript, which Node runs by stripping the types.
  const tsCode = lang === 'ts' && runtime !== 'isolate';
  const codeLang = tsCode ? 'ts' : 'js';
  const mainFile = `index.${codeLang}`;
  const sdkFile = `plinth-sdk.${codeLang}`;
  const testFile = `test/greet.test.${lang}`;
  const startFile = `start.${codeLang}`;
  const plinthNode = path.join(PLINTH_ROOT, 'bin', 'plinth-node.js');
  const values: Record<string, string> = {
    name,
    runtime,
    lang: lang === 'ts' ? 'TypeScript' : 'JavaScript',
    mainFile,
    sdkFile,
    testFile,
    main: `../${mainFile}`,
    sandbox: runtime === 'isolate' ? 'isolate' : 'worker',
    startRow: runtime === 'remote' ? `\n| \`${startFile}\` | \`npm start\`: runs it as a remote runner of a running host (\`PLINTH_URL\`, \`PLINTH_TOKEN\`). |` : '',
    remoteNote:
      runtime === 'remote'
        ? '\n\nAs a `remote` extension it runs in its own process: `PLINTH_TOKEN=<runner token> npm start` connects it to a running `plinth serve` (`PLINTH_URL`, default `ws://127.0.0.1:7420/rpc`), which verifies its signed manifest like any other. That process is outside any sandbox, like a worker. The tests run the same module in a worker.'
        : '',
    keyFile: tilde(key.keyFile),
    publicKeyFile: tilde(key.publicKeyFile),
    trustStore: tilde(key.trustStore),
    publisher: key.publisher,
    plinthRoot: PLINTH_ROOT,
  };

  // [template file, target file]
  const files: Array<[string, string]> = [
    ['base/README.md', 'README.md'],
    ['base/gitignore', '.gitignore'],
    [`${codeLang}/index.${codeLang}`, mainFile],
    [`${codeLang}/plinth-sdk.${codeLang}`, sdkFile],
    [`${lang}/test/greet.test.${lang}`, testFile],
  ];
  if (lang === 'ts') files.push(['ts/tsconfig.json', 'tsconfig.json']);
  if (runtime === 'remote') files.push([`${codeLang}/start.${codeLang}`, startFile]);

  const pkg = JSON.parse(fill(await readFile(path.join(TEMPLATES, 'base', 'package.json'), 'utf8'), values)) as Record<string, unknown> & { plinth: Record<string, unknown>; scripts: Record<string, string> };
  pkg.main = mainFile;
  pkg.plinth.runtime = runtime;
  // The test and start scripts run this Plinth's plinth-node (Node 24, `plinth/*` resolvable), whatever `node` is.
  pkg.scripts = { test: `node ${shellQuote(plinthNode)} --test ${shellQuote(`test/**/*.test.${lang}`)}` };
  if (runtime === 'remote') pkg.scripts.start = `node ${shellQuote(plinthNode)} ${startFile}`;

  try {
    await mkdir(path.join(dir, 'test'), { recursive: true });
    await writeFile(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n', { flag: 'wx' });
    for (const [from, to] of files) await writeFile(path.join(dir, to), fill(await readFile(path.join(TEMPLATES, from), 'utf8'), values), { flag: 'wx' });
    // What a host would refuse is not signed: the same validation as discovery.
    await validateExtensionPackage(dir, pkg);
    const sig = await signExtension(dir, await readPrivateKey(key.keyFile), key.publisher);
    const written = ['package.json', ...files.map(([, to]) => to), 'plinth.sig'].sort();
    if (!flags.json) {
      const lines = [`created ${name} in ${dir} (${runtime}, ${lang === 'ts' ? 'TypeScript' : 'JavaScript'}):`, ...written.map((f) => `  ${f}`), ''];
      if (key.created) lines.push(`created your author key: ${key.keyFile} (keep it secret; public half ${key.publicKeyFile})`);
      lines.push(`signed by publisher ${key.publisher} with ${key.keyFile} (key ${sig.keyId})`, `a trust store that trusts it: ${key.trustStore}`, '', 'Next:', `  cd ${path.relative(process.cwd(), dir) || '.'} && npm test`);
      io.out(lines.join('\n'));
    }
    return {
      code: EXIT.ok,
      data: { name, dir, runtime, lang, files: written, publisher: key.publisher, keyId: sig.keyId, key: { file: key.keyFile, publicKey: key.publicKeyFile, created: key.created }, trustStore: key.trustStore },
    };
  } catch (err) {
    // Leave nothing half-made: the folder was new (or empty) before.
    if (createdDir) await rm(dir, { recursive: true, force: true });
    else for (const entry of await readdir(dir)) await rm(path.join(dir, entry), { recursive: true, force: true });
    throw err;
  }
}
