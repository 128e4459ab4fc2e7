// The control channel's methods and notifications, read from schemas/rpc/ (one file each: params, result, roles).
// That one source validates params (-32602 with the path), generates docs/rpc.md and the client's types
// (scripts/rpc-gen.ts → src/control/rpc-types.ts), and says which roles may call what.
import { readdirSync, readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { ControlRole } from '../config/index.ts';
import { toProblems } from '../schema/index.ts';
import type { Problem } from '../errors.ts';

export const RPC_SCHEMA_DIR = new URL('../../schemas/rpc/', import.meta.url);
const BASE = 'https://plinth.dev/schemas/rpc/';

export interface MethodSchema {
  kind: 'method';
  title: string;
  description: string;
  roles: ControlRole[];
  params: Record<string, unknown>;
  result: Record<string, unknown>;
}

export interface NotificationSchema {
  kind: 'notification';
  title: string;
  description: string;
  params: Record<string, unknown>;
}

export interface RpcSchemas {
  defs: { $defs: Record<string, Record<string, unknown>> };
  methods: Map<string, MethodSchema>;
  notifications: Map<string, NotificationSchema>;
}

export function loadRpcSchemas(dir: URL = RPC_SCHEMA_DIR): RpcSchemas {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  const read = (f: string) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Record<string, unknown>;
  const methods = new Map<string, MethodSchema>();
  const notifications = new Map<string, NotificationSchema>();
  let defs: RpcSchemas['defs'] = { $defs: {} };
  for (const f of files) {
    const doc = read(f);
    if (f === 'defs.json') defs = doc as RpcSchemas['defs'];
    else if (doc.kind === 'method') methods.set(String(doc.title), doc as unknown as MethodSchema);
    else if (doc.kind === 'notification') notifications.set(String(doc.title), doc as unknown as NotificationSchema);
    else throw new Error(`schemas/rpc/${f}: kind must be method or notification`);
  }
  return { defs, methods, notifications };
}

/** Compiled params validators, by method; defs.json is shared by reference. */
export function compileParams(schemas: RpcSchemas): Map<string, (params: unknown) => Problem[] | undefined> {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true, verbose: true });
  ajv.addSchema({ ...schemas.defs, $id: BASE + 'defs.json' });
  const out = new Map<string, (params: unknown) => Problem[] | undefined>();
  for (const [name, m] of schemas.methods) {
    // The $id puts the params beside defs.json, so its relative $refs resolve.
    const validate: ValidateFunction = ajv.compile({ ...m.params, $id: `${BASE}${encodeURIComponent(name)}.params.json` });
    out.set(name, (params) => (validate(params) ? undefined : toProblems(validate.errors)));
  }
  return out;
}
