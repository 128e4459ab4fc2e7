// Who may open the control channel, and as what: bearer tokens with roles (README "Control channel"). The admin
// token comes from `control.token`, else PLINTH_TOKEN, else <dataDir>/token (generated on first start, mode 0600).
// Tokens are compared in constant time: each presented token is hashed and compared with every known token's
// hash, so neither the length nor the first differing byte shows in the time taken.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { ControlConfig, ControlRole } from '../config/index.ts';
import { PlinthError } from '../errors.ts';

export const TOKEN_FILE = 'token';
/** Sec-WebSocket-Protocol form for browsers (which cannot set Authorization): `plinth.token.<token>`. */
export const TOKEN_PROTOCOL_PREFIX = 'plinth.token.';
/** The subprotocol the server selects (never the token one): browsers offer it beside the token. */
export const RPC_PROTOCOL = 'plinth.jsonrpc';

export interface TokenSet {
  /** The admin token, and where it came from. */
  admin: string;
  source: 'config' | 'env' | 'file';
  file: string;
  match(presented: string | undefined): ControlRole | undefined;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Reads <dataDir>/token, or writes a new one (0600) if there is none. */
export function readOrCreateTokenFile(dataDir: string): string {
  const file = path.join(dataDir, TOKEN_FILE);
  try {
    const text = readFileSync(file, 'utf8').trim();
    if (text.length >= 16) return text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new PlinthError('PLINTH_ERR_CONTROL_AUTH', `cannot read the token file ${file}: ${(err as Error).message}`, { file });
  }
  mkdirSync(dataDir, { recursive: true });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, token + '\n', { mode: 0o600 });
  return token;
}

export function loadTokens(config: ControlConfig, dataDir: string, env: NodeJS.ProcessEnv = process.env): TokenSet {
  const file = path.join(dataDir, TOKEN_FILE);
  let admin: string;
  let source: TokenSet['source'];
  if (config.token !== undefined) [admin, source] = [config.token, 'config'];
  else if (env.PLINTH_TOKEN !== undefined && env.PLINTH_TOKEN !== '') [admin, source] = [env.PLINTH_TOKEN, 'env'];
  else [admin, source] = [readOrCreateTokenFile(dataDir), 'file'];
  const known = [{ hash: digest(admin), role: 'admin' as ControlRole }, ...config.tokens.map((t) => ({ hash: digest(t.token), role: t.role }))];
  return {
    admin,
    source,
    file,
    match(presented) {
      if (presented === undefined || presented === '') return undefined;
      const h = digest(presented);
      let role: ControlRole | undefined;
      // Every token is compared; no early exit.
      for (const k of known) if (timingSafeEqual(h, k.hash) && role === undefined) role = k.role;
      return role;
    },
  };
}

/** The token an upgrade or HTTP request presents: `Authorization: Bearer …`, else the subprotocol form. */
export function presentedToken(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1] : undefined;
  }
  const protocols = req.headers['sec-websocket-protocol'];
  if (typeof protocols === 'string') {
    for (const p of protocols.split(',').map((s) => s.trim())) if (p.startsWith(TOKEN_PROTOCOL_PREFIX)) return p.slice(TOKEN_PROTOCOL_PREFIX.length);
  }
  return undefined;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
