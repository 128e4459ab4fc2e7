// Runs verifyExtension(dir, trust store file) in a process of its own and prints the outcome as JSON: the trust
// tests start it as an unprivileged user (root reads every file whatever its mode) to get a real EACCES.
import { loadTrustStore, verifyExtension } from '../../src/trust/index.ts';
import { PlinthError } from '../../src/errors.ts';

const [dir, storeFile] = process.argv.slice(2);
try {
  const v = await verifyExtension(dir!, await loadTrustStore(storeFile!));
  process.stdout.write(JSON.stringify({ ok: true, publisher: v.publisher }));
} catch (err) {
  const e = err instanceof PlinthError ? { code: err.code, message: err.message, file: err.file } : { code: 'not a PlinthError', message: String(err) };
  process.stdout.write(JSON.stringify({ ok: false, ...e }));
}
