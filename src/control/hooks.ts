// POST /hooks/<name>: webhook triggers of pipelines declared with `trigger: webhook` (issue 12). A delivery is
// accepted with a bearer token, or with GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`
// under the hook's secret (compared in constant time); the body is read up to `control.hooks.maxBodyBytes`
// while it streams; a delivery id seen before (`X-GitHub-Delivery` / `X-Plinth-Delivery`) is refused, so a
// captured request cannot start the run again. Answered 202 with the run id.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { PlinthError, isPlinthError } from '../errors.ts';
import type { Json } from '../sdk/index.ts';
import type { PipelineDefinition, PipelineService } from '../pipeline/types.ts';
import type { ControlConfig } from '../config/index.ts';
import { presentedToken, type TokenSet } from './auth.ts';

export interface WebhookDelivery {
  id: string | undefined;
  body: Json;
  headers: Record<string, string>;
}

/** What the pipeline side offers the receiver (piperun's triggers fill it; `webhookTargetFor` builds one). */
export interface WebhookTarget {
  /** undefined: no such hook. `secret` undefined: only a token is accepted. */
  find(name: string): { secret?: string } | undefined;
  trigger(name: string, delivery: WebhookDelivery): Promise<{ runId: string }>;
}

/** A target over pipeline definitions: `trigger: webhook` with `name`, the HMAC secret in the env var `secretEnv`. */
export function webhookTargetFor(definitions: () => PipelineDefinition[], pipelines: PipelineService, env: NodeJS.ProcessEnv = process.env): WebhookTarget {
  const lookup = (name: string) => {
    for (const def of definitions()) for (const t of def.triggers) if (t.type === 'webhook' && t.name === name) return { def, trigger: t };
    return undefined;
  };
  return {
    find(name) {
      const hit = lookup(name);
      if (!hit) return undefined;
      const secret = hit.trigger.secretEnv ? env[hit.trigger.secretEnv] : undefined;
      return secret ? { secret } : {};
    },
    async trigger(name, delivery) {
      const hit = lookup(name);
      if (!hit) throw new PlinthError('PLINTH_ERR_WEBHOOK_NOT_FOUND', `no pipeline has a webhook trigger named ${name}`);
      const src = hit.def.file ? { file: hit.def.file } : { definition: hit.def as unknown };
      return pipelines.start(src, { variables: { webhook: { body: delivery.body, headers: delivery.headers, ...(delivery.id ? { delivery: delivery.id } : {}) } }, trigger: { type: 'webhook', detail: { name, ...(delivery.id ? { delivery: delivery.id } : {}) } } });
    },
  };
}

/** A target over the host's pipeline service (`host.pipelines`): the webhook triggers of the pipelines `plinth serve` loaded. */
export function webhookTargetForService(pipelines: { findWebhook(name: string): { secret?: string } | undefined; triggerWebhook(name: string, body: Json, headers?: Record<string, string>): Promise<{ runId: string }> }): WebhookTarget {
  return {
    find: (name) => pipelines.findWebhook(name),
    trigger: (name, delivery) => pipelines.triggerWebhook(name, delivery.body, { ...delivery.headers, ...(delivery.id ? { 'x-delivery-id': delivery.id } : {}) }),
  };
}

const refused = (status: number, message: string, hint?: string) => ({ status, body: new PlinthError('PLINTH_ERR_WEBHOOK_REFUSED', message, hint ? { hint } : {}).toJSON() });

function signatureOk(secret: string, body: Buffer, header: string | undefined): boolean {
  if (header === undefined || !header.startsWith('sha256=')) return false;
  const given = Buffer.from(header.slice(7), 'hex');
  const expected = createHmac('sha256', secret).update(body).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export class WebhookReceiver {
  readonly #target: WebhookTarget;
  readonly #settings: ControlConfig['hooks'];
  readonly #tokens: TokenSet;
  /** Delivery ids seen, oldest first (bounded by `rememberDeliveries`). */
  readonly #seen = new Map<string, true>();

  constructor(target: WebhookTarget, settings: ControlConfig['hooks'], tokens: TokenSet) {
    this.#target = target;
    this.#settings = settings;
    this.#tokens = tokens;
  }

  async receive(name: string, req: IncomingMessage): Promise<{ status: number; body: Record<string, unknown> }> {
    const hook = this.#target.find(name);
    if (!hook) return { status: 404, body: new PlinthError('PLINTH_ERR_WEBHOOK_NOT_FOUND', `no pipeline has a webhook trigger named ${JSON.stringify(name)}`).toJSON() };
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.#settings.maxBodyBytes) {
      req.resume();
      return refused(413, `body of ${declared} bytes is over control.hooks.maxBodyBytes (${this.#settings.maxBodyBytes})`, 'raise control.hooks.maxBodyBytes');
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.#settings.maxBodyBytes) {
        req.destroy();
        return refused(413, `body over control.hooks.maxBodyBytes (${this.#settings.maxBodyBytes})`, 'raise control.hooks.maxBodyBytes');
      }
      chunks.push(chunk);
    }
    const raw = Buffer.concat(chunks);
    const role = this.#tokens.match(presentedToken(req));
    const byToken = role === 'admin' || role === 'client';
    const sig = req.headers['x-hub-signature-256'];
    const bySignature = hook.secret !== undefined && signatureOk(hook.secret, raw, typeof sig === 'string' ? sig : undefined);
    if (!byToken && !bySignature) return refused(401, sig !== undefined ? 'X-Hub-Signature-256 does not match the body' : 'no valid bearer token or X-Hub-Signature-256', 'sign the body with the hook secret (HMAC-SHA256) or send the host token');
    const rawId = req.headers['x-github-delivery'] ?? req.headers['x-plinth-delivery'];
    const id = typeof rawId === 'string' && rawId !== '' ? rawId : undefined;
    if (id !== undefined && this.#seen.has(id)) return refused(409, `delivery ${id} was already received`, 'send a new delivery id for each delivery');
    let body: Json;
    const type = String(req.headers['content-type'] ?? '');
    if (type.includes('json')) {
      try {
        body = JSON.parse(raw.toString('utf8')) as Json;
      } catch {
        return refused(400, 'the body is not valid JSON');
      }
    } else body = raw.toString('utf8');
    if (id !== undefined) {
      this.#seen.set(id, true);
      if (this.#seen.size > this.#settings.rememberDeliveries) this.#seen.delete(this.#seen.keys().next().value!);
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'authorization') headers[k] = v;
    try {
      const { runId } = await this.#target.trigger(name, { id, body, headers });
      return { status: 202, body: { runId } };
    } catch (err) {
      if (isPlinthError(err)) return { status: err.code === 'PLINTH_ERR_WEBHOOK_NOT_FOUND' ? 404 : 422, body: err.toJSON() };
      throw err;
    }
  }
}
